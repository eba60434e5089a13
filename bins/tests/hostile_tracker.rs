//! Issue 16 end to end against two real `tracker` processes that replicate
//! (tracker 1 on the std runtime, tracker 2 on smol): hostile clients on
//! raw TLS connections from many loopback addresses (127.1.x.y) attack one
//! tracker, and after each attack a normal client is served promptly, the
//! two trackers converge, and the attacked tracker's threads and resident
//! memory (`/proc/<pid>/status`) stay within the bounds below.
//!
//! The attacks: one account exhausting its quotas (files, piece hashes)
//! with made-up metadata; reply amplification (pipelined `get_file` of a
//! 480 KiB metadata reply, never read); an idle flood (hundreds of
//! connections that say hello and go silent, past the per-address cap);
//! slowloris (frames held a few bytes short); a login burst (hundreds of
//! pipelined wrong logins from one address). Each test attacks one
//! tracker: the std primary, or the smol backup (whose writes, logins
//! included, are forwarded to the primary).
//!
//! The trackers run with short deadlines (`--idle-timeout-secs`,
//! `--frame-timeout-secs`) so the cuts are seen within CI time. Every
//! process is killed when the test ends (a Drop guard); every wait has a
//! deadline.

mod common;
use common::{Proc, connect_from, proc_status};

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p_proto::limits::{FILE_PIECES_MAX, PIECE_LEN};
use p2p_proto::{
    ClientId, ClientRequest, FileMeta, FileName, FrameDecoder, FromTracker, GroupName, Hello,
    Outcome, Password, Reply, Request, RequestId, Role, SessionToken, Sha1Hash, TrackerError,
    TrackerStatus, UserName, Wire, encode_msg,
};
use p2p_state::tracker::limits::{FILES_PER_USER_MAX, PIECE_HASHES_PER_USER_MAX};
use p2p_state::tracker::node::{
    CONNS_PER_ADDR_MAX, LOGIN_FAILURES_FREE_PER_USER, PASSWORD_QUEUE_PER_SOURCE_MAX,
    PASSWORD_RUNNING_MAX,
};

/// A normal client's every request (sign up, log in, create a group,
/// share a file) must be answered within this after an attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The longest any other wait may take (start, convergence).
const WAIT: Duration = Duration::from_secs(15);
/// `--idle-timeout-secs`: a silent client connection is closed then.
const IDLE_TIMEOUT_SECS: u64 = 5;
/// `--frame-timeout-secs`: a started frame must be whole by then (well
/// below the idle timeout, so the slowloris check tells the two apart).
const FRAME_TIMEOUT_SECS: u64 = 1;
/// A slowloris connection must be cut this soon after its partial frame
/// (the frame timeout plus scheduling slack; the idle timeout would only
/// cut it later).
const SLOWLORIS_CUT_WITHIN: Duration = Duration::from_secs(3);

/// Reply amplification: connections, and the `get_file` requests each
/// pipelines without reading (about 70 bytes each, asking for a 480 KiB
/// reply: 9.4 GiB of replies per connection if the tracker buffered them).
const AMP_CONNS: usize = 4;
const AMP_REQUESTS: usize = 20_000;
/// Idle flood: connections from one address (past `CONNS_PER_ADDR_MAX`,
/// the rest refused), and from each of `IDLE_SPREAD_ADDRS` more.
const IDLE_ONE_ADDR: usize = CONNS_PER_ADDR_MAX + 8;
const IDLE_SPREAD_ADDRS: usize = 3;
const IDLE_PER_SPREAD_ADDR: usize = 48;
/// Slowloris: addresses, and connections from each.
const SLOW_ADDRS: usize = 4;
const SLOW_PER_ADDR: usize = 12;
/// Login burst: wrong logins pipelined from one address.
const LOGIN_BURST: usize = 300;
/// Of the burst, at most this many may get a password check (`wrong user
/// name or password`): the user name's free failures, then what was
/// queued or running when backoff began, a few times over for the
/// doubling backoff's retries; the rest are refused without argon2
/// (backoff, or the per-address queue cap). Without backoff and the cap,
/// all 300 would be checked.
const LOGIN_CHECKED_MAX: usize = 3
    * (LOGIN_FAILURES_FREE_PER_USER as usize
        + PASSWORD_QUEUE_PER_SOURCE_MAX
        + PASSWORD_RUNNING_MAX);

