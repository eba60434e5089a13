//! Seeder machine. (In progress.)
