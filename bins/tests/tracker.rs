//! The `tracker` binary end to end: real processes on 127.0.0.1 (free ports
//! found by binding port 0), a raw TLS client speaking the protocol, kill -9
//! and restart with the same data directory, bad bytes, and the console.
//! Every process is killed by a Drop guard; every wait is bounded.
//!
//! Every test body takes the runtime (`--runtime std|smol`) of each
//! tracker; each runs with all trackers on std (module `std_runtime`) and
//! all on smol (`smol_runtime`), and `mixed` pairs a std tracker with a
//! smol one, including a restart on the other runtime from the same data
//! directory.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p_proto::{
    ClientId, ClientRequest, FrameDecoder, FromTracker, GroupName, Hello, Outcome, Password, Reply,
    Request, RequestId, Role, SessionToken, TrackerError, TrackerStatus, UserName, Wire,
    encode_msg,
};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

/// The raw clients' TLS identity (one for the whole test process, so a
/// client moved to another tracker keeps its key).
fn test_tls() -> &'static runtime_common::tls::Tls {
    static TLS: std::sync::OnceLock<runtime_common::tls::Tls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        runtime_common::tls::Identity::load_or_create(dir.path())
            .unwrap()
            .tls()
    })
}

type TlsStream = runtime_common::tls::ClientStream;

/// Connects (retrying while the tracker starts) and runs the TLS handshake.
fn connect_tls(addr: SocketAddr) -> TlsStream {
    let s = connect_retrying(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    test_tls().connect_blocking(s).expect("TLS handshake").0
}

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A running tracker process; killed (kill -9) when dropped.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
}

impl Proc {
    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no stdout line {what} in {WAIT:?}; stdout {:?}; stderr:\n{}",
            self.lines(),
            self.stderr_text()
        );
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_stderr(&self, what: &str) {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if self.stderr_text().contains(what) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("stderr never said {what:?}:\n{}", self.stderr_text());
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "tracker still running after {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A driver, as the binaries' `--runtime` names it.
#[derive(Clone, Copy, Debug)]
enum Rt {
    Std,
    Smol,
}

impl Rt {
    fn arg(self) -> &'static str {
        match self {
            Rt::Std => "std",
            Rt::Smol => "smol",
        }
    }
}

/// Generates `std_runtime::name` and `smol_runtime::name` for each body,
/// which takes the runtime every tracker runs.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod std_runtime {
            $(#[test]
            fn $name() {
                super::$name(super::Rt::Std)
            })*
        }
        mod smol_runtime {
            $(#[test]
            fn $name() {
                super::$name(super::Rt::Smol)
            })*
        }
    };
}

on_both_runtimes!(
    two_trackers_connect_and_print_the_seed_line,
    a_write_on_one_tracker_is_listed_on_the_other,
    failover_after_kill_9_then_restart_recovers_and_catches_up,
    garbage_and_a_4gib_length_prefix_close_only_that_connection,
    end_of_stdin_does_not_stop_it_but_quit_does,
    sigterm_shuts_down_cleanly,
    bad_command_lines_are_clear_errors,
);

/// A temp dir with a tracker_info.txt of one free address per tracker,
/// and the runtime each tracker runs.
struct Cluster {
    dir: tempfile::TempDir,
    info: PathBuf,
    addrs: Vec<SocketAddr>,
    rts: Vec<Rt>,
}

impl Cluster {
    /// `n` trackers, all on `rt`.
    fn new(n: usize, rt: Rt) -> Self {
        Self::mixed(&vec![rt; n])
    }

    /// Tracker `i + 1` runs on `rts[i]`.
    fn mixed(rts: &[Rt]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addrs = free_addrs(rts.len());
        let info = dir.path().join("tracker_info.txt");
        let text: String = std::iter::once("# test trackers\n".to_string())
            .chain(addrs.iter().map(|a| format!("{a}\n")))
            .collect();
        std::fs::write(&info, text).unwrap();
        Cluster {
            dir,
            info,
            addrs,
            rts: rts.to_vec(),
        }
    }

