//! Issue 15 end to end, with the real binaries on 127.0.0.1: every channel
//! is TLS from its first byte, so a recording of all the traffic of a
//! walkthrough (tracker↔tracker, client↔tracker, peer↔peer) holds no
//! password, no plaintext frame and no byte of the shared file.
//!
//! The recording is `tcpdump` on the loopback interface, filtered to the
//! ports of this test's processes (`.ci/run` installs tcpdump; it needs the
//! capture capability, which root has). Each direction of each TCP
//! connection is reassembled from the capture and must parse, whole, as a
//! sequence of TLS records that starts with a handshake record.
//!
//! Every process is killed when the test ends (a Drop guard); every wait
//! has a deadline.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[macro_use]
mod common;
use common::{Mix, Proc, Rt, Swarm, free_port, random_file};

use bytes::BytesMut;
use p2p_proto::{
    ClientId, ClientRequest, FileName, FrameDecoder, FromTracker, GroupName, Hello, Outcome,
    Password, PeerMsg, Reply, Request, RequestId, Role, SessionToken, UserName, Wire, encode_msg,
};
use runtime_common::tls::{Identity, Tls};

const TRACKER: &str = env!("CARGO_BIN_EXE_tracker");

on_both_runtimes!(
    a_recording_of_all_loopback_traffic_holds_no_secret,
    an_impostor_tracker_is_refused_and_changes_nothing,
    a_client_with_a_wrong_pin_refuses_the_tracker,
    a_session_replayed_from_another_key_is_refused,
    a_ticket_replayed_from_another_key_is_refused,
);

/// A `tcpdump` writing the traffic of some ports on `lo` to a file.
struct Capture {
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Capture {
    /// Starts the capture and waits (10 s at most) until tcpdump listens.
    fn start(ports: &[u16]) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lo.pcap");
        let filter = ports
            .iter()
            .map(|p| format!("port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-n",
                "-s",
                "0",
                "-U",
                "--immediate-mode",
                "-B",
                "65536",
                "-w",
            ])
            .arg(&file)
            .arg(format!("tcp and ({filter})"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump on PATH (.ci/run installs it)");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("tcpdump did not start listening: {seen:?}"),
            }
        }
        Capture {
            child,
            file,
            _dir: dir,
        }
    }

    /// Stops the capture and returns the pcap bytes. tcpdump drops what the
    /// kernel still buffers when it is interrupted, so first the file must
    /// stop growing (for 300 ms; 10 s at most).
    fn stop(mut self) -> Vec<u8> {
        let size = |f: &PathBuf| std::fs::metadata(f).map_or(0, |m| m.len());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = (size(&self.file), Instant::now());
        while Instant::now() < deadline && last.1.elapsed() < Duration::from_millis(300) {
            std::thread::sleep(Duration::from_millis(50));
            let now = size(&self.file);
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
        std::fs::read(&self.file).expect("the capture file")
    }
}

/// One direction of one TCP connection: (source port, destination port).
type Flow = (u16, u16);

/// Each direction's payload bytes in sequence order, from a pcap file of
/// Ethernet frames (how Linux records `lo`). Panics on a gap: a capture
/// that lost bytes proves nothing.
fn flows(pcap: &[u8]) -> BTreeMap<Flow, Vec<u8>> {
    assert!(pcap.len() >= 24, "no pcap header");
    let le = match pcap[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(u32_at(pcap, 20), 1, "link type is not Ethernet");
    let mut segments: BTreeMap<Flow, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32_at(pcap, at + 8) as usize;
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue; // not IPv4
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        // A BIG TCP packet (over 64 KiB, as `lo` sends them) says 0.
        let total = match usize::from(u16::from_be_bytes([ip[2], ip[3]])) {
            0 => ip.len(),
            n => n,
        };
        if ip[9] != 6 || total > ip.len() || ihl + 20 > total {
            continue; // not TCP, or cut short
        }
        let tcp = &ip[ihl..total];
        let src = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dst = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let off = usize::from(tcp[12] >> 4) * 4;
        if off < tcp.len() {
            segments
                .entry((src, dst))
                .or_default()
                .push((seq, tcp[off..].to_vec()));
        }
    }
    segments
        .into_iter()
        .map(|(flow, mut segs)| {
            let base = segs[0].0;
            segs.sort_by_key(|(seq, _)| seq.wrapping_sub(base));
            let mut bytes = Vec::new();
            for (seq, data) in segs {
                let rel = seq.wrapping_sub(base) as usize;
                assert!(rel <= bytes.len(), "{flow:?}: the capture lost bytes");
                let skip = bytes.len() - rel; // a retransmission overlaps
                if skip < data.len() {
                    bytes.extend_from_slice(&data[skip..]);
                }
            }
            (flow, bytes)
        })
        .collect()
}

/// Checks that `bytes` is a whole sequence of TLS records starting with a
/// handshake record; returns how many records.
fn tls_records(flow: Flow, bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let h = &bytes[at..];
        assert!(h.len() >= 5, "{flow:?}: a cut record header at {at}");
        let (kind, len) = (h[0], usize::from(u16::from_be_bytes([h[3], h[4]])));
        assert!(
            (20..=23).contains(&kind) && h[1] == 3 && (1..=3).contains(&h[2]),
            "{flow:?}: bytes at {at} are not a TLS record: {:02x?}",
            &h[..h.len().min(16)]
        );
        assert!(
            n > 0 || kind == 22,
            "{flow:?}: does not start with a handshake"
        );
        assert!(len <= 16384 + 256, "{flow:?}: record of {len} bytes");
        at += 5 + len;
        n += 1;
    }
    assert!(at == bytes.len(), "{flow:?}: the last record is cut");
    n
}

