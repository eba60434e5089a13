//! The client side as pure machines: the tracker session (requests,
//! failover) lives here; the download scheduler and the seeder are in
//! `crate::download` and `crate::seeder`.

pub mod node;
pub mod session;
pub mod shares;

#[cfg(test)]
mod tests;
