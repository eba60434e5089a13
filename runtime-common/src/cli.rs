//! The client's command language: parsing a line into a command, and the
//! text the user sees for each answer. Pure functions, shared by every
//! runtime.
//!
//! Command names and argument orders are the seed's. Arguments are split
//! like a shell does (`shell-words`), so a file name with spaces can be
//! quoted: `download_file g1 "my file.txt" ~/Downloads`.
//!
//! Passwords: `login <user>` and `create_user <user>` without the password
//! parse as [`CliCommand::AskPassword`] (the interactive client asks for it
//! without echo, a script gets [`no_password_error`]); a line for which
//! [`carries_password`] holds is never kept in a history.

use std::path::PathBuf;

use p2p_proto::{
    FileName, FileSummary, GroupName, GroupSummary, Password, Reply, Request, Sha1Hash, UserName,
};
use p2p_state::client::node::{CommandOk, DownloadLine, RateLimit, Rates};
use p2p_state::download::{DownloadState, Progress};

/// One line of user input, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum CliCommand {
    Tracker(Request),
    Upload {
        group: GroupName,
        path: PathBuf,
    },
    Download {
        group: GroupName,
        file: FileName,
        dest: PathBuf,
        /// Replace an existing file at `dest` (`--force`); without it an
        /// existing file is never overwritten.
        force: bool,
        /// The file hash the user expects (`--hash <40 hex digits>`):
        /// metadata with another is refused before anything is fetched.
        expected: Option<Sha1Hash>,
    },
    /// `login <user>` or `create_user <user>` typed without the password:
    /// it is asked for without echo, then [`with_password`] makes the
    /// request.
    AskPassword {
        user: UserName,
        create: bool,
    },
    ShowDownloads,
    /// `set_rate <up|down|up-per-peer|down-per-peer> <rate|off>`: one
    /// of the rate limits, bytes per second (`None`: unlimited).
    SetRate {
        limit: RateLimit,
        rate: Option<u64>,
    },
    /// `set_rate` alone: the rate limits in force.
    ShowRates,
    WaitDownloads {
        seconds: Option<u64>,
    },
    Serve,
    Exit,
    Help,
    /// A blank line or a comment.
    Nothing,
}

/// Every command with its arguments, for `help` and error messages.
pub const USAGE: &[(&str, &str)] = &[
    ("create_user", "<user> [password]"),
    ("login", "<user> [password]"),
    ("logout", ""),
    ("create_group", "<group>"),
    ("join_group", "<group>"),
    ("leave_group", "<group>"),
    ("list_groups", ""),
    ("list_requests", "<group>"),
    ("accept_request", "<group> <user>"),
    ("reject_request", "<group> <user>"),
    ("upload_file", "<group> <path>"),
    ("list_files", "<group>"),
    ("list_members", "<group>"),
    (
        "download_file",
        "<group> <file_name> <dest> [--hash <file_hash>] [--force]",
    ),
    ("show_downloads", ""),
    ("set_rate", "[up|down|up-per-peer|down-per-peer <rate|off>]"),
    ("stop_share", "<group> <file_name>"),
    ("wait_downloads", "[seconds]"),
    ("serve", ""),
    ("exit", ""),
    ("help", ""),
];

/// A file hash as `list_files` prints it: 40 hex digits, either case.
fn file_hash(text: &str) -> Result<Sha1Hash, String> {
    let err = || format!("{text:?} is not a file hash (40 hex digits, as list_files shows it)");
    if text.len() != 40 || !text.is_ascii() {
        return Err(err());
    }
    let mut h = [0u8; 20];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
        h[i] = (hi * 16 + lo) as u8;
    }
    Ok(Sha1Hash(h))
}

/// A rate limit as the user types it (`--max-upload-rate`, `set_rate`):
/// bytes per second, a whole number with an optional `K`, `M` or `G`
/// (× 1024, either case; `10M` is 10 MiB/s), or `off` for no limit
/// (`None`).
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let err = || {
        format!(
            "{text:?} is not a rate: give bytes per second as a whole number with an \
             optional K, M or G (x1024), e.g. 500K or 10M, or off for no limit"
        )
    };
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, ' '),
    };
    let mult: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return Err(err()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    match n.checked_mul(mult) {
        Some(0) => Err(format!(
            "{text:?}: a rate of 0 would stop every transfer; use off to lift the limit"
        )),
        Some(r) => Ok(Some(r)),
        None => Err(err()),
    }
}