/// Threads of the attacked tracker at any check. The std runtime runs two
/// threads per open connection (reader, writer) plus one per running
/// handshake and a fixed few (machine, storage, 4 password workers,
/// listener, console, signals, dials); smol runs everything on its
/// executor's few threads. The idle flood holds `CONNS_PER_ADDR_MAX` +
/// `IDLE_SPREAD_ADDRS * IDLE_PER_SPREAD_ADDR` = 208 connections open: 416
/// threads plus the fixed ones and the checks' own connections.
const THREADS_FLOOD_MAX: u64 = 2 * 208 + 96;
/// Threads once every attacker's connection is gone (cut by the idle or
/// frame timeout): the fixed few plus the checks' connections. Without
/// the idle timeout the flood's 400-odd threads would still be there.
const THREADS_QUIET_MAX: u64 = 96;
/// Resident memory of the attacked tracker at any check. A debug build
/// idles at 20-40 MiB; reply amplification may hold, per connection, the
/// 2 MiB `READ_PAUSE_QUEUE_LEN` plus the replies to the 8 frames in hand
/// (`FRAMES_UNHANDLED_MAX`, 480 KiB each) plus read buffers, about 7 MiB,
/// 28 MiB for the 4; the flood's threads and TLS sessions some more.
/// Without backpressure the same attack queues replies until
/// `WRITE_QUEUE_LEN_MAX` (16 MiB) cuts each connection, which the test
/// sees in the tracker's log (and, with the old 256 MiB bound, as
/// hundreds of MiB here).
const RSS_MAX_KIB: u64 = 160 * 1024;

#[test]
fn attacks_on_the_std_primary() {
    attacks(1);
}

#[test]
fn attacks_on_the_smol_backup() {
    attacks(2);
}

// ------------------------------------------------------------ processes

/// Two replicating trackers: 1 on std, 2 on smol.
struct Cluster {
    _dir: tempfile::TempDir,
    addrs: Vec<SocketAddr>,
    procs: Vec<Proc>,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ls: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
        drop(ls);
        let info = dir.path().join("tracker_info.txt");
        let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&info, text).unwrap();
        let idle = IDLE_TIMEOUT_SECS.to_string();
        let frame = FRAME_TIMEOUT_SECS.to_string();
        let mut procs = ["std", "smol"]
            .iter()
            .enumerate()
            .map(|(i, rt)| {
                let n = (i + 1).to_string();
                let data = dir.path().join(format!("data-{n}"));
                let args = [
                    info.to_str().unwrap(),
                    &n,
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--argon2",
                    "test",
                    "--runtime",
                    rt,
                    "--idle-timeout-secs",
                    &idle,
                    "--frame-timeout-secs",
                    &frame,
                ];
                let bin = env!("CARGO_BIN_EXE_tracker");
                Proc::spawn(&format!("tracker {n}"), bin, &args, dir.path())
            })
            .collect::<Vec<_>>();
        procs[1].expect("Connected to peer tracker 1", WAIT.as_secs());
        Cluster {
            _dir: dir,
            addrs,
            procs,
        }
    }
}

// --------------------------------------------------------------- clients

/// The clients' TLS identity (one for the test process: a session token
/// works on any of its connections).
fn test_tls() -> &'static runtime_common::tls::Tls {
    static TLS: std::sync::OnceLock<runtime_common::tls::Tls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        runtime_common::tls::Identity::load_or_create(dir.path())
            .unwrap()
            .tls()
    })
}

/// The i-th attacker address of attack `attack`: 127.1.<attack>.<i + 1>.
fn addr(attack: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, attack, i as u8 + 1)
}

/// A client speaking the protocol by hand.
struct Raw {
    s: runtime_common::tls::ClientStream,
    dec: FrameDecoder,
    buf: BytesMut,
    client: ClientId,
    token: Option<SessionToken>,
    next: u64,
}

impl Raw {
    /// Connects from `src`, TLS and hellos done.
    fn connect(src: Ipv4Addr, to: SocketAddr, client: u8) -> Self {
        let s = connect_from(src, to).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let s = test_tls().connect_blocking(s).expect("TLS handshake").0;
        let mut c = Raw {
            s,
            dec: FrameDecoder::default(),
            buf: BytesMut::new(),
            client: ClientId([client; 16]),
            token: None,
            next: 1,
        };
        c.write(&Hello::new(Role::Client));
        let hello = Hello::from_bytes(c.frame().expect("a hello")).unwrap();
        assert_eq!(hello.role, Role::Server);
        c
    }

