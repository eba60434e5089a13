//! Lines that carry a password: the request once the password is given
//! ([`with_password`]), what a script without one is told, and which
//! lines must never be kept in a history ([`carries_password`]).

use p2p_proto::{Password, Request, UserName};

use super::parse::{CliCommand, USAGE, usage};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_line;

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
}
