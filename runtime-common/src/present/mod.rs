//! Every line a person reads on the console, in one place: answers to
//! commands, download lines and marks, progress lines, background news,
//! the processes' own lines and the tracker's console. Pure functions
//! from typed values to text; the binaries and the dashboard only print
//! (or send) what they return. Output is part of the interface: scripts
//! and tests (`bins/tests/`, `testbed/`) match these lines, and the
//! seed's command answers must keep reading as they do.
//!
//! - `answer.rs`: the answer to a command ([`format_ok`]: tracker
//!   replies, listings, rate limits) and [`help`];
//! - `downloads.rs`: the marks ([`mark`]: `[D]`, `[C]`, `[F]`), the
//!   `show_downloads` lines ([`format_download`], ETA), when plain
//!   progress lines are due ([`TenPercent`]), the progress bar's template
//!   and what `wait_downloads` says at the end;
//! - `news.rs`: background news ([`event_line`]: failover, a lost
//!   session, a finished download; [`join_request`]);
//! - `process.rs`: what the client and tracker print of their own (the
//!   fingerprint, the client's greeting, prompts, hints, `serve`);
//! - `terminal.rs`: what reaches a terminal ([`terminal_safe`]: control
//!   characters of text from elsewhere replaced);
//! - `tracker.rs`: the tracker's console (the seed's `Connected to peer
//!   tracker` line, the answers to `status` and `conflicts`);
//! - `units.rs`: sizes ([`bytes`]) and durations ([`duration`]).
//!
//! What is not here, on purpose:
//! - the text of a typed error (`TrackerError`, `ClientError`,
//!   `ServeError`, ...) is its `Display`, beside the type where it is
//!   defined: the house convention is that a user's error text is the
//!   error type's own;
//! - a command line's parse errors and usage lines are the parser's
//!   (`cli`), made from its command table ([`crate::cli::USAGE`]);
//! - log lines (`tracing`) are the drivers' (`tracker/log.rs`,
//!   [`crate::log_limit`]): they are for operators' logs, not the console;
//! - the dashboard's JSON (`web/json.rs`) is data, not text, though it
//!   carries [`format_download`]'s line for each download;
//! - a binary's one-off lines: a start-up failure's context (`cannot
//!   start the client: ...`), clap's usage, and the demo's narration
//!   (`bins/src/bin/demo.rs`, a script's story told once); the demo words
//!   every line it shares with the client here (answers, progress,
//!   `served`, the tracker's `Connected` line).
//!
//! The state machines (`p2p-state`) make no text for the console: they
//! give typed values (`DownloadMark`, `ConsoleAnswer`, events) and this
//! module words them.

mod answer;
mod downloads;
mod news;
mod process;
mod terminal;
mod tracker;
mod units;

pub use answer::{format_ok, format_rate, format_rates, help};
pub use downloads::{
    DOWNLOAD_BAR_TEMPLATE, TenPercent, download_name, download_names, downloads_ended,
    downloads_still_running, eta_secs, format_download, format_downloads, mark,
};
pub use news::{event_line, join_request};
pub use process::{
    HASH_BAR_TEMPLATE, INTERRUPTED, PASSWORD_AGAIN, PASSWORDS_DIFFER, SERVING, client_banner,
    fingerprint, password_prompt, served, web_beyond_host, web_dashboard,
};
pub use terminal::terminal_safe;
pub use tracker::{connected_to_tracker, console_lines, unknown_console_command};
pub use units::{bytes, duration};