    fn data_dir(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("data-{n}"))
    }

    /// Starts tracker `n` on its runtime; `stdin`: piped (else </dev/null).
    fn start(&self, n: usize, stdin: bool) -> Proc {
        self.start_on(n, stdin, self.rts[n - 1])
    }

    /// Starts tracker `n` on `rt`.
    fn start_on(&self, n: usize, stdin: bool, rt: Rt) -> Proc {
        let stderr = self.dir.path().join(format!("stderr-{n}-{}.txt", nanos()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracker"))
            .arg(&self.info)
            .arg(n.to_string())
            .arg("--data-dir")
            .arg(self.data_dir(n))
            .args(["--argon2", "test", "--log-level", "debug"])
            .args(["--runtime", rt.arg()])
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A client speaking the protocol by hand: hello, then requests.
struct RawClient {
    stream: TlsStream,
    dec: FrameDecoder,
    buf: BytesMut,
    client: ClientId,
    token: Option<SessionToken>,
    next: u64,
}

impl RawClient {
    fn connect(addr: SocketAddr, client: u8) -> Self {
        let stream = connect_tls(addr);
        let mut c = RawClient {
            stream,
            dec: FrameDecoder::default(),
            buf: BytesMut::new(),
            client: ClientId([client; 16]),
            token: None,
            next: 1,
        };
        c.write_msg(&Hello::new(Role::Client));
        let hello = Hello::from_bytes(c.read_frame().expect("a hello")).unwrap();
        assert_eq!(hello.role, Role::Server);
        c
    }

    /// The same client (id, session, request numbers) on another tracker.
    fn move_to(&mut self, addr: SocketAddr) {
        let mut other = RawClient::connect(addr, self.client.0[0]);
        other.token = self.token;
        other.next = self.next;
        *self = other;
    }

    fn write_msg<M: Wire>(&mut self, m: &M) {
        let mut b = BytesMut::new();
        encode_msg(m, &mut b);
        self.stream.write_all(&b).unwrap();
    }

    fn read_frame(&mut self) -> Option<bytes::Bytes> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn send(&mut self, id: u64, req: Request) {
        let r = ClientRequest {
            client: self.client,
            id: RequestId(id),
            session: self.token,
            req,
        };
        self.write_msg(&r);
    }

    fn answer(&mut self, id: u64) -> Outcome {
        loop {
            let f = self
                .read_frame()
                .expect("connection closed before the answer");
            match FromTracker::from_bytes(f).unwrap() {
                FromTracker::Response { id: r, outcome } if r.0 == id => return outcome,
                FromTracker::Fatal { reason } => panic!("tracker refused us: {reason}"),
                _ => {}
            }
        }
    }

    /// Sends `req`, retrying with the same id while the tracker is not ready.
    fn call(&mut self, req: Request) -> Outcome {
        let id = self.next;
        self.next += 1;
        let start = Instant::now();
        loop {
            self.send(id, req.clone());
            let o = self.answer(id);
            if o == Err(TrackerError::NotReady) && start.elapsed() < WAIT {
                thread::sleep(Duration::from_millis(100));
                continue;
            }
            if let Ok(Reply::LoggedIn { token, .. }) = &o {
                self.token = Some(*token);
            }
            return o;
        }
    }

    fn status(&mut self) -> TrackerStatus {
        match self.call(Request::Status) {
            Ok(Reply::Status(s)) => s,
            o => panic!("status: {o:?}"),
        }
    }
}

fn connect_retrying(addr: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => return s,
            Err(e) if start.elapsed() > WAIT => panic!("connect {addr}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(50)),
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

fn signup(c: &mut RawClient, user: &str) {
    let r = c.call(Request::CreateUser {
        user: u(user),
        password: pw("pw"),
    });
    assert_eq!(r, Ok(Reply::Done));
    let r = c.call(Request::Login {
        user: u(user),
        password: pw("pw"),
    });
    assert!(matches!(r, Ok(Reply::LoggedIn { .. })), "{r:?}");
}

fn group_names(c: &mut RawClient) -> Vec<String> {
    match c.call(Request::ListGroups) {
        Ok(Reply::Groups(gs)) => gs.iter().map(|g| g.name.to_string()).collect(),
        o => panic!("list_groups: {o:?}"),
    }
}

/// Polls both trackers' status until `b` is in sync with `a`'s digest.
fn wait_converged(a: &mut RawClient, b: &mut RawClient) -> (TrackerStatus, TrackerStatus) {
    let start = Instant::now();
    loop {
        let (sa, sb) = (a.status(), b.status());
        if sa.in_sync && sb.in_sync && sa.digest == sb.digest && sa.applied == sb.applied {
            return (sa, sb);
        }
        assert!(start.elapsed() < WAIT, "never converged: {sa:?} vs {sb:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn seed_line(p: &Proc, peer: usize) {
    let want = format!("Connected to peer tracker {peer}");
    p.wait_line(&want, |l| l == want);
}

fn wait_closed(s: &mut impl Read) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // a hello or an error frame, then the close
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
            {
                return;
            }
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

// ---------------------------------------------------------------- tests

fn two_trackers_connect_and_print_the_seed_line(rt: Rt) {
    let c = Cluster::new(2, rt);
    let t1 = c.start(1, false);
    let t2 = c.start(2, false);
    seed_line(&t1, 2);
    seed_line(&t2, 1);
}

fn a_write_on_one_tracker_is_listed_on_the_other(rt: Rt) {
    write_listed_on_the_other(Cluster::new(2, rt));
}

fn write_listed_on_the_other(c: Cluster) {
    let t1 = c.start(1, false);
    let t2 = c.start(2, false);
    seed_line(&t1, 2);
    let mut a = RawClient::connect(c.addrs[0], 1);
    signup(&mut a, "alice");
    assert_eq!(
        a.call(Request::CreateGroup { group: g("g1") }),
        Ok(Reply::Done)
    );
    // bob signs up on tracker 2 (writes forwarded to the primary).
    let mut b = RawClient::connect(c.addrs[1], 2);
    signup(&mut b, "bob");
    wait_converged(&mut a, &mut b);
    assert_eq!(group_names(&mut b), ["g1"]);
    drop((t1, t2));
}

fn failover_after_kill_9_then_restart_recovers_and_catches_up(rt: Rt) {
    failover_then_restart(Cluster::new(2, rt), rt);
}

/// Tracker 1 is killed, then restarted on `restart` from its data dir.
fn failover_then_restart(c: Cluster, restart: Rt) {
    let t1 = c.start(1, false);
    let t2 = c.start(2, false);
    seed_line(&t2, 1);
    let mut a = RawClient::connect(c.addrs[0], 1);
    signup(&mut a, "alice");
    assert_eq!(
        a.call(Request::CreateGroup { group: g("before") }),
        Ok(Reply::Done)
    );
    let mut watch = RawClient::connect(c.addrs[1], 9);
    wait_converged(&mut a, &mut watch);

    // kill -9 tracker 1; the client moves to tracker 2 with its session.
    t1.kill9();
    a.move_to(c.addrs[1]);
    assert_eq!(
        a.call(Request::Resume),
        Ok(Reply::Resumed { user: u("alice") })
    );
    assert_eq!(
        a.call(Request::CreateGroup { group: g("after") }),
        Ok(Reply::Done)
    );
    assert_eq!(group_names(&mut a), ["after", "before"]);

    // Restart tracker 1 on the same data dir: it recovers and catches up.
    let t1 = c.start_on(1, false, restart);
    t1.wait_stderr("log entries");
    assert!(
        !t1.stderr_text().contains("0 log entries"),
        "tracker 1 recovered nothing:\n{}",
        t1.stderr_text()
    );
    seed_line(&t1, 2);
    let mut on1 = RawClient::connect(c.addrs[0], 3);
    let (s1, s2) = wait_converged(&mut on1, &mut watch);
    assert_eq!(s1.digest, s2.digest);
    on1.token = a.token;
    on1.client = a.client;
    on1.next = a.next;
    assert_eq!(group_names(&mut on1), ["after", "before"]);
    drop(t2);
}

fn garbage_and_a_4gib_length_prefix_close_only_that_connection(rt: Rt) {
    let c = Cluster::new(1, rt);
    let t = c.start(1, false);
    let mut good = RawClient::connect(c.addrs[0], 1);
    signup(&mut good, "carol");

    // After a hello: a frame that is not a request.
    let mut bad = RawClient::connect(c.addrs[0], 2);
    bad.stream
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .unwrap();
    let f = bad.read_frame().expect("an error frame");
    assert!(matches!(
        FromTracker::from_bytes(f).unwrap(),
        FromTracker::Fatal { .. }
    ));
    wait_closed(&mut bad.stream);

    // Without a hello, inside TLS: a 4 GiB length prefix.
    let mut huge = connect_tls(c.addrs[0]);
    let huge_addr = huge.sock.local_addr().unwrap();
    huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    wait_closed(&mut huge);
    t.wait_stderr(&format!("rejected input from {huge_addr}"));
    t.wait_stderr("exceeds the limit");
    // Plain text (no TLS at all): cut in the handshake.
    let mut text = connect_retrying(c.addrs[0]);
    text.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    text.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_closed(&mut text);

    // The good client was never disturbed.
    assert_eq!(
        good.call(Request::CreateGroup { group: g("still") }),
        Ok(Reply::Done)
    );
    assert_eq!(group_names(&mut good), ["still"]);
}

fn end_of_stdin_does_not_stop_it_but_quit_does(rt: Rt) {
    let c = Cluster::new(1, rt);
    let mut detached = c.start(1, false);
    let mut cl = RawClient::connect(c.addrs[0], 1);
    assert_eq!(cl.call(Request::Ping), Ok(Reply::Pong));
    thread::sleep(Duration::from_millis(300));
    assert!(detached.running(), "stdin at EOF stopped the tracker");
    drop(cl);
    detached.kill9();

    // The same data dir, now with a console.
    let mut t = c.start(1, true);
    let mut cl = RawClient::connect(c.addrs[0], 1);
    assert_eq!(cl.call(Request::Ping), Ok(Reply::Pong));
    t.say("status");
    t.wait_line("status", |l| l.starts_with("state digest"));
    t.say("bogus");
    t.wait_stderr("error: unknown command \"bogus\"");
    assert!(t.running());
    t.say("quit");
    let status = t.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "quit exit status {status:?}");
    t.wait_stderr("storage flushed");
}

fn sigterm_shuts_down_cleanly(rt: Rt) {
    let c = Cluster::new(1, rt);
    let mut t = c.start(1, false);
    let mut cl = RawClient::connect(c.addrs[0], 1);
    assert_eq!(cl.call(Request::Ping), Ok(Reply::Pong));
    let ok = Command::new("kill")
        .args(["-TERM", &t.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = t.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM exit status {status:?}");
    t.wait_stderr("storage flushed");
}

fn bad_command_lines_are_clear_errors(rt: Rt) {
    let c = Cluster::new(2, rt);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tracker"))
            .args(args)
            .args(["--runtime", rt.arg()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let info = c.info.to_str().unwrap();
    let (code, err) = run(&[info, "3"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("tracker number 3 is out of range"), "{err}");
    let bad = c.dir.path().join("bad.txt");
    std::fs::write(&bad, "127.0.0.1:1\nnot-an-address\n").unwrap();
    let (code, err) = run(&[bad.to_str().unwrap(), "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 2"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args([info, "1", "--runtime", "tokio"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("invalid value 'tokio'"), "{err}");
    assert!(!Path::new(&c.data_dir(1)).exists());
}

/// `--fingerprint` makes the key (0600) and prints its fingerprint; the
/// tracker prints the same at start; tracker_info.txt lines carry
/// fingerprints (a bad one is an error naming its line); a pin in
/// known_trackers that disagrees with tracker_info.txt stops the start
/// with an error naming both files.
#[test]
fn fingerprints_are_printed_and_conflicting_pins_refused() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::new(2, Rt::Std);
    let run = |info: &Path, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tracker"))
            .arg(info)
            .arg("1")
            .arg("--data-dir")
            .arg(c.data_dir(1))
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, fp, err) = run(&c.info, &["--fingerprint"]);
    assert_eq!(code, Some(0), "{err}");
    let fp = fp.trim().to_string();
    assert!(
        fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fp:?}"
    );
    let key = c.data_dir(1).join("identity.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        run(&c.info, &["--fingerprint"]).1.trim(),
        fp,
        "the same key"
    );

    // Started, it says which key it is.
    let t = c.start(1, false);
    t.wait_line("fingerprint line", |l| l == format!("fingerprint: {fp}"));
    drop(t);

    // Tracker 2 pinned to one key in tracker_info.txt, another in known_trackers.
    let (a, b) = ("ab".repeat(32), "cd".repeat(32));
    let info = c.dir.path().join("pinned.txt");
    std::fs::write(&info, format!("{}\n{} {a}\n", c.addrs[0], c.addrs[1])).unwrap();
    std::fs::write(
        c.data_dir(1).join("known_trackers"),
        format!("{} {b}\n", c.addrs[1]),
    )
    .unwrap();
    let (code, _, err) = run(&info, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(
        err.contains("known_trackers") && err.contains("line 2 of"),
        "{err}"
    );

    // A fingerprint that is not one.
    std::fs::write(&info, format!("{}\n{} 12ab\n", c.addrs[0], c.addrs[1])).unwrap();
    let (code, _, err) = run(&info, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 2: \"12ab\" is not a key fingerprint"),
        "{err}"
    );

    // A key file others can read is refused, with the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&c.info, &["--fingerprint"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
}

mod mixed {
    use super::{Cluster, Rt, failover_then_restart, write_listed_on_the_other};

    #[test]
    fn a_std_and_a_smol_tracker_replicate() {
        write_listed_on_the_other(Cluster::mixed(&[Rt::Std, Rt::Smol]));
    }

    /// A smol tracker killed -9 comes back on std from the same data dir.
    #[test]
    fn a_smol_tracker_restarts_on_std_from_its_data_dir() {
        failover_then_restart(Cluster::mixed(&[Rt::Smol, Rt::Std]), Rt::Std);
    }
}
