//! The interactive client's command history: lines that may carry a
//! password never enter it (in memory or in its file), and its file is
//! kept owner-only (0600).

use std::path::Path;

use runtime_common::cli;
use rustyline::history::{DefaultHistory, History};

/// Adds a typed line to the history, unless it is blank or may carry a
/// password ([`cli::carries_password`]).
pub fn remember(h: &mut DefaultHistory, line: &str) {
    if !line.trim().is_empty() && !cli::carries_password(line) {
        let _ = h.add(line);
    }
}

/// Loads the history file without the lines that may carry a password
/// (older versions kept them); if it had any, it is rewritten at once
/// without them.
pub fn load(h: &mut DefaultHistory, path: &Path) {
    if h.load(path).is_err() {
        return;
    }
    let lines: Vec<String> = h.iter().cloned().collect();
    if !lines.iter().any(|l| cli::carries_password(l)) {
        return;
    }
    let _ = h.clear();
    for l in &lines {
        remember(h, l);
    }
    match h.is_empty() {
        true => {
            let _ = std::fs::remove_file(path);
        }
        false => save(h, path),
    }
}

/// Saves the history file, 0600 (rustyline creates it so; an older,
/// looser file is tightened too).
pub fn save(h: &mut DefaultHistory, path: &Path) {
    if let Err(e) = h.save(path) {
        eprintln!(
            "note: could not save the history in {}: {e}",
            path.display()
        );
    }
    if let Ok(f) = std::fs::File::open(path) {
        let _ = runtime_common::private::restrict(&f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the history holds in memory.
    fn lines(h: &DefaultHistory) -> Vec<String> {
        h.iter().cloned().collect()
    }

    /// A line with a password never enters the history in memory; the
    /// same command without it does.
    #[test]
    fn lines_with_a_password_are_not_remembered() {
        let mut h = DefaultHistory::new();
        for l in [
            "login alice s3cret",
            "  LOGIN  alice  s3cret",
            "create_user bob hunter2",
            "login alice",
            "",
            "list_groups",
        ] {
            remember(&mut h, l);
        }
        assert_eq!(lines(&h), ["login alice", "list_groups"]);
    }

    /// A history file an older version wrote, with passwords in it and
    /// mode 0644, is rewritten without them and 0600 as soon as it is
    /// loaded; one with nothing else in it is removed.
    #[test]
    fn an_old_history_file_loses_its_passwords_at_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history");
        let mut old = DefaultHistory::new();
        for l in ["list_groups", "login alice s3cret", "join_group g"] {
            old.add(l).unwrap();
        }
        old.save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut h = DefaultHistory::new();
        load(&mut h, &path);
        assert_eq!(lines(&h), ["list_groups", "join_group g"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("join_group g"), "{text}");
        let mode = runtime_common::private::mode_of(&path).unwrap();
        assert_eq!(mode, 0o600);

        let mut only = DefaultHistory::new();
        only.add("create_user bob hunter2").unwrap();
        only.save(&path).unwrap();
        let mut h = DefaultHistory::new();
        load(&mut h, &path);
        assert!(h.is_empty() && !path.exists());
    }

    /// The history written at exit is 0600 even over a looser file.
    #[test]
    fn the_history_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut h = DefaultHistory::new();
        remember(&mut h, "list_groups");
        save(&mut h, &path);
        assert_eq!(runtime_common::private::mode_of(&path).unwrap(), 0o600);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("list_groups")
        );
    }
}
