//! Secrets at rest, with the real binaries on 127.0.0.1 (issue 15 §7): the
//! trackers' and a client's data directories are 0700 and every file in
//! them 0600; a client data directory left loose is tightened at start,
//! with a warning; a script that leaves a password out gets an error that
//! names the usage (there is no terminal to ask on).
//!
//! Every process is killed when the test ends; every wait has a deadline.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::{Mix, Rt, Swarm, random_file};

on_both_runtimes!(data_directories_are_owner_only_and_scripts_give_passwords);

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `dir` is 0700 and every file in it 0600; returns the file names.
fn owner_only(dir: &Path) -> Vec<String> {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut names = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    names
}

/// Waits up to 10 s for `path` to exist (a file written by a worker).
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn data_directories_are_owner_only_and_scripts_give_passwords(mix: Mix) {
    let s = Swarm::start(mix);
    let file = s.dir.path().join("movie.bin");
    random_file(&file, 100_000, 7);
    // A client data directory left open to others, with a file in it.
    let data = s.dir.path().join("data-alice");
    fs::create_dir(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(data.join("shares.damaged"), b"old").unwrap();
    fs::set_permissions(
        data.join("shares.damaged"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let rt: Rt = mix.seeders;
    let mut a = s.client("alice", 0, "127.0.0.1:0", rt);
    a.expect("data-alice was open to its group or others (mode 755)", 20);
    a.expect(
        "shares.damaged was open to its group or others (mode 644)",
        20,
    );
    // Piped input: no terminal to ask a password on.
    a.run("login alice", "usage: login <user> [password]");
    a.run("create_user alice", "usage: create_user <user> [password]");
    a.run("create_user alice pw", "created");
    a.run("login alice pw", "logged in as");
    a.run("create_group g1", "created");
    let f = file.to_str().unwrap();
    a.run(&format!("upload_file g1 {f}"), "sharing movie.bin in g1");
    wait_for(&data.join("shares"));

    let names = owner_only(&data);
    assert!(names.contains(&"shares".to_string()), "{names:?}");
    assert!(!names.contains(&"history".to_string()), "{names:?}");
    for t in ["t1", "t2"] {
        let names = owner_only(&s.dir.path().join(t));
        assert!(names.contains(&"log".to_string()), "{t}: {names:?}");
    }
}