fn a_recording_of_all_loopback_traffic_holds_no_secret(mix: Mix) {
    let (pa, pc) = (free_port(), free_port());
    let mut capture = None;
    let s = Swarm::start_after(mix, |_, trackers| {
        let mut ports: Vec<u16> = trackers
            .iter()
            .map(|t| t.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        ports.extend([pa, pc]);
        capture = Some(Capture::start(&ports));
    });
    let capture = capture.unwrap();
    let file = s.dir.path().join("secret.bin");
    let data = random_file(&file, 3 * 512 * 1024 + 777, 15);
    let (pw_a, pw_c) = ("Pw-alice-7f3a9c41", "Pw-carol-0be12d77");

    let listen = |p: u16| format!("127.0.0.1:{p}");
    let mut a: Proc = s.client("alice", 0, &listen(pa), mix.seeders);
    let mut c: Proc = s.client("carol", 1, &listen(pc), mix.leechers);
    a.run(&format!("create_user alice {pw_a}"), "created");
    a.run(&format!("login alice {pw_a}"), "logged in as");
    c.run(&format!("create_user carol {pw_c}"), "created");
    c.run(&format!("login carol {pw_c}"), "logged in as");
    a.run("create_group g1", "group g1 created");
    c.run("join_group g1", "join request sent");
    a.run("accept_request g1 carol", "carol is now a member");
    a.run(
        &format!("upload_file g1 {}", file.display()),
        "sharing secret.bin in g1",
    );
    let got = s.dir.path().join("got.bin");
    c.run(
        &format!("download_file g1 secret.bin {}", got.display()),
        "in the background",
    );
    c.run("wait_downloads 60", "all downloads ended");
    assert_eq!(std::fs::read(&got).unwrap(), data, "byte-exact download");
    c.run("logout", "logged out");
    drop((a, c, s)); // every process stops before the capture does
    let pcap = capture.stop();

    let flows = flows(&pcap);
    let total: usize = flows.values().map(Vec::len).sum();
    assert!(
        total > data.len(),
        "the capture holds {total} bytes, less than the file: it missed the transfer"
    );
    for (flow, bytes) in &flows {
        tls_records(*flow, bytes);
    }
    // Tracker↔tracker both ways, each client↔its tracker, carol↔alice.
    assert!(flows.len() >= 8, "only {} directions seen", flows.len());

    let everything: Vec<u8> = flows.values().flatten().copied().collect();
    let holds = |needle: &[u8]| everything.windows(needle.len()).any(|w| w == needle);
    for secret in [pw_a, pw_c, "P2PG"] {
        assert!(!holds(secret.as_bytes()), "the capture holds {secret:?}");
    }
    for i in 0..8 {
        let at = i * (data.len() - 64) / 7;
        assert!(
            !holds(&data[at..at + 64]),
            "the capture holds the file's bytes at {at}"
        );
    }
}

/// Tracker `n`'s fingerprint, as `tracker --fingerprint` prints it.
fn fingerprint(s: &Swarm, n: usize) -> String {
    let data = s.dir.path().join(format!("t{n}"));
    let out = Command::new(TRACKER)
        .current_dir(s.dir.path())
        .args(["tracker_info.txt", &n.to_string(), "--data-dir"])
        .arg(&data)
        .arg("--fingerprint")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let fp = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(fp.len(), 64, "a fingerprint is 64 hex digits: {fp:?}");
    fp
}

/// A tracker as number `n` of the swarm, with its own data directory.
fn tracker(s: &Swarm, name: &str, n: usize, data: &Path) -> Proc {
    let rt = s.mix.trackers.arg();
    common::swarm::spawn_tracker(s.dir.path(), "tracker_info.txt", rt, name, n, data)
}

/// Tracker 2's host is taken over by an impostor: the same address and
/// tracker number, but a key of its own. Tracker 1, which pinned the real
/// tracker 2 on first contact, refuses it both ways (its hello and our
/// dials), keeps serving alone, and takes the real tracker 2 back.
fn an_impostor_tracker_is_refused_and_changes_nothing(mix: Mix) {
    let mut s = Swarm::start(mix);
    let mut a = s.seeder("alice", 0);
    a.run("create_user alice pw", "created");
    a.run("login alice pw", "logged in as");
    a.run("create_group g1", "group g1 created");

    let mut real2 = s.procs.remove(1);
    real2.child.kill().unwrap();
    real2.child.wait().unwrap();
    let mut impostor = tracker(&s, "impostor", 2, &s.dir.path().join("impostor"));
    impostor.never_within("Connected to peer tracker", Duration::from_secs(4));
    let t1 = &mut s.procs[0];
    t1.expect("pinned", 10);
    // Tracker 1 still takes writes, alone.
    a.run("create_group g2", "group g2 created");
    drop(impostor);

    let mut back = tracker(&s, "tracker2-again", 2, &s.dir.path().join("t2"));
    back.expect("Connected to peer tracker", 20);
    let mut b = s.leecher("bob", 1);
    b.run("create_user bob pw", "created");
    b.run("login bob pw", "logged in as");
    // Both groups reached tracker 2 (its catch-up came from tracker 1).
    b.run("list_groups", "g1");
    b.run("list_groups", "g2");
}

/// A client whose tracker_info.txt pins tracker 1 to another key (tracker
/// 2's) refuses tracker 1 before sending anything, says so with the fix,
/// and carries on with tracker 2.
fn a_client_with_a_wrong_pin_refuses_the_tracker(mix: Mix) {
    let s = Swarm::start(mix);
    let fp2 = fingerprint(&s, 2);
    let info = s.dir.path().join("pinned_info.txt");
    let wrong = format!("{} {fp2}\n{} {fp2}\n", s.trackers[0], s.trackers[1]);
    std::fs::write(&info, wrong).unwrap();
    let data = s.dir.path().join("data-alice");
    let args = [
        s.trackers[0].as_str(),
        info.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--runtime",
        mix.leechers.arg(),
    ];
    let mut a = Proc::spawn("alice", env!("CARGO_BIN_EXE_client"), &args, s.dir.path());
    a.run("create_user alice pw", "created");
    let refused = a
        .seen
        .iter()
        .find(|l| l.contains("presented key"))
        .cloned()
        .unwrap_or_else(|| a.expect("presented key", 10));
    assert!(refused.contains(&fp2), "names the pinned key: {refused}");
    assert!(
        refused.contains(&s.trackers[0]),
        "names the tracker: {refused}"
    );
    a.run("login alice pw", "logged in as");
}

/// A hand-driven peer of our protocol: TLS with an identity of its own
/// (so a key of its own), then frames. It plays the attacker who sniffed a
/// session token or a ticket (in these tests it got them legitimately,
/// with another key, which is what a sniffer would hold).
struct Rogue {
    stream: runtime_common::tls::ClientStream,
    buf: BytesMut,
    client: ClientId,
    next: u64,
}

/// A key pair of its own, in a directory of its own.
struct Key {
    tls: Tls,
    _dir: tempfile::TempDir,
}

impl Key {
    fn new() -> Key {
        let dir = tempfile::tempdir().unwrap();
        let tls = Identity::load_or_create(dir.path()).unwrap().tls();
        Key { tls, _dir: dir }
    }
}

impl Rogue {
    /// Connects to `addr` as `role` with `key`: TLS, then hellos both ways.
    fn connect(key: &Key, addr: &str, role: Role) -> Rogue {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (stream, _peer) = key.tls.connect_blocking(tcp).unwrap();
        let mut r = Rogue {
            stream,
            buf: BytesMut::new(),
            // Unique per key (a thief reusing the victim's id is no
            // better off: outcomes are keyed by the key too).
            client: ClientId(key.tls.key_id().0[..16].try_into().unwrap()),
            next: 1,
        };
        r.send(&Hello::new(role));
        let hello: Hello = r.recv().expect("the other end says hello");
        assert_eq!(hello.role, Role::Server);
        r
    }

    fn send<M: Wire>(&mut self, m: &M) {
        let mut out = BytesMut::new();
        encode_msg(m, &mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// The next message; `None` once the other end closed.
    fn recv<M: Wire>(&mut self) -> Option<M> {
        let mut dec = FrameDecoder::default();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(f) = dec.decode(&mut self.buf).unwrap() {
                return Some(M::from_bytes(f).unwrap());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// One tracker request and its outcome; `NotReady` (a tracker still
    /// electing) is retried with the same id, as the real client does, for
    /// 10 s at most.
    fn request(&mut self, session: Option<SessionToken>, req: Request) -> Outcome {
        let id = RequestId(self.next);
        self.next += 1;
        for _ in 0..100 {
            self.send(&ClientRequest {
                client: self.client,
                id,
                session,
                req: req.clone(),
            });
            let outcome = loop {
                match self.recv::<FromTracker>() {
                    Some(FromTracker::Response { id: got, outcome }) if got == id => break outcome,
                    Some(
                        FromTracker::Response { .. }
                        | FromTracker::Notice { .. }
                        | FromTracker::Peers { .. },
                    ) => {}
                    other => panic!("no answer to request {id:?}: {other:?}"),
                }
            };
            if outcome != Err(p2p_proto::TrackerError::NotReady) {
                return outcome;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("request {id:?}: the tracker stayed NotReady for 10 s")
    }

    /// Creates `user` and logs in: the session token.
    fn user(&mut self, user: &str) -> SessionToken {
        let (user, password) = (UserName::new(user).unwrap(), Password::new("pw").unwrap());
        let create = Request::CreateUser {
            user: user.clone(),
            password: password.clone(),
        };
        assert_eq!(self.request(None, create), Ok(Reply::Done));
        match self.request(None, Request::Login { user, password }) {
            Ok(Reply::LoggedIn { token, .. }) => token,
            other => panic!("login: {other:?}"),
        }
    }
}

/// A session token used from another key is refused, on the tracker that
/// issued it and on the other one, for reads, writes and resume; the key
/// that logged in keeps using it.
fn a_session_replayed_from_another_key_is_refused(mix: Mix) {
    let s = Swarm::start(mix);
    let (victim_key, thief_key) = (Key::new(), Key::new());
    let mut victim = Rogue::connect(&victim_key, &s.trackers[0], Role::Client);
    let token = victim.user("victim");
    for t in 0..2 {
        let mut thief = Rogue::connect(&thief_key, &s.trackers[t], Role::Client);
        for req in [
            Request::Resume,
            Request::ListGroups,
            Request::CreateGroup {
                group: GroupName::new(format!("stolen{t}")).unwrap(),
            },
            Request::Logout,
        ] {
            let got = thief.request(Some(token), req.clone());
            assert!(
                got.is_err(),
                "tracker {t}: {req:?} from another key: {got:?}"
            );
        }
    }
    // The victim's client id and request id from another key: the stored
    // outcome of the victim's login (its token) is not handed out.
    let mut thief = Rogue::connect(&thief_key, &s.trackers[0], Role::Client);
    (thief.client, thief.next) = (victim.client, 2);
    let login = Request::Login {
        user: UserName::new("victim").unwrap(),
        password: Password::new("not-the-password").unwrap(),
    };
    let got = thief.request(None, login);
    assert!(
        !matches!(got, Ok(Reply::LoggedIn { .. })),
        "another key got the victim's stored login outcome: {got:?}"
    );
    // Nothing the thief tried took effect: the victim is still logged in,
    // and no group was made.
    assert!(matches!(
        victim.request(Some(token), Request::Resume),
        Ok(Reply::Resumed { .. })
    ));
    match victim.request(Some(token), Request::ListGroups) {
        Ok(Reply::Groups(g)) => assert!(g.is_empty(), "{g:?}"),
        other => panic!("list_groups: {other:?}"),
    }
}

/// A ticket is worthless from any key but the one it names: the seeder
/// refuses it from another key and serves the right one.
fn a_ticket_replayed_from_another_key_is_refused(mix: Mix) {
    let s = Swarm::start(mix);
    let file = s.dir.path().join("t.bin");
    let data = random_file(&file, 512 * 1024 + 99, 7);
    let mut a = s.seeder("alice", 0);
    a.run("create_user alice pw", "created");
    a.run("login alice pw", "logged in as");
    a.run("create_group g", "group g created");
    let (bob_key, thief_key) = (Key::new(), Key::new());
    let mut bob = Rogue::connect(&bob_key, &s.trackers[0], Role::Client);
    let token = bob.user("bob");
    let (g, f) = (
        GroupName::new("g").unwrap(),
        FileName::new("t.bin").unwrap(),
    );
    let join = Request::JoinGroup { group: g.clone() };
    assert_eq!(bob.request(Some(token), join), Ok(Reply::Done));
    a.run("accept_request g bob", "now a member");
    a.run(
        &format!("upload_file g {}", file.display()),
        "sharing t.bin",
    );
    a.run("serve", "serving");
    let peers = Request::GetPeers {
        group: g.clone(),
        file: f.clone(),
    };
    let peer = match bob.request(Some(token), peers) {
        Ok(Reply::Peers(p)) if p.len() == 1 => p[0].clone(),
        other => panic!("get_peers: {other:?}"),
    };
    let addr = peer.addr.to_string();

    // Another key with bob's ticket: refused, nothing served.
    let mut thief = Rogue::connect(&thief_key, &addr, Role::Peer);
    thief.send(&PeerMsg::Open {
        ticket: peer.ticket.clone(),
    });
    thief.send(&PeerMsg::Request { index: 0 });
    let mut got = Vec::new();
    while let Some(m) = thief.recv::<PeerMsg>() {
        got.push(m);
    }
    assert!(
        matches!(got.first(), Some(PeerMsg::Reject { index: None, .. })),
        "{got:?}"
    );
    assert!(!got.iter().any(|m| matches!(m, PeerMsg::Piece { .. })));

    // From the key bob logged in with, the same ticket works.
    let mut own = Rogue::connect(&bob_key, &addr, Role::Peer);
    own.send(&PeerMsg::Open {
        ticket: peer.ticket.clone(),
    });
    assert!(matches!(own.recv::<PeerMsg>(), Some(PeerMsg::Have { .. })));
    own.send(&PeerMsg::Request { index: 0 });
    loop {
        match own.recv::<PeerMsg>() {
            Some(PeerMsg::Piece {
                index: 0,
                data: piece,
            }) => {
                assert_eq!(&piece[..], &data[..512 * 1024]);
                break;
            }
            Some(PeerMsg::HavePiece { .. }) => {}
            other => panic!("piece 0 from the right key: {other:?}"),
        }
    }
}