fn usage(cmd: &str) -> String {
    match USAGE.iter().find(|(c, _)| *c == cmd) {
        Some((c, args)) => format!("usage: {c} {args}").trim_end().to_string(),
        None => format!("unknown command {cmd:?} (type help for the list)"),
    }
}

/// Parses one input line. `Err` is the message to print after `error: `.
pub fn parse_line(line: &str) -> Result<CliCommand, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(CliCommand::Nothing);
    }
    let words = shell_words::split(line).map_err(|e| format!("cannot split the line: {e}"))?;
    let (cmd, args) = words.split_first().expect("a non-empty line has a word");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let want = |n: usize| -> Result<(), String> {
        if a.len() == n {
            Ok(())
        } else {
            Err(usage(cmd))
        }
    };
    let user = |s: &str| UserName::new(s).map_err(|e| e.to_string());
    let group = |s: &str| GroupName::new(s).map_err(|e| e.to_string());
    let file = |s: &str| FileName::new(s).map_err(|e| e.to_string());
    use Request::*;
    let t = CliCommand::Tracker;
    Ok(match cmd.as_str() {
        "create_user" | "login" => {
            let create = cmd == "create_user";
            match a.as_slice() {
                [u] => CliCommand::AskPassword {
                    user: user(u)?,
                    create,
                },
                [u, p] => with_password(user(u)?, create, p)?,
                _ => return Err(usage(cmd)),
            }
        }
        "logout" => {
            want(0)?;
            t(Logout)
        }
        "create_group" => {
            want(1)?;
            t(CreateGroup {
                group: group(a[0])?,
            })
        }
        "join_group" => {
            want(1)?;
            t(JoinGroup {
                group: group(a[0])?,
            })
        }
        "leave_group" => {
            want(1)?;
            t(LeaveGroup {
                group: group(a[0])?,
            })
        }
        "list_groups" => {
            want(0)?;
            t(ListGroups)
        }
        "list_requests" => {
            want(1)?;
            t(ListRequests {
                group: group(a[0])?,
            })
        }
        "accept_request" => {
            want(2)?;
            t(AcceptRequest {
                group: group(a[0])?,
                user: user(a[1])?,
            })
        }
        "reject_request" => {
            want(2)?;
            t(RejectRequest {
                group: group(a[0])?,
                user: user(a[1])?,
            })
        }
        "upload_file" => {
            want(2)?;
            // The seed's order is `upload_file <path> <group>`; accept it too
            // when the first argument is a path and the second a name.
            let (g, p) = if GroupName::new(a[0]).is_err() && GroupName::new(a[1]).is_ok() {
                (a[1], a[0])
            } else {
                (a[0], a[1])
            };
            CliCommand::Upload {
                group: group(g)?,
                path: PathBuf::from(p),
            }
        }
        "list_files" => {
            want(1)?;
            t(ListFiles {
                group: group(a[0])?,
            })
        }
        "list_members" => {
            want(1)?;
            t(ListMembers {
                group: group(a[0])?,
            })
        }
        "download_file" => {
            let force = a.contains(&"--force");
            let mut a: Vec<&str> = a.iter().copied().filter(|w| *w != "--force").collect();
            let expected = match a.iter().position(|w| *w == "--hash") {
                None => None,
                Some(i) if i + 1 < a.len() => {
                    let h = file_hash(a[i + 1])?;
                    a.drain(i..i + 2);
                    Some(h)
                }
                Some(_) => return Err(usage(cmd)),
            };
            if a.len() != 3 {
                return Err(usage(cmd));
            }
            CliCommand::Download {
                group: group(a[0])?,
                file: file(a[1])?,
                dest: PathBuf::from(a[2]),
                force,
                expected,
            }
        }
        "show_downloads" => {
            want(0)?;
            CliCommand::ShowDownloads
        }
        "set_rate" => match a.as_slice() {
            [] => CliCommand::ShowRates,
            [which, rate] => CliCommand::SetRate {
                limit: match *which {
                    "up" => RateLimit::Up,
                    "down" => RateLimit::Down,
                    "up-per-peer" => RateLimit::UpPerPeer,
                    "down-per-peer" => RateLimit::DownPerPeer,
                    _ => return Err(usage(cmd)),
                },
                rate: parse_rate(rate)?,
            },
            _ => return Err(usage(cmd)),
        },
        "stop_share" => {
            want(2)?;
            t(StopShare {
                group: group(a[0])?,
                file: file(a[1])?,
            })
        }
        "wait_downloads" => match a.as_slice() {
            [] => CliCommand::WaitDownloads { seconds: None },
            [s] => CliCommand::WaitDownloads {
                seconds: Some(
                    s.parse()
                        .map_err(|_| format!("{s:?} is not a number of seconds"))?,
                ),
            },
            _ => return Err(usage(cmd)),
        },
        "serve" => {
            want(0)?;
            CliCommand::Serve
        }
        "exit" | "quit" => CliCommand::Exit,
        "help" => CliCommand::Help,
        other => return Err(usage(other)),
    })
}

