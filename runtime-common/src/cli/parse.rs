//! The line parser: [`CliCommand`], what one line of user input means,
//! with [`USAGE`] (the command table that usage errors and `help` are
//! made from), and the rate syntax ([`parse_rate`]) shared with the
//! client's flags.

use std::path::PathBuf;

use p2p_proto::{FileName, GroupName, Request, Sha1Hash, UserName};
use p2p_state::client::node::RateLimit;

use super::password::with_password;

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

pub(super) fn usage(cmd: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::Password;

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
}
