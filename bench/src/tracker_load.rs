//! Tracker request rate and latency: C raw TLS connections speaking the
//! client protocol (hello, then `ClientRequest` frames; `FromTracker`
//! answers), one request in flight each, spread over two replicating
//! trackers. Latency is from the request's write to its response's decode.
//! All connections present one identity, made in a temporary directory.
//! Each connection comes from its own loopback address (127.1.x.y), as
//! that many separate clients would: the trackers' per-source limits
//! (connections, handshakes, password checks waiting) would otherwise
//! throttle the load as the flood from one host they are meant to stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p_proto::{
    ClientId, ClientRequest, FileMeta, FileName, FrameDecoder, FromTracker, GroupName, Hello,
    Outcome, Password, Reply, Request, RequestId, Role, SessionToken, Sha1Hash, TrackerError,
    UserName, Wire, encode_msg,
};

use runtime_common::tls::{ClientStream, Identity, Tls};

use super::proc::Res;

/// The load's TLS identity (one for the process, made in a temporary
/// directory that is gone once the key is loaded).
fn tls() -> Res<&'static Tls> {
    static TLS: OnceLock<Result<Tls, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let id = Identity::load_or_create(dir.path()).map_err(|e| e.to_string())?;
        Ok(id.tls())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The loopback address connection `n` comes from.
fn source_ip(n: u64) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 1, (n / 200 % 250) as u8, (n % 200 + 1) as u8)
}

/// A TCP connection to `addr` from `src` (any port).
fn connect_from(src: std::net::Ipv4Addr, addr: &str) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let to: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &std::net::SocketAddr::from((src, 0)))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// One client connection to a tracker.
pub struct Conn {
    s: ClientStream,
    dec: FrameDecoder,
    buf: BytesMut,
    out: BytesMut,
    chunk: Vec<u8>,
    client: ClientId,
    next: u64,
    session: Option<SessionToken>,
}

