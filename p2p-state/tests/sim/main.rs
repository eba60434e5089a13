//! Whole-system scenarios on the deterministic simulated world: real
//! tracker and client machines, real codecs, simulated network and clock.

mod world;

use p2p_proto::{FileName, GroupName, Password, Reply, Request, UserName};
use p2p_state::client::node::{ClientEvent, Command, CommandOk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use world::World;

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}
fn g(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}
fn pw(s: &str) -> Password {
    Password::new(s).unwrap()
}
fn t(r: Request) -> Command {
    Command::Tracker(r)
}
fn ok(r: Result<CommandOk, p2p_state::client::session::ClientError>) -> CommandOk {
    r.unwrap_or_else(|e| panic!("command failed: {e}"))
}

fn user(w: &mut World, c: usize, name: &str) {
    ok(w.cmd(
        c,
        t(Request::CreateUser {
            user: u(name),
            password: pw("pw"),
        }),
    ));
    ok(w.cmd(
        c,
        t(Request::Login {
            user: u(name),
            password: pw("pw"),
        }),
    ));
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// The seed's walkthrough: users, a group with accepted and rejected
/// requests, a file shared by two members and downloaded by a third from
/// both, byte-exact.
#[test]
fn walkthrough_two_seeders_one_leecher() {
    let mut w = World::new(1, 2, 4);
    w.run(3000);
    user(&mut w, 0, "alice");
    user(&mut w, 1, "bob");
    user(&mut w, 2, "carol");
    user(&mut w, 3, "mallory");
    ok(w.cmd(0, t(Request::CreateGroup { group: g("g1") })));
    for c in [1, 2, 3] {
        ok(w.cmd(c, t(Request::JoinGroup { group: g("g1") })));
    }
    ok(w.cmd(
        0,
        t(Request::AcceptRequest {
            group: g("g1"),
            user: u("bob"),
        }),
    ));
    ok(w.cmd(
        0,
        t(Request::AcceptRequest {
            group: g("g1"),
            user: u("carol"),
        }),
    ));
    ok(w.cmd(
        0,
        t(Request::RejectRequest {
            group: g("g1"),
            user: u("mallory"),
        }),
    ));

    let data = random_bytes(7, 40 * 1024 + 123);
    ok(w.share(0, "g1", "movie.bin", &data, 1024));
    ok(w.share(1, "g1", "movie.bin", &data, 1024));
    // A non-member cannot list or download.
    assert!(w.cmd(3, t(Request::ListFiles { group: g("g1") })).is_err());
    assert!(
        w.cmd(
            3,
            Command::Download {
                group: g("g1"),
                file: FileName::new("movie.bin").unwrap(),
                dest: 1
            }
        )
        .is_err()
    );

    let started = ok(w.cmd(
        2,
        Command::Download {
            group: g("g1"),
            file: FileName::new("movie.bin").unwrap(),
            dest: 7,
        },
    ));
    assert!(matches!(started, CommandOk::Started { .. }));
    let done = w.run_until(60_000, |w| w.clients[2].disk.finished.contains_key(&7));
    assert!(done, "download did not finish\n{}", w.tail());
    assert_eq!(w.clients[2].disk.finished[&7], data, "byte-exact");
    assert!(
        w.clients[2]
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::DownloadFinished { result: Ok(()), .. }))
    );
    let served: Vec<u64> = [0, 1]
        .iter()
        .map(|&c| w.clients[c].m.seeder().stats().served.pieces)
        .collect();
    assert!(
        served.iter().all(|&n| n > 0),
        "both seeders served pieces: {served:?}"
    );
    let CommandOk::Downloads(lines) = ok(w.cmd(2, Command::ShowDownloads)) else {
        panic!()
    };
    assert_eq!(lines[0].mark(), "[C]");
    // The leecher is now a full source too.
    let CommandOk::Reply(Reply::Files(files)) =
        ok(w.cmd(1, t(Request::ListFiles { group: g("g1") })))
    else {
        panic!()
    };
    assert_eq!(files[0].seeders, 3, "{files:?}");
    // stop_share removes a seeder.
    ok(w.cmd(
        0,
        t(Request::StopShare {
            group: g("g1"),
            file: FileName::new("movie.bin").unwrap(),
        }),
    ));
    let CommandOk::Reply(Reply::Files(files)) =
        ok(w.cmd(1, t(Request::ListFiles { group: g("g1") })))
    else {
        panic!()
    };
    assert_eq!(files[0].seeders, 2);
    // Both trackers agree.
    w.run(1000);
    let d: Vec<_> = w
        .trackers
        .iter()
        .map(|t| t.m.as_ref().unwrap().state().digest())
        .collect();
    assert_eq!(d[0], d[1]);
}

/// The tracker a client uses dies mid-session: the client's next commands
/// work on the other tracker without logging in again, and a download in
/// progress completes.
#[test]
fn tracker_failover_mid_download() {
    let mut w = World::new(2, 2, 3);
    w.run(3000);
    user(&mut w, 0, "alice");
    user(&mut w, 1, "bob");
    ok(w.cmd(0, t(Request::CreateGroup { group: g("g") })));
    ok(w.cmd(1, t(Request::JoinGroup { group: g("g") })));
    ok(w.cmd(
        0,
        t(Request::AcceptRequest {
            group: g("g"),
            user: u("bob"),
        }),
    ));
    let data = random_bytes(9, 200 * 1024);
    ok(w.share(0, "g", "f", &data, 1024));
    // Client 1 talks to tracker 2 (index 1); it dies once the download runs.
    ok(w.cmd(
        1,
        Command::Download {
            group: g("g"),
            file: FileName::new("f").unwrap(),
            dest: 1,
        },
    ));
    w.run(30);
    assert!(
        !w.clients[1].disk.finished.contains_key(&1),
        "crash must hit mid-download"
    );
    let tracker_of_bob = w.clients[1].m.session().tracker();
    let i = w
        .trackers
        .iter()
        .position(|t| t.addr == tracker_of_bob)
        .unwrap();
    w.crash_tracker(i);
    let done = w.run_until(120_000, |w| w.clients[1].disk.finished.contains_key(&1));
    assert!(done, "download did not finish after failover\n{}", w.tail());
    assert_eq!(w.clients[1].disk.finished[&1], data);
    // Still logged in on the other tracker.
    let r = w.cmd(1, t(Request::CreateGroup { group: g("after") }));
    assert!(r.is_ok(), "{r:?}\n{}", w.tail());
}
