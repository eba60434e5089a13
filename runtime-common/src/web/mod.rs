//! The client's web dashboard and HTTP API (`client --web`, issue 19).
//!
//! - the `p2p-web` crate (re-exported here): request parsing
//!   ([`http`]), the [`Gate`] that routes a request or refuses it, and
//!   the page's assets; sans-IO, and fuzzed on its own;
//! - [`events`]: the numbered event log behind `GET /api/events`;
//! - [`watch`]: the thread that turns the client's news and a cheap poll
//!   of the tracker (join requests for owned groups) into events and the
//!   tracker view the page shows;
//! - [`json`]: the JSON of the state and of an action's answer;
//! - [`server`]: the listener and its bounded connection threads, which
//!   run the routes: actions through [`crate::client::command::run`], the
//!   REPL's own command layer;
//! - this file: the REPL line an action stands for, and the token.

pub mod events;
pub mod json;
pub mod server;
pub mod watch;

pub use p2p_web::{
    ACTIONS, APP_CSS, APP_JS, CONSOLE_ONLY, EVENTS_WAIT_MAX_MS, Gate, INDEX_HTML, Route,
    TOKEN_HEADER, http,
};

/// The REPL line an action stands for: the same parser reads both.
pub fn action_line(name: &str, args: &[String]) -> String {
    let mut words = vec![name.to_string()];
    words.extend(args.iter().cloned());
    shell_words::join(words)
}

/// A fresh random token: 128 bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An action is the REPL line of the same name: the same parser runs
    /// it, so a file name with spaces survives.
    #[test]
    fn an_action_is_a_repl_line() {
        let line = action_line(
            "download_file",
            &["g1".into(), "my file.txt".into(), "/tmp/x y".into()],
        );
        assert_eq!(
            crate::cli::parse_line(&line).unwrap(),
            crate::cli::parse_line("download_file g1 'my file.txt' '/tmp/x y'").unwrap()
        );
        for a in ACTIONS {
            assert!(
                crate::cli::USAGE.iter().any(|(c, _)| c == a),
                "{a} is a REPL command"
            );
        }
        // And the other way: a new REPL command is an action unless it
        // acts on the console, so the page and the REPL cannot drift.
        for (c, _) in crate::cli::USAGE {
            assert!(
                ACTIONS.contains(c) != CONSOLE_ONLY.contains(c),
                "{c} is either an action or console-only"
            );
        }
        assert_eq!(new_token().len(), 32);
        assert_ne!(new_token(), new_token());
    }
}
