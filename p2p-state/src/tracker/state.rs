//! Tracker application state. (In progress.)
