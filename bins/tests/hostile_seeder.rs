//! Issue 16 §6 against the real binaries on 127.0.0.0/8, on both runtimes:
//! a seeder slot flood (many ticketless connections from one address,
//! each with its TLS handshake and hello done) leaves a member served
//! promptly, with the seeder's threads and memory within bounds; and the
//! upload rate limit slows a real download and `set_rate up off` lifts it;
//! the download limits (global at start, per peer at run time) likewise.
//!
//! Every process is killed when the test ends (a Drop guard); every wait
//! has a deadline.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::{Mix, Proc, Rt, Swarm, connect_from, free_port, proc_status, random_file};

on_both_runtimes!(
    a_ticketless_flood_from_one_address_leaves_members_served,
    the_upload_rate_limit_slows_a_download_and_off_lifts_it,
    the_download_rate_limits_slow_a_download_and_off_lifts_them,
);

/// Ticketless connections the flood opens: more than the seeder's 128
/// serving slots (`CONNS_MAX`), which before issue 16 §6 it filled.
const FLOOD_CONNS: usize = 140;
/// How long the member's download may take after the flood (it takes
/// well under a second on an idle machine; the flood's connections would
/// hold the slots for `OPEN_TIMEOUT`, 10 s, if they could take them).
const SERVED_WITHIN_SECS: u64 = 8;
/// The seeder's threads after the flood: its fixed few plus two per
/// connection it keeps (at most `UNOPENED_PER_ADDR_MAX` = 8 of the
/// flood's, and the member's), with room to spare; far below the two per
/// flood connection it would cost if it kept them.
const SEEDER_THREADS_MAX: u64 = 64;
/// The seeder's resident memory after the flood.
const SEEDER_RSS_MAX_KIB: u64 = 256 * 1024;

/// alice (owner of group g, seeder on `listen`, sharing a file of `len`
/// bytes) and bob (member), both logged in. Returns them and the data.
/// `bob_extra` are bob's extra arguments.
fn alice_shares(
    s: &Swarm,
    listen: &str,
    len: usize,
    extra: &[&str],
    bob_extra: &[&str],
) -> (Proc, Proc, Vec<u8>) {
    let mut a = s.client_with("alice", 0, listen, s.mix.seeders, extra);
    let mut b = s.client_with("bob", 1, "127.0.0.1:0", s.mix.leechers, bob_extra);
    a.run("create_user alice pw", "created");
    a.run("login alice pw", "logged in");
    a.run("create_group g", "created");
    b.run("create_user bob pw", "created");
    b.run("login bob pw", "logged in");
    b.run("join_group g", "join request sent");
    a.run("accept_request g bob", "now a member");
    let file = s.dir.path().join("x.bin");
    let data = random_file(&file, len, 7);
    a.run(&format!("upload_file g {}", file.display()), "sharing");
    (a, b, data)
}

/// bob downloads x.bin to `name`: the time it took, the file checked.
fn download(s: &Swarm, b: &mut Proc, name: &str, data: &[u8], within: u64) -> Duration {
    let dest = s.dir.path().join(name);
    let t = Instant::now();
    b.run(
        &format!("download_file g x.bin {}", dest.display()),
        "in the background",
    );
    b.run(&format!("wait_downloads {within}"), "all downloads ended");
    let took = t.elapsed();
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "{name}: not byte-exact"
    );
    took
}