impl Conn {
    /// Connects and exchanges hellos. `n` makes the client id unique.
    pub fn connect(addr: &str, n: u64) -> Res<Conn> {
        let s = connect_from(source_ip(n), addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let (s, _) = tls()?
            .connect_blocking(s)
            .map_err(|e| format!("{addr}: TLS: {e}"))?;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id[8..].copy_from_slice(&u64::from(std::process::id()).to_be_bytes());
        let mut c = Conn {
            s,
            dec: FrameDecoder::default(),
            buf: BytesMut::new(),
            out: BytesMut::new(),
            chunk: vec![0u8; 64 * 1024],
            client: ClientId(id),
            next: 1,
            session: None,
        };
        encode_msg(&Hello::new(Role::Client), &mut c.out);
        c.flush()?;
        let hello = c.read_frame()?;
        Hello::from_bytes(hello).map_err(|e| format!("{addr}: bad hello: {e}"))?;
        Ok(c)
    }

    fn flush(&mut self) -> Res<()> {
        let r = self.s.write_all(&self.out);
        self.out.clear();
        r.map_err(|e| format!("write: {e}"))
    }

    fn read_frame(&mut self) -> Res<bytes::Bytes> {
        loop {
            if let Some(f) = self
                .dec
                .decode(&mut self.buf)
                .map_err(|e| format!("bad framing from the tracker: {e}"))?
            {
                return Ok(f);
            }
            let n = self
                .s
                .read(&mut self.chunk)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the tracker closed the connection".into());
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// Sends one request and waits for its response (notices skipped).
    pub fn call(&mut self, req: Request) -> Res<Outcome> {
        let id = RequestId(self.next);
        self.next += 1;
        self.send_recv(id, req)
    }

    fn send_recv(&mut self, id: RequestId, req: Request) -> Res<Outcome> {
        let msg = ClientRequest {
            client: self.client,
            id,
            session: self.session,
            req,
        };
        encode_msg(&msg, &mut self.out);
        self.flush()?;
        loop {
            let f = self.read_frame()?;
            match FromTracker::from_bytes(f).map_err(|e| format!("bad answer: {e}"))? {
                FromTracker::Response { id: got, outcome } if got == id => {
                    if let Ok(Reply::LoggedIn { token, .. }) = &outcome {
                        self.session = Some(*token);
                    }
                    return Ok(outcome);
                }
                FromTracker::Response { .. }
                | FromTracker::Notice { .. }
                | FromTracker::Peers { .. } => {}
                FromTracker::Fatal { reason } => return Err(format!("tracker: {reason}")),
            }
        }
    }

    /// A request that must succeed (setup). While the tracker is still
    /// catching up with its peer, the same request (same id) is re-sent.
    pub fn must(&mut self, req: Request) -> Res<Reply> {
        let what = format!("{req:?}");
        let id = RequestId(self.next);
        self.next += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.send_recv(id, req.clone())? {
                Err(TrackerError::NotReady) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => return r.map_err(|e| format!("{what}: {e}")),
            }
        }
    }
}

fn user(s: &str) -> UserName {
    UserName::new(s).expect("a valid user name")
}

fn group(s: &str) -> GroupName {
    GroupName::new(s).expect("a valid group name")
}

/// A new user on `addr`, logged in.
fn login(addr: &str, n: u64, name: &str) -> Res<Conn> {
    let mut c = Conn::connect(addr, n)?;
    let password = Password::new("pw").expect("a valid password");
    c.must(Request::CreateUser {
        user: user(name),
        password: password.clone(),
    })?;
    c.must(Request::Login {
        user: user(name),
        password,
    })?;
    Ok(c)
}

/// Rate and latency of one kind of request.
#[derive(Clone, Debug)]
pub struct Load {
    /// Requests answered with success.
    pub ops: u64,
    /// Requests the tracker refused (an error answer), e.g. `NotReady`.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Successes and refusals per tracker (connections alternate).
    pub ok_by_tracker: Vec<u64>,
    pub refused_by_tracker: Vec<u64>,
    pub secs: f64,
    /// Sorted latencies of the successful requests, in seconds.
    pub lat: Vec<f64>,
}

impl Load {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    pub fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i.min(self.lat.len() - 1)]
    }
}

/// Per-thread tallies.
#[derive(Default)]
struct Tally {
    tracker: usize,
    lat: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, t0: Instant, r: Res<Outcome>) -> Res<()> {
        let took = t0.elapsed().as_secs_f64();
        match r {
            Ok(Ok(_)) => {
                self.lat.push(took);
                Ok(())
            }
            Ok(Err(e)) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn merge(tallies: Vec<Res<Tally>>, trackers: usize, secs: f64) -> Res<Load> {
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut ok_by_tracker = vec![0; trackers];
    let mut refused_by_tracker = vec![0; trackers];
    for t in tallies {
        let t = t?;
        ok_by_tracker[t.tracker % trackers] += t.lat.len() as u64;
        refused_by_tracker[t.tracker % trackers] += t.errors;
        lat.extend(t.lat);
        errors += t.errors;
        if first_error.is_none() {
            first_error = t.first_error;
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok(Load {
        ops: lat.len() as u64,
        errors,
        first_error,
        ok_by_tracker,
        refused_by_tracker,
        secs,
        lat,
    })
}

/// Runs `work` on every item in its own thread, all starting together,
/// each until `dur` has passed; returns the tallies and the wall time.
fn hammer<T: Send>(
    items: Vec<(usize, T)>,
    dur: Duration,
    work: impl Fn(&mut T, Instant, &mut Tally) -> Res<()> + Sync,
) -> (Vec<Res<Tally>>, f64) {
    let barrier = Barrier::new(items.len() + 1);
    let (work, barrier) = (&work, &barrier);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|(tracker, mut item)| {
                s.spawn(move || -> Res<Tally> {
                    let mut t = Tally {
                        tracker,
                        ..Tally::default()
                    };
                    barrier.wait();
                    let deadline = Instant::now() + dur;
                    while Instant::now() < deadline {
                        work(&mut item, deadline, &mut t)?;
                    }
                    Ok(t)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let tallies: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a load thread panicked".into()))
            })
            .collect();
        (tallies, t0.elapsed().as_secs_f64())
    })
}

/// Sets up in parallel (one thread per item).
fn par<T: Send>(n: usize, f: impl Fn(usize) -> Res<T> + Sync) -> Res<Vec<T>> {
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a setup thread panicked".into()))
            })
            .collect()
    })
}