/// The request of `login` (`create: false`) or `create_user` with the
/// password given.
pub fn with_password(user: UserName, create: bool, password: &str) -> Result<CliCommand, String> {
    let password = Password::new(password).map_err(|e| e.to_string())?;
    Ok(CliCommand::Tracker(match create {
        true => Request::CreateUser { user, password },
        false => Request::Login { user, password },
    }))
}

/// What a script that left the password out is told.
pub fn no_password_error(create: bool) -> String {
    let cmd = if create { "create_user" } else { "login" };
    format!(
        "{cmd}: no password given, and the input is not a terminal to ask for one; {}",
        usage(cmd)
    )
}

/// Whether `line` may hold a password, so that it must not be kept in a
/// history: two or more arguments follow a first word that is `login` or
/// `create_user` (in any case, with `-` for `_` or without it, quoted or
/// not), or that is no command at all (a mistyped `login`). Errs on the
/// side of forgetting a line: one that cannot be split like a shell is
/// split at white space.
pub fn carries_password(line: &str) -> bool {
    let words = shell_words::split(line)
        .unwrap_or_else(|_| line.split_whitespace().map(str::to_owned).collect());
    let Some((cmd, args)) = words.split_first() else {
        return false;
    };
    let plain = |c: &str| -> String {
        c.chars()
            .filter(|c| !matches!(c, '_' | '-' | '"' | '\'' | '\\'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let cmd = plain(cmd);
    let known = USAGE.iter().any(|(c, _)| plain(c) == cmd) || cmd == "quit";
    let secret = matches!(cmd.as_str(), "login" | "createuser") || !known;
    secret && args.iter().filter(|a| !a.trim().is_empty()).count() >= 2
}

/// The help text.
pub fn help() -> String {
    let mut s = String::from("commands:\n");
    for (c, args) in USAGE {
        s.push_str(&format!("  {c} {args}\n"));
    }
    s.push_str("  (typed without the password, login and create_user ask for it without echo)\n");
    s
}

/// Human-readable bytes (KiB, MiB, GiB with one decimal).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What the user sees when a command succeeded.
pub fn format_ok(cmd: &CliCommand, ok: &CommandOk) -> String {
    match ok {
        CommandOk::Reply(r) => format_reply(cmd, r),
        CommandOk::Started { .. } => match cmd {
            CliCommand::Download {
                group, file, dest, ..
            } => format!(
                "downloading [{group}] {file} to {} in the background (show_downloads shows progress)",
                dest.display()
            ),
            _ => "started".into(),
        },
        CommandOk::Downloads(lines) => format_downloads(lines),
        CommandOk::Rates(r) => match cmd {
            CliCommand::SetRate { limit, .. } => format_rate(*limit, r),
            _ => format_rates(r),
        },
    }
}

/// One rate limit as `set_rate` reports it.
pub fn format_rate(limit: RateLimit, r: &Rates) -> String {
    let (name, rate) = match limit {
        RateLimit::Up => ("upload rate", r.up),
        RateLimit::Down => ("download rate", r.down),
        RateLimit::UpPerPeer => ("upload rate per peer", r.up_per_peer),
        RateLimit::DownPerPeer => ("download rate per peer", r.down_per_peer),
    };
    match rate {
        None => format!("{name}: no limit"),
        Some(v) => format!("{name} limited to {}/s", bytes(v)),
    }
}

/// Every rate limit, one line each (`set_rate` alone).
pub fn format_rates(r: &Rates) -> String {
    [
        RateLimit::Up,
        RateLimit::Down,
        RateLimit::UpPerPeer,
        RateLimit::DownPerPeer,
    ]
    .iter()
    .map(|&l| format_rate(l, r))
    .collect::<Vec<_>>()
    .join("\n")
}

fn format_reply(cmd: &CliCommand, r: &Reply) -> String {
    use CliCommand::Tracker as T;
    match (cmd, r) {
        (T(Request::CreateUser { user, .. }), Reply::Done) => format!("user {user} created"),
        (_, Reply::LoggedIn { user, .. }) => format!("logged in as {user}"),
        (T(Request::Logout), _) => "logged out".into(),
        (T(Request::CreateGroup { group }), _) => {
            format!("group {group} created; you are its owner")
        }
        (T(Request::JoinGroup { group }), _) => {
            format!("join request sent to the owner of {group} (wait for them to accept)")
        }
        (T(Request::LeaveGroup { group }), Reply::Left { new_owner, deleted }) => {
            match (new_owner, deleted) {
                (_, true) => format!("left group {group}; it had no other member and is deleted"),
                (Some(o), _) => format!("left group {group}; {o} is its owner now"),
                (None, _) => format!("left group {group}"),
            }
        }
        (T(Request::AcceptRequest { group, user }), _) => {
            format!("{user} is now a member of {group}")
        }
        (T(Request::RejectRequest { group, user }), _) => {
            format!("request from {user} to join {group} rejected")
        }
        (T(Request::StopShare { group, file }), _) => format!("stopped sharing {file} in {group}"),
        (CliCommand::Upload { group, path }, Reply::Shared { new_file }) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if *new_file {
                format!("sharing {name} in {group}")
            } else {
                format!(
                    "sharing {name} in {group} (same content as the copy already there: you are another seeder)"
                )
            }
        }
        (_, Reply::Groups(gs)) => format_groups(gs),
        (_, Reply::Requests(us)) if us.is_empty() => "no pending requests".into(),
        (_, Reply::Requests(us)) => us
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        (_, Reply::Files(fs)) => format_files(fs),
        (_, Reply::Members(us)) => format_members(us),
        (_, Reply::Resumed { user }) => format!("resumed session of {user}"),
        (_, Reply::Pong) => "pong".into(),
        (_, Reply::Status(s)) => format!("{s:?}"),
        (_, other) => format!("{other:?}"),
    }
}

fn format_groups(gs: &[GroupSummary]) -> String {
    if gs.is_empty() {
        return "no groups yet (create_group makes one)".into();
    }
    gs.iter()
        .map(|g| {
            let me = if g.member {
                "  [member]"
            } else if g.pending {
                "  [request pending]"
            } else {
                ""
            };
            let m = if g.members == 1 { "member" } else { "members" };
            format!("{}  owner {}  {} {m}{me}", g.name, g.owner, g.members)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `list_members`: one member a line, longest-standing first (the
/// tracker's order: the owner, then whoever would own the group next).
fn format_members(us: &[UserName]) -> String {
    us.iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn format_files(fs: &[FileSummary]) -> String {
    if fs.is_empty() {
        return "no files shared in this group yet".into();
    }
    fs.iter()
        .map(|f| {
            let partial = if f.partial > 0 {
                format!(", {} partial", f.partial)
            } else {
                String::new()
            };
            format!(
                "{}  {}  {} seeder(s) online{partial}  hash {}",
                f.name,
                bytes(f.size),
                f.seeders,
                f.file_hash
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `show_downloads`: one line per download.
pub fn format_downloads(lines: &[DownloadLine]) -> String {
    if lines.is_empty() {
        return "no downloads".into();
    }
    lines
        .iter()
        .map(format_download)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn format_download(l: &DownloadLine) -> String {
    let head = format!("{} [{}] {}", l.mark(), l.group, l.file);
    if let Some(e) = &l.error {
        return format!("{head}  failed: {e}");
    }
    let Some(p) = &l.progress else {
        return format!("{head}  starting");
    };
    let pct = if p.bytes_total == 0 {
        100.0
    } else {
        p.bytes_done as f64 * 100.0 / p.bytes_total as f64
    };
    let body = format!("{pct:.0}%  {}/{} pieces", p.pieces_done, p.pieces_total);
    match &p.state {
        DownloadState::Complete => format!("{head}  {body}  complete"),
        DownloadState::Failed(e) => format!("{head}  {body}  failed: {e}"),
        DownloadState::Downloading => {
            let why = p
                .waiting_reason
                .as_ref()
                .map(|w| format!("  ({w})"))
                .unwrap_or_default();
            let eta = eta_secs(p)
                .map(|s| format!("  ETA {}", duration(s)))
                .unwrap_or_default();
            format!(
                "{head}  {body}  {}/s{eta}  {} peer(s){}{why}",
                bytes(p.rate_bps),
                p.peers_in_use,
                per_peer(p)
            )
        }
    }
}

/// When plain progress lines are printed (output that is not a
/// terminal): each time a download crosses another tenth, and once at its
/// end. Pure; the caller prints what [`TenPercent::step`] returns.
#[derive(Debug, Default)]
pub struct TenPercent {
    /// Per download: the last tenth printed, and whether its end was.
    seen: std::collections::BTreeMap<u64, (u64, bool)>,
}

impl TenPercent {
    /// The line to print for this state of `l`, if any.
    pub fn step(&mut self, l: &DownloadLine) -> Option<String> {
        let ended = l.state() != p2p_state::client::node::DownloadMark::Downloading;
        let tenth = match &l.progress {
            Some(p) if p.bytes_total > 0 => p.bytes_done * 10 / p.bytes_total,
            Some(_) => 10,
            None => 0,
        };
        let seen = self.seen.entry(l.dl).or_insert((0, false));
        if seen.1 || (!ended && tenth <= seen.0) {
            return None;
        }
        *seen = (tenth, ended);
        Some(format_download(l))
    }
}

/// Seconds left at the current rate (`None` while nothing arrives).
pub fn eta_secs(p: &Progress) -> Option<u64> {
    if p.rate_bps == 0 || p.state != DownloadState::Downloading {
        return None;
    }
    Some(
        p.bytes_total
            .saturating_sub(p.bytes_done)
            .div_ceil(p.rate_bps),
    )
}

/// `1m05s`, `2h03m`, `42s`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// What each peer gave: `[alice 12, bob 30]` (pieces), peers that gave
/// nothing yet left out.
fn per_peer(p: &Progress) -> String {
    let gave: Vec<String> = p
        .peers
        .iter()
        .filter(|q| q.pieces_received > 0)
        .map(|q| format!("{} {}", q.user, q.pieces_received))
        .collect();
    match gave.is_empty() {
        true => String::new(),
        false => format!(" [{}]", gave.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_binary_units_or_off() {
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("OFF"), Ok(None));
        assert_eq!(parse_rate("1"), Ok(Some(1)));
        assert_eq!(parse_rate("500K"), Ok(Some(500 * 1024)));
        assert_eq!(parse_rate("10m"), Ok(Some(10 << 20)));
        assert_eq!(parse_rate("2G"), Ok(Some(2 << 30)));
        for bad in [
            "",
            "K",
            "1.5M",
            "-1",
            "10X",
            "ten",
            "1 M",
            "99999999999999999999G",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(
                e.contains("is not a rate") && e.contains("500K"),
                "{bad}: {e}"
            );
        }
        let e = parse_rate("0").unwrap_err();
        assert!(e.contains("use off"), "{e}");
    }

    #[test]
    fn set_rate_parses_and_reports() {
        let set = |limit, rate| Ok(CliCommand::SetRate { limit, rate });
        assert_eq!(
            parse_line("set_rate up 5M"),
            set(RateLimit::Up, Some(5 << 20))
        );
        assert_eq!(parse_line("set_rate up off"), set(RateLimit::Up, None));
        assert_eq!(
            parse_line("set_rate down 1K"),
            set(RateLimit::Down, Some(1024))
        );
        assert_eq!(
            parse_line("set_rate up-per-peer 2M"),
            set(RateLimit::UpPerPeer, Some(2 << 20))
        );
        assert_eq!(
            parse_line("set_rate down-per-peer off"),
            set(RateLimit::DownPerPeer, None)
        );
        assert_eq!(parse_line("set_rate"), Ok(CliCommand::ShowRates));
        for bad in ["set_rate sideways 5M", "set_rate up", "set_rate up 5M 6M"] {
            assert_eq!(
                parse_line(bad).unwrap_err(),
                "usage: set_rate [up|down|up-per-peer|down-per-peer <rate|off>]"
            );
        }
        let rates = Rates {
            up: Some(5 << 20),
            down_per_peer: Some(1024),
            ..Rates::default()
        };
        let cmd = CliCommand::SetRate {
            limit: RateLimit::Up,
            rate: Some(5 << 20),
        };
        let text = format_ok(&cmd, &CommandOk::Rates(rates));
        assert_eq!(text, "upload rate limited to 5.0 MiB/s");
        let cmd = CliCommand::SetRate {
            limit: RateLimit::Down,
            rate: None,
        };
        assert_eq!(
            format_ok(&cmd, &CommandOk::Rates(rates)),
            "download rate: no limit"
        );
        assert_eq!(
            format_ok(&CliCommand::ShowRates, &CommandOk::Rates(rates)),
            "upload rate limited to 5.0 MiB/s\ndownload rate: no limit\n\
             upload rate per peer: no limit\ndownload rate per peer limited to 1.0 KiB/s"
        );
    }

    #[test]
    fn seed_commands_parse() {
        assert_eq!(
            parse_line("create_user alice s3cret").unwrap(),
            CliCommand::Tracker(Request::CreateUser {
                user: UserName::new("alice").unwrap(),
                password: Password::new("s3cret").unwrap()
            })
        );
        assert_eq!(parse_line("  ").unwrap(), CliCommand::Nothing);
        assert_eq!(parse_line("# comment").unwrap(), CliCommand::Nothing);
        assert!(matches!(
            parse_line("download_file g1 \"my file.txt\" /tmp").unwrap(),
            CliCommand::Download { .. }
        ));
        assert_eq!(
            parse_line("wait_downloads 30").unwrap(),
            CliCommand::WaitDownloads { seconds: Some(30) }
        );
    }

    /// `list_members <group>` asks the tracker; its answer is one name a
    /// line, in the tracker's order.
    #[test]
    fn list_members_parses_and_prints_one_member_a_line() {
        let cmd = parse_line("list_members g1").unwrap();
        let g1 = GroupName::new("g1").unwrap();
        assert_eq!(cmd, CliCommand::Tracker(Request::ListMembers { group: g1 }));
        assert_eq!(
            parse_line("list_members").unwrap_err(),
            "usage: list_members <group>"
        );
        let names = ["owner", "zed", "amy"].map(|n| UserName::new(n).unwrap());
        let ok = CommandOk::Reply(Reply::Members(names.to_vec()));
        assert_eq!(format_ok(&cmd, &ok), "owner\nzed\namy");
    }

    /// `--force` (anywhere after the command) is the only way to replace
    /// an existing destination file.
    #[test]
    fn download_force_is_explicit() {
        let parse = |l: &str| match parse_line(l).unwrap() {
            CliCommand::Download { dest, force, .. } => (dest, force),
            other => panic!("{other:?}"),
        };
        assert_eq!(parse("download_file g f.txt /tmp"), ("/tmp".into(), false));
        assert_eq!(
            parse("download_file g f.txt /tmp --force"),
            ("/tmp".into(), true)
        );
        assert_eq!(
            parse("download_file --force g f.txt /tmp"),
            ("/tmp".into(), true)
        );
        assert_eq!(
            parse_line("download_file g f.txt").unwrap_err(),
            "usage: download_file <group> <file_name> <dest> [--hash <file_hash>] [--force]"
        );
        assert!(parse_line("download_file g f.txt /tmp x --force").is_err());
    }

    /// `--hash` takes the 40 hex digits `list_files` shows, anywhere after
    /// the command; anything else is refused with what a hash looks like.
    #[test]
    fn download_takes_an_optional_expected_hash() {
        let parse = |l: &str| match parse_line(l) {
            Ok(CliCommand::Download { expected, dest, .. }) => Ok((expected, dest)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let hex = "00112233445566778899AABBCCDDEEFF0a1b2c3d";
        let mut want = [0u8; 20];
        want[..16].copy_from_slice(&[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        want[16..].copy_from_slice(&[0x0a, 0x1b, 0x2c, 0x3d]);
        let got = parse(&format!("download_file g f /tmp --hash {hex}")).unwrap();
        assert_eq!(got, (Some(Sha1Hash(want)), "/tmp".into()));
        let got = parse(&format!("download_file --hash {hex} g f /tmp --force")).unwrap();
        assert_eq!(got, (Some(Sha1Hash(want)), "/tmp".into()));
        assert_eq!(parse("download_file g f /tmp").unwrap().0, None);
        let short = parse(&format!("download_file g f /tmp --hash {}", &hex[..39]));
        assert!(short.unwrap_err().contains("40 hex digits"));
        let bad = parse(&format!("download_file g f /tmp --hash {}g", &hex[..39]));
        assert!(bad.unwrap_err().contains("not a file hash"));
        assert!(parse("download_file g f /tmp --hash").is_err());
    }

    #[test]
    fn upload_accepts_both_orders() {
        let want = CliCommand::Upload {
            group: GroupName::new("g1").unwrap(),
            path: PathBuf::from("/tmp/a.bin"),
        };
        assert_eq!(parse_line("upload_file g1 /tmp/a.bin").unwrap(), want);
        assert_eq!(parse_line("upload_file /tmp/a.bin g1").unwrap(), want);
    }

    #[test]
    fn errors_say_what_to_do() {
        assert_eq!(
            parse_line("login").unwrap_err(),
            "usage: login <user> [password]"
        );
        assert_eq!(
            parse_line("create_user a b c").unwrap_err(),
            "usage: create_user <user> [password]"
        );
        assert_eq!(parse_line("logout now").unwrap_err(), "usage: logout");
        assert!(parse_line("fly").unwrap_err().contains("type help"));
        assert!(
            parse_line("create_group ../etc")
                .unwrap_err()
                .contains("must not contain")
        );
        assert!(
            parse_line("wait_downloads soon")
                .unwrap_err()
                .contains("not a number")
        );
    }

    /// Without the password, login and create_user ask for it; with it,
    /// the request is the same as the seed's one-line form.
    #[test]
    fn a_missing_password_is_asked_for() {
        let alice = UserName::new("alice").unwrap();
        assert_eq!(
            parse_line("login alice").unwrap(),
            CliCommand::AskPassword {
                user: alice.clone(),
                create: false
            }
        );
        assert_eq!(
            parse_line("create_user alice").unwrap(),
            CliCommand::AskPassword {
                user: alice.clone(),
                create: true
            }
        );
        assert_eq!(
            with_password(alice.clone(), false, "pw").unwrap(),
            parse_line("login alice pw").unwrap()
        );
        assert_eq!(
            with_password(alice.clone(), true, "pw").unwrap(),
            parse_line("create_user alice pw").unwrap()
        );
        assert!(with_password(alice, false, "").is_err());
        let e = no_password_error(false);
        assert!(e.contains("not a terminal") && e.ends_with("usage: login <user> [password]"));
    }

    /// No spelling of a line with a password may reach a history.
    #[test]
    fn lines_with_a_password_are_recognised() {
        for line in [
            "login alice s3cret",
            "  login   alice   s3cret  ",
            "\tlogin\talice\ts3cret",
            "LOGIN alice s3cret",
            "Login alice s3cret",
            "create_user bob hunter2",
            "CREATE_USER bob hunter2",
            "create-user bob hunter2",
            "createuser bob hunter2",
            "\"login\" alice s3cret",
            "login alice \"my secret words\"",
            "login alice 'unclosed quote",
            "login alice s3cret extra",
            "lgoin alice s3cret",
            "logn alice s3cret",
        ] {
            assert!(carries_password(line), "{line:?}");
        }
        for line in [
            "login alice",
            "login",
            "create_user bob",
            "logout",
            "list_groups",
            "join_group login",
            "download_file g login x",
            "accept_request g alice",
            "LIST_FILES g",
            "lgoin alice",
            "",
            "   ",
        ] {
            assert!(!carries_password(line), "{line:?}");
        }
    }

    /// `show_downloads` shows the ETA and what each peer gave.
    #[test]
    fn a_download_line_has_eta_and_per_peer_figures() {
        use p2p_proto::PieceSet;
        use p2p_state::download::PeerProgress;
        let peer = |u: &str, n| PeerProgress {
            user: UserName::new(u).unwrap(),
            addr: "127.0.0.1:1".parse().unwrap(),
            pieces_received: n,
            in_flight: 1,
            rate_bps: None,
            connected: true,
        };
        let p = Progress {
            state: DownloadState::Downloading,
            pieces_done: 3,
            pieces_total: 10,
            bytes_done: 3 << 20,
            bytes_total: 10 << 20,
            rate_bps: 1 << 20,
            peers_in_use: 2,
            peers_connected: 2,
            peers_known: 3,
            requests_in_flight: 2,
            waiting_reason: None,
            have: PieceSet::empty(10),
            peers: vec![peer("alice", 2), peer("bob", 1), peer("carol", 0)],
        };
        assert_eq!(eta_secs(&p), Some(7));
        let l = DownloadLine {
            dl: 1,
            group: GroupName::new("g").unwrap(),
            file: FileName::new("f.bin").unwrap(),
            progress: Some(p.clone()),
            error: None,
        };
        assert_eq!(
            format_download(&l),
            "[D] [g] f.bin  30%  3/10 pieces  1.0 MiB/s  ETA 7s  2 peer(s) [alice 2, bob 1]"
        );
        let idle = Progress { rate_bps: 0, ..p };
        assert_eq!(eta_secs(&idle), None);
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(7380), "2h03m");
    }

    /// Plain progress: a line per tenth crossed and one at the end, none
    /// in between or after.
    #[test]
    fn plain_progress_prints_every_tenth_and_the_end() {
        let line = |done: u64, state: DownloadState| DownloadLine {
            dl: 7,
            group: GroupName::new("g").unwrap(),
            file: FileName::new("f").unwrap(),
            progress: Some(Progress {
                state,
                pieces_done: done as u32,
                pieces_total: 100,
                bytes_done: done,
                bytes_total: 100,
                rate_bps: 0,
                peers_in_use: 0,
                peers_connected: 0,
                peers_known: 0,
                requests_in_flight: 0,
                waiting_reason: None,
                have: p2p_proto::PieceSet::empty(100),
                peers: vec![],
            }),
            error: None,
        };
        let mut t = TenPercent::default();
        let printed: Vec<u64> = [0, 5, 9, 10, 15, 19, 20, 45, 99]
            .into_iter()
            .filter(|&d| t.step(&line(d, DownloadState::Downloading)).is_some())
            .collect();
        assert_eq!(printed, [10, 20, 45, 99]);
        assert!(t.step(&line(100, DownloadState::Complete)).is_some());
        assert!(t.step(&line(100, DownloadState::Complete)).is_none());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
