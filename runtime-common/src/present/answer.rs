//! The text the user sees for a command's answer: tracker replies,
//! listings, rate limits, and `help`.

use p2p_proto::{FileSummary, GroupSummary, Reply, Request, UserName};
use p2p_state::client::node::{CommandOk, RateLimit, Rates};

use super::downloads::{download_name, format_downloads};
use super::units::bytes;
use crate::cli::{CliCommand, USAGE};

/// The help text: every command with its arguments.
pub fn help() -> String {
    let mut s = String::from("commands:\n");
    for (c, args) in USAGE {
        s.push_str(&format!("  {c} {args}\n"));
    }
    s.push_str("  (typed without the password, login and create_user ask for it without echo)\n");
    s
}

/// What the user sees when a command succeeded.
pub fn format_ok(cmd: &CliCommand, ok: &CommandOk) -> String {
    match ok {
        CommandOk::Reply(r) => format_reply(cmd, r),
        CommandOk::Started { .. } => match cmd {
            CliCommand::Download {
                group, file, dest, ..
            } => format!(
                "downloading {} to {} in the background (show_downloads shows progress)",
                download_name(group, file),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_line;
    use p2p_proto::GroupName;

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

    #[test]
    fn help_lists_every_command() {
        let h = help();
        assert!(h.starts_with("commands:\n  create_user <user> [password]\n"));
        assert!(USAGE.iter().all(|(c, _)| h.contains(&format!("  {c} "))));
    }
}