    fn write<M: Wire>(&mut self, m: &M) {
        let mut b = BytesMut::new();
        encode_msg(m, &mut b);
        self.s.write_all(&b).unwrap();
    }

    /// The next frame; `None` when the tracker closed the connection.
    fn frame(&mut self) -> Option<bytes::Bytes> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn request(&self, id: u64, req: Request) -> ClientRequest {
        ClientRequest {
            client: self.client,
            id: RequestId(id),
            session: self.token,
            req,
        }
    }

    fn send(&mut self, id: u64, req: Request) {
        let r = self.request(id, req);
        self.write(&r);
    }

    /// The next response (its id and outcome); panics on a `Fatal`.
    fn response(&mut self) -> (u64, Outcome) {
        loop {
            let f = self.frame().expect("closed before the answer");
            match FromTracker::from_bytes(f).unwrap() {
                FromTracker::Response { id, outcome } => return (id.0, outcome),
                FromTracker::Fatal { reason } => panic!("tracker refused us: {reason}"),
                FromTracker::Notice { .. } | FromTracker::Peers { .. } => {}
            }
        }
    }

    /// Sends `req` and waits for its answer.
    fn call(&mut self, req: Request) -> Outcome {
        let id = self.next;
        self.next += 1;
        self.send(id, req);
        loop {
            let (r, outcome) = self.response();
            if r == id {
                if let Ok(Reply::LoggedIn { token, .. }) = &outcome {
                    self.token = Some(*token);
                }
                return outcome;
            }
        }
    }

    /// [`Raw::call`], answered within [`ANSWER_WITHIN`] and not refused.
    fn prompt(&mut self, what: &str, req: Request) -> Reply {
        let t = Instant::now();
        let outcome = self.call(req);
        let took = t.elapsed();
        assert!(
            took <= ANSWER_WITHIN,
            "{what}: answered after {took:?} (at most {ANSWER_WITHIN:?})"
        );
        outcome.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    fn sign_up(&mut self, user: &str) {
        let create = Request::CreateUser {
            user: u(user),
            password: pw("pw"),
        };
        assert_eq!(self.prompt("create_user", create), Reply::Done);
        let login = Request::Login {
            user: u(user),
            password: pw("pw"),
        };
        assert!(matches!(
            self.prompt("login", login),
            Reply::LoggedIn { .. }
        ));
    }

    fn status(&mut self) -> TrackerStatus {
        match self.call(Request::Status) {
            Ok(Reply::Status(s)) => s,
            o => panic!("status: {o:?}"),
        }
    }
}

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}
fn g(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}
fn pw(s: &str) -> Password {
    Password::new(s).unwrap()
}

/// Made-up metadata for a file of `pieces` full pieces (nothing behind it).
fn fake_meta(name: &str, pieces: u32, salt: u32) -> FileMeta {
    let piece_hashes: Vec<Sha1Hash> = (0..pieces)
        .map(|i| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            h[4..8].copy_from_slice(&salt.to_be_bytes());
            Sha1Hash(h)
        })
        .collect();
    let mut meta = FileMeta {
        name: FileName::new(name).unwrap(),
        size: pieces as u64 * PIECE_LEN as u64,
        piece_len: PIECE_LEN,
        piece_hashes,
        file_hash: Sha1Hash([0; 20]),
    };
    meta.file_hash = p2p_state::hash::meta_root(&meta);
    meta
}

