//! The client's command language: parsing a line into a command, and the
//! lines that carry a password. Pure functions, shared by every runtime;
//! the text the user sees for an answer is [`crate::present`]'s.
//!
//! Command names and argument orders are the seed's. Arguments are split
//! like a shell does (`shell-words`), so a file name with spaces can be
//! quoted: `download_file g1 "my file.txt" ~/Downloads`.
//!
//! Passwords: `login <user>` and `create_user <user>` without the password
//! parse as [`CliCommand::AskPassword`] (the interactive client asks for it
//! without echo, a script gets [`no_password_error`]); a line for which
//! [`carries_password`] holds is never kept in a history.
//!
//! - `parse.rs`: [`CliCommand`], [`parse_line`], [`parse_rate`], [`USAGE`];
//! - `password.rs`: lines with a password ([`carries_password`]).

mod parse;
mod password;

pub use parse::{CliCommand, USAGE, parse_line, parse_rate};
pub use password::{carries_password, no_password_error, with_password};
