//! Download scheduler: one machine per download. (In progress.)
