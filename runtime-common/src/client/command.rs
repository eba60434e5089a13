//! The one command layer: a parsed [`CliCommand`] run against a client.
//! The REPL (`bins/src/bin/client.rs`) and the web API
//! ([`crate::web`]) both call [`run`], so what a line does and what a
//! `POST /api/<action>` does cannot drift apart.

use std::io;
use std::path::{Path, PathBuf};

use p2p_proto::FileMeta;
use p2p_state::client::node::{Command, CommandOk};

use super::Commander;
use crate::cli::{self, CliCommand};

/// A command that ran: the command as it ran (a download's destination
/// resolved), the machine's answer, and the text the user sees.
#[derive(Debug, Clone)]
pub struct Ran {
    pub cmd: CliCommand,
    pub ok: CommandOk,
    pub text: String,
}

/// Runs one command of the client's language. `hash` hashes a file for
/// `upload_file` (the REPL shows a progress bar, the web API does not).
/// Commands that belong to a console (`help`, `exit`, `wait_downloads`,
/// `serve`, a login without its password) are not run here: the caller
/// handles them, and here they are an error that says so.
pub fn run(
    c: &Commander,
    cmd: CliCommand,
    hash: &dyn Fn(&Path) -> io::Result<FileMeta>,
) -> Result<Ran, String> {
    let machine_cmd = match &cmd {
        CliCommand::Tracker(r) => Command::Tracker(r.clone()),
        CliCommand::ShowDownloads => Command::ShowDownloads,
        CliCommand::SetRate { limit, rate } => Command::SetRate {
            limit: *limit,
            rate: *rate,
        },
        CliCommand::ShowRates => Command::ShowRates,
        CliCommand::Upload { group, path } => {
            let path =
                std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let meta = hash(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let share = c.share_id(&path, group);
            Command::Share {
                group: group.clone(),
                meta,
                share,
            }
        }
        CliCommand::Download {
            group,
            file,
            dest,
            force,
            expected,
        } => {
            let dest = resolve_dest(dest, file.as_str())?;
            if !force && std::fs::symlink_metadata(&dest).is_ok() {
                return Err(format!(
                    "{}: the file already exists; add --force to replace it, or choose another destination",
                    dest.display()
                ));
            }
            let id = c.dest_id(&dest, *force);
            Command::Download {
                group: group.clone(),
                file: file.clone(),
                dest: id,
                expected: *expected,
            }
        }
        CliCommand::AskPassword { create, .. } => return Err(cli::no_password_error(*create)),
        CliCommand::Nothing
        | CliCommand::Exit
        | CliCommand::Help
        | CliCommand::WaitDownloads { .. }
        | CliCommand::Serve => {
            return Err("this command belongs to the console, not to a running client".into());
        }
    };
    let ok = c.run(machine_cmd).map_err(|e| e.to_string())?;
    let cmd = match cmd {
        CliCommand::Download {
            group,
            file,
            dest,
            force,
            expected,
        } => CliCommand::Download {
            dest: resolve_dest(&dest, file.as_str()).unwrap_or(dest),
            group,
            file,
            force,
            expected,
        },
        other => other,
    };
    let text = crate::present::format_ok(&cmd, &ok);
    Ok(Ran { cmd, ok, text })
}

/// An existing directory keeps the file's name; anything else is the path.
pub fn resolve_dest(dest: &Path, file: &str) -> Result<PathBuf, String> {
    let p = if dest.is_dir() {
        dest.join(file)
    } else {
        dest.to_path_buf()
    };
    match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.is_dir() => Err(format!(
            "{}: the directory does not exist",
            parent.display()
        )),
        _ => Ok(p),
    }
}