/// Reads: `clients` users in one group, each asking `list_files` over and
/// over for `dur`; connections alternate between the trackers.
pub fn reads(addrs: &[String], clients: usize, dur: Duration) -> Res<Load> {
    let g = group("bench");
    let mut owner = login(&addrs[0], 0, "r0")?;
    owner.must(Request::CreateGroup { group: g.clone() })?;
    // One file's metadata, so that the listing has something in it.
    let piece_hashes = vec![Sha1Hash([1; 20]), Sha1Hash([2; 20])];
    let meta = FileMeta {
        name: FileName::new("f.bin").expect("a valid file name"),
        size: 1024 * 1024,
        piece_len: 512 * 1024,
        file_hash: p2p_state::hash::file_root(1024 * 1024, 512 * 1024, &piece_hashes),
        piece_hashes,
    };
    owner.must(Request::UploadFile {
        group: g.clone(),
        meta,
    })?;
    let mut conns = par(clients.saturating_sub(1), |i| {
        let n = i + 1;
        let mut c = login(&addrs[n % addrs.len()], n as u64, &format!("r{n}"))?;
        c.must(Request::JoinGroup { group: g.clone() })?;
        Ok(c)
    })?;
    for n in 1..clients {
        owner.must(Request::AcceptRequest {
            group: g.clone(),
            user: user(&format!("r{n}")),
        })?;
    }
    conns.insert(0, owner);
    let items = conns.into_iter().enumerate().collect();
    let (tallies, secs) = hammer(items, dur, |c, _, t| {
        let t0 = Instant::now();
        t.record(t0, c.call(Request::ListFiles { group: g.clone() }))
    });
    merge(tallies, addrs.len(), secs)
}

/// Writes: `clients` workers, each an owner of its own group and a
/// member, cycling join_group (member), accept_request (owner),
/// leave_group (member) for `dur`. Every request is a replicated write.
/// Both connections of worker w go to tracker w mod 2.
pub fn writes(addrs: &[String], clients: usize, dur: Duration) -> Res<Load> {
    let pairs = par(clients, |w| {
        let addr = &addrs[w % addrs.len()];
        let base = 1_000_000 + 2 * w as u64;
        let mut o = login(addr, base, &format!("o{w}"))?;
        o.must(Request::CreateGroup {
            group: group(&format!("w{w}")),
        })?;
        let m = login(addr, base + 1, &format!("m{w}"))?;
        Ok((w, (w, o, m)))
    })?;
    let (tallies, secs) = hammer(pairs, dur, |(w, o, m), deadline, t| {
        let g = group(&format!("w{w}"));
        let t0 = Instant::now();
        t.record(t0, m.call(Request::JoinGroup { group: g.clone() }))?;
        if Instant::now() >= deadline {
            return Ok(());
        }
        let t0 = Instant::now();
        let accept = Request::AcceptRequest {
            group: g.clone(),
            user: user(&format!("m{w}")),
        };
        t.record(t0, o.call(accept))?;
        if Instant::now() >= deadline {
            return Ok(());
        }
        let t0 = Instant::now();
        t.record(t0, m.call(Request::LeaveGroup { group: g }))
    });
    merge(tallies, addrs.len(), secs)
}