fn a_ticketless_flood_from_one_address_leaves_members_served(mix: Mix) {
    use p2p_proto::{Hello, Role, encode_msg};
    let s = Swarm::start(mix);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (a, mut b, data) = alice_shares(&s, &listen, 2 * 512 * 1024, &[], &[]);
    // The flood, from 127.0.0.2 (the member is on 127.0.0.1): TLS done
    // and a hello sent on every connection, then silence, all held open.
    let id = tempfile::tempdir().unwrap();
    let tls = runtime_common::tls::Identity::load_or_create(id.path())
        .unwrap()
        .tls();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let mut hello = bytes::BytesMut::new();
    encode_msg(&Hello::new(Role::Peer), &mut hello);
    let mut held = Vec::new();
    for _ in 0..FLOOD_CONNS {
        let Ok(tcp) = connect_from(Ipv4Addr::new(127, 0, 0, 2), to) else {
            continue; // refused at once: fine
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        if let Ok((mut c, _)) = tls.connect_blocking(tcp) {
            let _ = c.write_all(&hello);
            held.push(c);
        }
    }
    assert!(
        !held.is_empty(),
        "the flood got no connection through at all"
    );
    let took = download(&s, &mut b, "copy.bin", &data, SERVED_WITHIN_SECS);
    let pid = a.child.id();
    let (threads, rss) = (proc_status(pid, "Threads"), proc_status(pid, "VmRSS"));
    eprintln!(
        "{mix:?}: member served in {took:?} after {FLOOD_CONNS} ticketless connections; \
         seeder threads {threads}, RSS {rss} KiB"
    );
    assert!(threads <= SEEDER_THREADS_MAX, "{threads} threads");
    assert!(rss <= SEEDER_RSS_MAX_KIB, "{rss} KiB resident");
    drop(held);
}

/// The upload limit for the rate test (bytes per second).
const RATE: u64 = 256 * 1024;
/// The file: 2 pieces. The limit lets one second's worth (`RATE_BURST`)
/// plus one piece go at once, so the second piece waits at least
/// (1 MiB - 256 KiB - 512 KiB) / 256 KiB/s = 1 s; without a limit the
/// whole file takes a few tens of ms.
const RATE_FILE_LEN: usize = 2 * 512 * 1024;

fn the_upload_rate_limit_slows_a_download_and_off_lifts_it(mix: Mix) {
    let s = Swarm::start(mix);
    let rate = format!("{}K", RATE / 1024);
    let extra = ["--max-upload-rate", rate.as_str()];
    let (mut a, mut b, data) = alice_shares(&s, "127.0.0.1:0", RATE_FILE_LEN, &extra, &[]);
    let limited = download(&s, &mut b, "slow.bin", &data, 30);
    // At most one second's burst plus one piece goes early.
    let floor = Duration::from_millis((RATE_FILE_LEN as u64 - RATE - 512 * 1024) * 1000 / RATE);
    assert!(limited >= floor, "{limited:?} < {floor:?} at {rate}/s");
    a.run("set_rate up off", "upload rate: no limit");
    let free = download(&s, &mut b, "fast.bin", &data, 30);
    eprintln!("{mix:?}: {RATE_FILE_LEN} B at {rate}/s took {limited:?}; without a limit {free:?}");
    assert!(free * 2 < limited, "off: {free:?}, limited: {limited:?}");
}

/// bob's download limits (`--max-download-rate` at start, then
/// `set_rate down-per-peer` at run time; one seeder, so both bind the
/// same way) slow the download as the upload limit does, to at least the
/// same floor; `off` lifts each.
fn the_download_rate_limits_slow_a_download_and_off_lifts_them(mix: Mix) {
    let s = Swarm::start(mix);
    let rate = format!("{}K", RATE / 1024);
    let bob_extra = ["--max-download-rate", rate.as_str()];
    let (_a, mut b, data) = alice_shares(&s, "127.0.0.1:0", RATE_FILE_LEN, &[], &bob_extra);
    b.run("set_rate", "download rate limited to 256.0 KiB/s");
    let floor = Duration::from_millis((RATE_FILE_LEN as u64 - RATE - 512 * 1024) * 1000 / RATE);
    let limited = download(&s, &mut b, "slow.bin", &data, 30);
    assert!(
        limited >= floor,
        "global: {limited:?} < {floor:?} at {rate}/s"
    );
    b.run("set_rate down off", "download rate: no limit");
    b.run(
        &format!("set_rate down-per-peer {rate}"),
        "download rate per peer limited to 256.0 KiB/s",
    );
    let per_peer = download(&s, &mut b, "slow2.bin", &data, 30);
    assert!(per_peer >= floor, "per peer: {per_peer:?} < {floor:?}");
    b.run(
        "set_rate down-per-peer off",
        "download rate per peer: no limit",
    );
    let free = download(&s, &mut b, "fast.bin", &data, 30);
    eprintln!(
        "{mix:?}: {RATE_FILE_LEN} B at {rate}/s took {limited:?} (global), \
         {per_peer:?} (per peer); without a limit {free:?}"
    );
    assert!(free * 2 < limited.min(per_peer), "off: {free:?}");
}
