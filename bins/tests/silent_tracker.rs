//! Issue 17 end to end: tracker 1's host goes silent (no RST, no FIN, as
//! when a machine dies or a cable is pulled) while its process runs on.
//! Real `tracker` and `client` binaries on 127.0.0.1; every path to
//! tracker 1 goes through a proxy that, once frozen, forwards nothing and
//! closes nothing. Tracker 2 must take over on its own deadlines and the
//! client must carry on there, still logged in — on both runtimes.
//!
//! Tracker 1 reaches tracker 2 through a proxy (its own `tracker_info.txt`
//! lists the proxy as tracker 2; only the lower id dials), and the client
//! reaches tracker 1 through another. Every process is killed on drop,
//! every wait has a deadline, every proxy thread stops with the test.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Tracker 2 must lead this soon after tracker 1 went silent: the
/// README's 1.2 s (peer timeout + heartbeat), with room for a loaded CI.
const TAKEOVER_MAX: Duration = Duration::from_secs(5);
/// A client's write must succeed this soon after its tracker went silent:
/// the README's switch (request timeout 3 s, then connect and resume).
const SWITCH_MAX: Duration = Duration::from_secs(10);

mod common;
use common::Proc;

/// A TCP proxy to `target` that can be frozen: from then on it forwards
/// nothing either way and closes nothing (new connections are accepted
/// and held), as a host that vanished. Its threads stop when it drops.
struct Blackhole {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Blackhole {
    fn start(target: SocketAddr) -> Blackhole {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frozen.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((a, _)) => {
                        let (f, s) = (f.clone(), s.clone());
                        thread::spawn(move || relay(a, target, f, s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            }
        });
        Blackhole { addr, frozen, stop }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Relays one accepted connection to `target` in both directions.
fn relay(a: TcpStream, target: SocketAddr, frozen: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    a.set_nonblocking(false).unwrap();
    if frozen.load(Ordering::SeqCst) {
        return hold(&[a], &stop);
    }
    let Ok(b) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        return; // refused, as the target would: `a` closes
    };
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (f, s) = (frozen.clone(), stop.clone());
    thread::spawn(move || pump(a2, b2, f, s));
    pump(b, a, frozen, stop);
}

/// Copies `from` to `to` until either ends, or until frozen: then reads
/// and drops everything, and keeps both open until the test ends.
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => 0,
        };
        let silent = frozen.load(Ordering::SeqCst);
        match (n, silent) {
            (0, true) => return hold(&[from, to], &stop),
            (0, false) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            (_, true) => {} // black-holed
            (n, false) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps sockets open, saying nothing, until the test ends.
fn hold(_open: &[TcpStream], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn write_info(dir: &Path, name: &str, addrs: &[SocketAddr]) -> String {
    let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(dir.join(name), text).unwrap();
    name.to_string()
}

fn tracker(dir: &Path, info: &str, n: usize, rt: &str) -> Proc {
    let data = dir.join(format!("t{n}"));
    common::swarm::spawn_tracker(dir, info, rt, &format!("tracker{n}"), n, &data)
}

fn a_silent_tracker_host_is_replaced_and_the_client_carries_on(rt: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t1, t2) = (free_addr(), free_addr());
    let to_t2 = Blackhole::start(t2); // tracker 1's way to tracker 2
    let to_t1 = Blackhole::start(t1); // the client's way to tracker 1
    let info1 = write_info(d, "info-t1.txt", &[t1, to_t2.addr]);
    let info2 = write_info(d, "info-t2.txt", &[t1, t2]);
    let info_c = write_info(d, "info-client.txt", &[to_t1.addr, t2]);
    let mut p1 = tracker(d, &info1, 1, rt);
    let mut p2 = tracker(d, &info2, 2, rt);
    let boot = Duration::from_secs(20);
    p1.expect_within("Connected to peer tracker 2", boot);
    p2.expect_within("Connected to peer tracker 1", boot);
    // Both elect in round 1 at worst; the lower id wins it.
    p2.expect_within("following primary 1", boot);

    let data = d.join("alice-data");
    let first = to_t1.addr.to_string();
    let args = [
        first.as_str(),
        info_c.as_str(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--runtime",
        rt,
    ];
    let mut c = Proc::spawn("alice", env!("CARGO_BIN_EXE_client"), &args, d);
    let step = Duration::from_secs(30);
    c.send("create_user alice pw");
    c.expect_within("user alice created", step);
    c.send("login alice pw");
    c.expect_within("logged in as", step);
    c.send("create_group before");
    c.expect_within("group before created", step);

    // Tracker 1's host goes silent: its process runs on, nothing gets through.
    to_t2.freeze();
    to_t1.freeze();
    let t0 = Instant::now();
    p2.expect_within("became primary", TAKEOVER_MAX);
    let took = t0.elapsed();
    assert!(
        p2.seen.iter().any(|l| l.contains("no word from tracker 1")),
        "tracker 2 took over without giving tracker 1 up: {:?}",
        p2.seen
    );
    c.send("create_group during");
    c.expect_within("group during created", SWITCH_MAX);
    let switched = t0.elapsed();
    assert!(
        c.seen.iter().any(|l| l.contains("switched to")),
        "the client never switched trackers: {:?}",
        c.seen
    );
    c.send("list_groups");
    c.expect_within("during", step);
    assert!(
        !c.seen.iter().any(|l| l.starts_with("error")),
        "a command failed: {:?}",
        c.seen
    );
    eprintln!("takeover after {took:?}, the client's write done after {switched:?}");
}

mod std_runtime {
    #[test]
    fn a_silent_tracker_host_is_replaced_and_the_client_carries_on() {
        super::a_silent_tracker_host_is_replaced_and_the_client_carries_on("std")
    }
}

mod smol_runtime {
    #[test]
    fn a_silent_tracker_host_is_replaced_and_the_client_carries_on() {
        super::a_silent_tracker_host_is_replaced_and_the_client_carries_on("smol")
    }
}