/// Reads (and drops) what `c` is sent until the tracker closes it;
/// panics if that is not by `deadline`.
fn wait_closed(c: &mut Raw, deadline: Instant, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: not closed in time");
        c.s.get_ref().set_read_timeout(Some(left)).unwrap();
        match c.s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
            {
                return;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

// ---------------------------------------------------------------- checks

/// What every attack is followed by.
struct Target<'a> {
    cluster: &'a mut Cluster,
    /// The attacked tracker, counted from 1.
    n: usize,
    /// Normal users signed up so far (a fresh one per check).
    checks: u8,
}

impl Target<'_> {
    fn addr(&self) -> SocketAddr {
        self.cluster.addrs[self.n - 1]
    }

    fn pid(&self) -> u32 {
        self.cluster.procs[self.n - 1].child.id()
    }

    /// A normal client is served promptly, both trackers converge, and
    /// the attacked one's threads and memory are within `threads_max` and
    /// [`RSS_MAX_KIB`].
    fn check(&mut self, after: &str, threads_max: u64) {
        self.checks += 1;
        let k = self.checks;
        let mut c = Raw::connect(Ipv4Addr::LOCALHOST, self.addr(), 100 + k);
        c.sign_up(&format!("normal{k}"));
        let group = g(&format!("normal{k}"));
        let create = Request::CreateGroup {
            group: group.clone(),
        };
        assert_eq!(c.prompt(after, create), Reply::Done, "after {after}");
        let share = Request::UploadFile {
            group,
            meta: fake_meta("report.pdf", 2, 1000 + k as u32),
        };
        let shared = c.prompt(after, share);
        assert_eq!(shared, Reply::Shared { new_file: true }, "after {after}");
        self.converged(after);
        self.within_bounds(after, threads_max);
    }

    /// Both trackers in sync with the same digest and applied index.
    fn converged(&self, after: &str) {
        let mut a = Raw::connect(Ipv4Addr::LOCALHOST, self.cluster.addrs[0], 201);
        let mut b = Raw::connect(Ipv4Addr::LOCALHOST, self.cluster.addrs[1], 202);
        let start = Instant::now();
        loop {
            let (sa, sb) = (a.status(), b.status());
            if sa.in_sync && sb.in_sync && sa.digest == sb.digest && sa.applied == sb.applied {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "after {after}: the trackers never converged: {sa:?} vs {sb:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn within_bounds(&self, after: &str, threads_max: u64) {
        let threads = proc_status(self.pid(), "Threads");
        let rss = proc_status(self.pid(), "VmRSS");
        eprintln!(
            "after {after}: tracker {} has {threads} threads, {rss} KiB",
            self.n
        );
        assert!(
            threads <= threads_max,
            "after {after}: {threads} threads (at most {threads_max})"
        );
        assert!(
            rss <= RSS_MAX_KIB,
            "after {after}: VmRSS {rss} KiB (at most {RSS_MAX_KIB})"
        );
    }

    /// The attacked tracker's resident memory, its peak over `span`.
    fn rss_peak(&self, span: Duration) -> u64 {
        let start = Instant::now();
        let mut peak = 0;
        while start.elapsed() < span {
            peak = peak.max(proc_status(self.pid(), "VmRSS"));
            thread::sleep(Duration::from_millis(25));
        }
        peak
    }
}

// --------------------------------------------------------------- attacks

fn attacks(n: usize) {
    let mut cluster = Cluster::start();
    let mut t = Target {
        cluster: &mut cluster,
        n,
        checks: 0,
    };
    t.converged("start");
    t.check("start", THREADS_QUIET_MAX);
    let mallory = quota_exhaustion(&mut t);
    reply_amplification(&mut t, mallory);
    idle_flood(&mut t);
    slowloris(&mut t);
    login_burst(&mut t);
}

/// One account shares made-up files until its per-user quotas refuse it:
/// piece hashes (two files of the most pieces a file may have, then a
/// third refused) and files (pipelined until refused). Another user still
/// shares (the check). Returns mallory's session, logged in.
fn quota_exhaustion(t: &mut Target) -> Raw {
    let mut m = Raw::connect(addr(1, 0), t.addr(), 1);
    m.sign_up("mallory");
    assert_eq!(
        m.call(Request::CreateGroup { group: g("amp") }),
        Ok(Reply::Done)
    );
    let big = |i: u32| Request::UploadFile {
        group: g("amp"),
        meta: fake_meta(&format!("big{i}.iso"), FILE_PIECES_MAX, i),
    };
    let per_file = FILE_PIECES_MAX as u64;
    let fit = (PIECE_HASHES_PER_USER_MAX / per_file) as u32;
    for i in 0..fit {
        assert_eq!(m.call(big(i)), Ok(Reply::Shared { new_file: true }));
    }
    match m.call(big(fit)) {
        Err(TrackerError::LimitReached { what }) => assert!(
            what.to_string().contains("PIECE_HASHES_PER_USER_MAX"),
            "{what}"
        ),
        other => panic!("past the piece-hash quota: {other:?}"),
    }
    // Small files, pipelined, up to the files quota and one past it.
    let first = m.next;
    let small = FILES_PER_USER_MAX - fit as usize;
    for i in 0..=small {
        let meta = fake_meta(&format!("f{i}"), 1, 10_000 + i as u32);
        m.send(
            first + i as u64,
            Request::UploadFile {
                group: g("amp"),
                meta,
            },
        );
    }
    m.next = first + small as u64 + 1;
    let mut refused = Vec::new();
    for _ in 0..=small {
        let (id, outcome) = m.response();
        match outcome {
            Ok(Reply::Shared { new_file: true }) => {}
            Err(TrackerError::LimitReached { what }) => refused.push((id, what.to_string())),
            other => panic!("a small upload: {other:?}"),
        }
    }
    assert_eq!(
        refused.len(),
        1,
        "one upload past the files quota: {refused:?}"
    );
    assert!(refused[0].1.contains("FILES_PER_USER_MAX"), "{refused:?}");
    t.check("quota exhaustion", THREADS_QUIET_MAX);
    m
}

/// `AMP_CONNS` connections of mallory's session each pipeline
/// `AMP_REQUESTS` `get_file` of a 480 KiB metadata and read nothing; the
/// tracker stops reading them (backpressure), so its memory stays flat.
fn reply_amplification(t: &mut Target, mallory: Raw) {
    let token = mallory.token;
    let addr = t.addr();
    let writers: Vec<_> = (0..AMP_CONNS)
        .map(|i| {
            thread::spawn(move || {
                let mut c = Raw::connect(self::addr(2, i), addr, 10 + i as u8);
                c.token = token;
                let mut batch = BytesMut::new();
                for id in 0..AMP_REQUESTS as u64 {
                    let req = c.request(
                        id + 1,
                        Request::GetFile {
                            group: g("amp"),
                            file: FileName::new("big0.iso").unwrap(),
                        },
                    );
                    encode_msg(&req, &mut batch);
                }
                // The tracker stops reading: the write blocks once the
                // socket buffers are full; stop pushing then.
                c.s.get_ref()
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let _ = c.s.write_all(&batch);
                c
            })
        })
        .collect();
    let conns: Vec<Raw> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let peak = t.rss_peak(Duration::from_secs(1));
    eprintln!("reply amplification: VmRSS peak {peak} KiB");
    assert!(
        peak <= RSS_MAX_KIB,
        "reply amplification: VmRSS reached {peak} KiB (at most {RSS_MAX_KIB})"
    );
    t.check(
        "reply amplification",
        THREADS_QUIET_MAX + 2 * AMP_CONNS as u64,
    );
    // Paused, not cut: their queues never reached WRITE_QUEUE_LEN_MAX
    // (without backpressure each would pass it within milliseconds).
    let log = t.cluster.procs[t.n - 1].lines_so_far();
    assert!(
        !log.contains("send queue full"),
        "reply amplification filled a write queue:\n{log}"
    );
    drop(conns);
    drop(mallory);
}

/// Connections that say hello (and one ping, to learn they were taken)
/// and go silent: `IDLE_ONE_ADDR` from one address, past its cap (those
/// refused, naming the cap), and `IDLE_PER_SPREAD_ADDR` from each of
/// `IDLE_SPREAD_ADDRS` others. The peer link is unaffected, and all are
/// closed at the idle timeout.
fn idle_flood(t: &mut Target) {
    let to = t.addr();
    let open = |src: Ipv4Addr, n: usize, client: u8| {
        thread::spawn(move || {
            let mut kept = Vec::new();
            let mut refused = Vec::new();
            for _ in 0..n {
                let mut c = Raw::connect(src, to, client);
                // A refused connection may be closed (even reset, losing
                // its refusal) by the time the ping arrives.
                let mut ping = BytesMut::new();
                encode_msg(&c.request(1, Request::Ping), &mut ping);
                let _ = c.s.write_all(&ping);
                match c.frame().map(|f| FromTracker::from_bytes(f).unwrap()) {
                    Some(FromTracker::Response { .. }) => kept.push(c),
                    Some(FromTracker::Fatal { reason }) => refused.push(reason.to_string()),
                    None => refused.push(String::new()),
                    other => panic!("idle flood: {other:?}"),
                }
            }
            (kept, refused)
        })
    };
    let mut handles = vec![open(addr(3, 0), IDLE_ONE_ADDR, 30)];
    for i in 0..IDLE_SPREAD_ADDRS {
        handles.push(open(addr(3, i + 1), IDLE_PER_SPREAD_ADDR, 31 + i as u8));
    }
    let mut results: Vec<(Vec<Raw>, Vec<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (one_kept, one_refused) = &results[0];
    assert_eq!(one_kept.len(), CONNS_PER_ADDR_MAX, "taken from one address");
    assert_eq!(one_refused.len(), IDLE_ONE_ADDR - CONNS_PER_ADDR_MAX);
    let cap = format!(
        "too many connections from {} (at most {CONNS_PER_ADDR_MAX})",
        addr(3, 0)
    );
    assert!(
        one_refused.iter().any(|r| r.contains(&cap))
            && one_refused.iter().all(|r| r.is_empty() || r.contains(&cap)),
        "refusals should name the cap: {one_refused:?}"
    );
    for (kept, refused) in &results[1..] {
        assert_eq!((kept.len(), refused.len()), (IDLE_PER_SPREAD_ADDR, 0));
    }
    t.check("idle flood", THREADS_FLOOD_MAX);
    // The idle timeout closes every one of them.
    let deadline = Instant::now() + Duration::from_secs(IDLE_TIMEOUT_SECS) + WAIT;
    for (kept, _) in &mut results {
        for c in kept.iter_mut() {
            wait_closed(c, deadline, "an idle connection, at the idle timeout");
        }
    }
    drop(results);
    t.check("idle flood closed", THREADS_QUIET_MAX);
}

/// Connections that send a frame 8 bytes short of whole and stall: each
/// is cut at the frame timeout, long before the idle timeout.
fn slowloris(t: &mut Target) {
    let mut conns = Vec::new();
    for a in 0..SLOW_ADDRS {
        for _ in 0..SLOW_PER_ADDR {
            let mut c = Raw::connect(addr(4, a), t.addr(), 40);
            let mut frame = BytesMut::new();
            let req = c.request(1, Request::CreateGroup { group: g("slow") });
            encode_msg(&req, &mut frame);
            let short = frame.len() - 8;
            c.s.write_all(&frame[..short]).unwrap();
            c.s.flush().unwrap();
            conns.push((c, Instant::now()));
        }
    }
    t.check("slowloris", THREADS_QUIET_MAX + 2 * conns.len() as u64);
    for (c, sent) in &mut conns {
        wait_closed(
            c,
            *sent + SLOWLORIS_CUT_WITHIN,
            "a frame held 8 bytes short",
        );
    }
    drop(conns);
    t.check("slowloris cut", THREADS_QUIET_MAX);
}

/// One address pipelines `LOGIN_BURST` wrong logins; another address's
/// user logs in promptly meanwhile, and most of the burst is refused
/// without a password check.
fn login_burst(t: &mut Target) {
    Raw::connect(Ipv4Addr::LOCALHOST, t.addr(), 50).sign_up("bob");
    let mut m = Raw::connect(addr(5, 0), t.addr(), 51);
    let mut batch = BytesMut::new();
    for id in 1..=LOGIN_BURST as u64 {
        let req = m.request(
            id,
            Request::Login {
                user: u("bob"),
                password: pw("guess"),
            },
        );
        encode_msg(&req, &mut batch);
    }
    m.s.write_all(&batch).unwrap();
    let mut b = Raw::connect(addr(5, 1), t.addr(), 52);
    b.sign_up("carol");
    let mut checked = 0;
    for _ in 0..LOGIN_BURST {
        match m.response().1 {
            Err(TrackerError::WrongUserOrPassword) => checked += 1,
            Err(TrackerError::LoginBackoff { .. } | TrackerError::LimitReached { .. }) => {}
            other => panic!("a wrong login: {other:?}"),
        }
    }
    eprintln!("login burst: {checked} of {LOGIN_BURST} got a password check");
    assert!(
        checked <= LOGIN_CHECKED_MAX,
        "{checked} of {LOGIN_BURST} wrong logins were checked (at most {LOGIN_CHECKED_MAX})"
    );
    drop(m);
    t.check("login burst", THREADS_QUIET_MAX);
}
