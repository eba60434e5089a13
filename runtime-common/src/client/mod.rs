//! The client driver's runtime-free half: options, the handle the CLI
//! holds, and [`Core`], which owns the [`ClientNode`] and executes its
//! outputs. A runtime supplies the plumbing through [`ClientIo`]
//! (connecting, a writer per connection, running disk [`Job`]s) and runs
//! the loop: wait for the first of an [`Ev`] or the machine's deadline,
//! then [`Core::turn`].
//!
//! Piece data is hashed where it is read (the connection's reader, see
//! [`peer_input`]), so verification never runs on the machine loop;
//! written at its offset in `<dest>.part` (through the page cache with
//! early writeback, [`disk::CacheTrim`], or with `O_DIRECT` if asked);
//! served from the shared file by the connection's writer, which reads
//! the range and encrypts it, once a disk job has checked the file holds
//! the piece (see [`disk`]).

pub mod command;
pub mod disk;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use p2p_proto::{GroupName, PeerMsg, Text};
use p2p_state::Instant;
use p2p_state::client::node::{
    self as cn, ClientConfig, ClientEvent, ClientNode, Command, CommandOk, PeerOut,
};
use p2p_state::client::session::{ClientError, CommandTag, SessionConfig, SessionConn};
use p2p_state::download::DownloadConfig;
use p2p_state::hash::sha1;
use p2p_state::seeder::{SeederConfig, ShareId};

use crate::clock::{Clock, Now};
use crate::conn::{ConnEvent, FrameSink};
use crate::known_trackers::{KnownTrackers, Pinner, Pins, merge_pins};
use crate::tls::{Identity, KeyId, Tls};
use crate::trace;
pub use disk::{
    CacheTrim, DlFile, Job, JobDone, Paths, hash_file, hash_file_with_progress, run_job,
};

/// Disk jobs that run at once (worker threads, or blocking-pool tasks).
pub const DISK_WORKERS: usize = 2;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Trackers in `tracker_info.txt` order, and which to try first.
    pub trackers: Vec<SocketAddr>,
    /// The key each tracker must present, as `tracker_info.txt` pins it
    /// (same order; missing or `None`: trust on first use). Completed
    /// with the data directory's `known_trackers`.
    pub tracker_keys: Vec<Option<KeyId>>,
    pub first: usize,
    /// Where the seeder listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The port peers dial when it is not the listening one (a router
    /// forwarding another port to this seeder); the tracker pairs it with
    /// the IP it sees the client connect from.
    pub advertise_port: Option<u16>,
    pub max_parallel: Option<usize>,
    /// Holds the table of shared files.
    pub data_dir: PathBuf,
    /// Write downloaded pieces with `O_DIRECT` where the file system
    /// allows it (see [`disk::write_piece`]); `false` (the client's
    /// default) writes through the page cache with early writeback and
    /// dropped pages ([`disk::CacheTrim`]), which never waits for the
    /// device per piece.
    pub direct_io: bool,
    /// A tracker request unanswered this long (and a connection or hello
    /// not done) moves the session to the next tracker [default 3 s].
    pub request_timeout: Option<p2p_state::Duration>,
    /// An idle session pings its tracker this often [default 1 s].
    pub ping_interval: Option<p2p_state::Duration>,
    /// The rate limits at start, bytes per second (`None`: unlimited):
    /// `--max-upload-rate`, `--max-download-rate` and their `-per-peer`
    /// forms. `set_rate` changes them at run time.
    pub rates: cn::Rates,
}

/// What the CLI asks for between commands.
#[derive(Debug, Clone)]
pub struct Status {
    pub downloads_ended: bool,
    pub failed: Vec<String>,
    pub logged_in: bool,
    /// Pieces and bytes this client's seeder has served.
    pub served_pieces: u64,
    pub served_bytes: u64,
}

/// A share, as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct ShareLine {
    pub group: GroupName,
    pub file: p2p_proto::FileName,
    pub size: u64,
    pub path: Option<PathBuf>,
    /// Pieces and bytes this share has served since it was added.
    pub served_pieces: u64,
    pub served_bytes: u64,
}

/// Everything the client knows locally, for the dashboard: who is
/// logged in where, the downloads (with piece maps and per-peer
/// figures), the shares and what the seeder served.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub user: Option<p2p_proto::UserName>,
    /// The tracker the session talks to, and every tracker it knows.
    pub tracker: SocketAddr,
    pub trackers: Vec<SocketAddr>,
    /// The session's connection to its tracker is up.
    pub tracker_up: bool,
    pub downloads: Vec<cn::DownloadLine>,
    /// Pieces and bytes each download's partial (or complete) file has
    /// served to other downloaders, by download id.
    pub download_served: BTreeMap<cn::DlId, p2p_state::seeder::Served>,
    pub shares: Vec<ShareLine>,
    pub served_pieces: u64,
    pub served_bytes: u64,
    /// Pieces and bytes served to each downloading user.
    pub served_by_user: Vec<(p2p_proto::UserName, u64, u64)>,
    /// The rate limits in force.
    pub rates: cn::Rates,
}

/// What the handle asks of the machine loop.
pub enum HandleMsg {
    Cmd {
        cmd: Command,
        reply: Sender<Result<CommandOk, ClientError>>,
    },
    Query(Sender<Status>),
    Snapshot(Sender<Box<Snapshot>>),
    Stop,
}

/// What the machine loop receives.
pub enum Ev<W> {
    Input(cn::Input),
    /// A connection is up and its TLS handshake done; `peer` is the key
    /// the other end proved it holds.
    TrackerUp {
        conn: SessionConn,
        writer: W,
        peer: KeyId,
    },
    PeerUp {
        conn: u64,
        writer: W,
        /// `Some(source address)` for a connection to our seeder port
        /// (the seeder's per-address limits count it), `None` for one we
        /// dialled.
        inbound: Option<IpAddr>,
        peer: KeyId,
    },
    Handle(HandleMsg),
    Disk(JobDone),
}

/// What a tracker connection's reader event means to the machine.
pub fn tracker_input(conn: SessionConn, ev: ConnEvent) -> cn::Input {
    match ev {
        ConnEvent::Frame(payload) => cn::Input::TrackerFrame { conn, payload },
        ConnEvent::BadFraming(_) | ConnEvent::Closed => cn::Input::TrackerClosed { conn },
    }
}

/// What a peer connection's reader event means to the machine: piece
/// frames are hashed right here, on the reader's thread or task.
pub fn peer_input(conn: u64, ev: ConnEvent) -> cn::Input {
    match ev {
        ConnEvent::Frame(payload) => match PeerMsg::split_piece(&payload) {
            Some((index, data)) => {
                let sha1 = sha1(&data);
                trace::add(&trace::PIECES_HASHED, 1);
                cn::Input::PeerPiece {
                    conn,
                    index,
                    sha1,
                    data,
                }
            }
            None => cn::Input::PeerFrame { conn, payload },
        },
        ConnEvent::BadFraming(_) | ConnEvent::Closed => cn::Input::PeerClosed { conn },
    }
}

/// A piece frame's headers (frame length, message tag, index, length),
/// as the codec builds them.
fn piece_head(index: u32, len: usize) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&PeerMsg::piece_frame_head(index, len as u32))
}

/// Encodes and queues a message for a peer; a piece's data is queued as it
/// is, behind its headers, so it is never copied into a frame, and a piece
/// in a file (`file`: the share's file, when the message is one) goes
/// straight from the file.
fn send_peer_msg(w: &impl FrameSink, msg: PeerOut, file: Option<Arc<File>>) {
    let mut b = BytesMut::new();
    match msg {
        PeerOut::Msg(PeerMsg::Piece { index, data }) => {
            w.send_parts(piece_head(index, data.len()), data);
        }
        PeerOut::PieceFromFile {
            index, offset, len, ..
        } => {
            let len = len as usize;
            match file {
                Some(file) => {
                    let range = crate::conn::FileRange { file, offset, len };
                    w.send_file(piece_head(index, len), range);
                }
                // The share is gone since its check: nothing can follow
                // on this connection that the peer would understand.
                None => w.abort(),
            }
        }
        PeerOut::Hello(h) => {
            p2p_proto::encode_msg(&h, &mut b);
            w.send(b.freeze());
        }
        PeerOut::Msg(m) => {
            p2p_proto::encode_msg(&m, &mut b);
            w.send(b.freeze());
        }
    }
}

type SendFn = Arc<dyn Fn(HandleMsg) -> bool + Send + Sync>;
type Join = Box<dyn FnOnce() + Send>;

/// A running client.
pub struct ClientHandle {
    commander: Commander,
    seeder_addr: SocketAddr,
    join: Option<Join>,
    events: Option<Receiver<ClientEvent>>,
}

/// What runs commands on a client, from any thread (the REPL, the web
/// dashboard's connections, the watcher); cloned freely.
#[derive(Clone)]
pub struct Commander {
    send: SendFn,
    paths: Arc<Mutex<Paths>>,
}

impl Commander {
    /// A commander of no client (every call fails as if it had stopped),
    /// for tests.
    pub fn detached() -> Self {
        Commander {
            send: Arc::new(|_| false),
            paths: Arc::new(Mutex::new(Paths::new())),
        }
    }

    /// Runs a command and waits for its answer.
    pub fn run(&self, cmd: Command) -> Result<CommandOk, ClientError> {
        let (reply, rx) = mpsc::channel();
        if !(self.send)(HandleMsg::Cmd { cmd, reply }) {
            return Err(ClientError::Busy);
        }
        rx.recv().unwrap_or(Err(ClientError::Busy))
    }

    /// Registers a file to share: returns the id to put in `Command::Share`.
    pub fn share_id(&self, path: &Path, group: &GroupName) -> ShareId {
        let mut p = self.paths.lock().expect("paths");
        let id = p.next_id();
        p.shares.insert(id, (path.to_path_buf(), group.clone()));
        ShareId::Upload(id)
    }

    /// Registers a download destination: returns its id. An existing
    /// file at `path` is replaced only with `overwrite`.
    pub fn dest_id(&self, path: &Path, overwrite: bool) -> u64 {
        let mut p = self.paths.lock().expect("paths");
        let id = p.next_id();
        p.dests.insert(id, (path.to_path_buf(), overwrite));
        id
    }

    pub fn status(&self) -> Option<Status> {
        let (tx, rx) = mpsc::channel();
        if !(self.send)(HandleMsg::Query(tx)) {
            return None;
        }
        rx.recv().ok()
    }

    /// What the client knows locally (`None` once it stopped).
    pub fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = mpsc::channel();
        if !(self.send)(HandleMsg::Snapshot(tx)) {
            return None;
        }
        let mut s = *rx.recv().ok()?;
        s.shares
            .sort_by(|a, b| (&a.group, &a.file).cmp(&(&b.group, &b.file)));
        Some(s)
    }
}

impl ClientHandle {
    /// `send` queues a message for the machine loop (`false` once it has
    /// stopped); `join` waits for the loop to end.
    pub fn new(
        send: impl Fn(HandleMsg) -> bool + Send + Sync + 'static,
        join: impl FnOnce() + Send + 'static,
        parts: HandleParts,
    ) -> Self {
        ClientHandle {
            commander: Commander {
                send: Arc::new(send),
                paths: parts.paths,
            },
            seeder_addr: parts.seeder_addr,
            join: Some(Box::new(join)),
            events: Some(parts.events),
        }
    }

    pub fn seeder_addr(&self) -> SocketAddr {
        self.seeder_addr
    }

    /// Lines the user should see that no command asked for.
    pub fn take_events(&mut self) -> Receiver<ClientEvent> {
        self.events.take().expect("events taken once")
    }

    /// What runs commands on this client from other threads.
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    /// Runs a command and waits for its answer.
    pub fn run(&self, cmd: Command) -> Result<CommandOk, ClientError> {
        self.commander.run(cmd)
    }

    /// Registers a file to share: returns the id to put in `Command::Share`.
    pub fn share_id(&self, path: &Path, group: &GroupName) -> ShareId {
        self.commander.share_id(path, group)
    }

    /// Registers a download destination: returns its id. An existing
    /// file at `path` is replaced only with `overwrite`.
    pub fn dest_id(&self, path: &Path, overwrite: bool) -> u64 {
        self.commander.dest_id(path, overwrite)
    }

    pub fn status(&self) -> Option<Status> {
        self.commander.status()
    }

    /// Stops the machine loop (connections close with it) and waits.
    pub fn stop(mut self) {
        (self.commander.send)(HandleMsg::Stop);
        if let Some(j) = self.join.take() {
            j();
        }
    }
}

/// A client ready to run: the machine with its share table loaded, and
/// what the handle keeps.
pub struct Prepared {
    node: ClientNode,
    tls: Tls,
    pins: Pinner,
    clock: Clock,
    data_dir: PathBuf,
    direct_io: bool,
    events: Sender<ClientEvent>,
    handle: HandleParts,
}

/// What [`ClientHandle::new`] takes from [`prepare`].
pub struct HandleParts {
    paths: Arc<Mutex<Paths>>,
    seeder_addr: SocketAddr,
    events: Receiver<ClientEvent>,
}

impl Prepared {
    /// The TLS configurations of the client's identity (built once).
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }
}

/// Loads (or makes) the identity in the data directory, binds the seeder
/// port, builds the machine and loads the share table.
pub fn prepare(opts: ClientOptions) -> io::Result<(Prepared, TcpListener)> {
    crate::private::open_dir(
        &opts.data_dir,
        "the client's share table, command history and identity",
    )?;
    let identity = Identity::load_or_create(&opts.data_dir).map_err(io::Error::other)?;
    let known = KnownTrackers::load(&opts.data_dir).map_err(io::Error::other)?;
    let listener = TcpListener::bind(opts.listen)?;
    // The IP part is only a hint: the tracker records the IP it sees the
    // client's connection come from (so an unspecified bind is fine).
    let mut seeder_addr = listener.local_addr()?;
    if let Some(port) = opts.advertise_port {
        seeder_addr.set_port(port);
    }
    let mut download = DownloadConfig {
        max_rate: opts.rates.down,
        max_rate_per_peer: opts.rates.down_per_peer,
        ..DownloadConfig::default()
    };
    if let Some(n) = opts.max_parallel {
        download.max_parallel = n.max(1);
    }
    let mut session = SessionConfig::new(opts.trackers.clone(), opts.first);
    session.tracker_keys = merge_pins(&opts.trackers, &opts.tracker_keys, &known, |i| {
        format!("tracker {}'s line of tracker_info.txt", i + 1)
    })
    .map_err(io::Error::other)?;
    if let Some(t) = opts.request_timeout {
        session.request_timeout = t;
    }
    if let Some(t) = opts.ping_interval {
        session.ping_interval = t;
    }
    let cfg = ClientConfig {
        session,
        seeder: SeederConfig {
            upload_rate: opts.rates.up,
            upload_rate_per_peer: opts.rates.up_per_peer,
            ..SeederConfig::default()
        },
        download,
        seeder_addr: Some(seeder_addr),
    };
    let clock = Clock::new();
    let mut node = ClientNode::new(cfg, seed(), clock.now());
    let paths = Arc::new(Mutex::new(Paths::new()));
    disk::load_shares(&opts.data_dir, &mut node, &paths);
    let (events, events_rx) = mpsc::channel();
    let handle = HandleParts {
        paths,
        seeder_addr,
        events: events_rx,
    };
    let p = Prepared {
        node,
        tls: identity.tls(),
        pins: Pinner::new(known, opts.trackers.clone()),
        clock,
        data_dir: opts.data_dir,
        direct_io: opts.direct_io,
        events,
        handle,
    };
    Ok((p, listener))
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// The effects only a runtime can run. None may block.
pub trait ClientIo {
    type Writer: FrameSink;
    /// Connects to a tracker: `Ev::TrackerUp`, then the reader's inputs
    /// ([`tracker_input`]); or `TrackerConnectFailed`.
    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr);
    /// Connects to a peer's seeder: `Ev::PeerUp { inbound: false }`, then
    /// the reader's inputs ([`peer_input`]); or `PeerConnectFailed`.
    fn connect_peer(&mut self, conn: u64, addr: SocketAddr);
    /// Runs a job off the loop ([`run_job`]) and reports `Ev::Disk`.
    fn disk(&mut self, job: Job);
}

/// The machine and what the driver knows beside it. The runtimes run it
/// on the [`Clock`] and record pins with a [`Pinner`] (the defaults); the
/// clock and the pin record are type parameters, as in the tracker's
/// core, so that a simulation can give its own.
pub struct Core<R: ClientIo, C: Now = Clock, P: Pins = Pinner> {
    node: ClientNode,
    pins: P,
    clock: C,
    io: R,
    trackers: BTreeMap<SessionConn, R::Writer>,
    peers: BTreeMap<u64, R::Writer>,
    pending: BTreeMap<CommandTag, Sender<Result<CommandOk, ClientError>>>,
    next_tag: CommandTag,
    paths: Arc<Mutex<Paths>>,
    dl_files: BTreeMap<u64, DlFile>,
    share_files: BTreeMap<u64, Arc<File>>,
    events: Sender<ClientEvent>,
    data_dir: PathBuf,
    direct_io: bool,
    /// The share table as last saved.
    saved_shares: Vec<u8>,
    /// Inputs the driver itself produced while executing outputs (a
    /// failure it can tell at once); fed after the drain.
    later: VecDeque<cn::Input>,
}

impl<R: ClientIo> Core<R> {
    /// Takes the machine from [`prepare`] (the handle's parts stay behind)
    /// and runs its first outputs (connecting to the first tracker).
    pub fn new(p: Prepared, io: R) -> (Self, HandleParts) {
        let mut core = Core {
            node: p.node,
            pins: p.pins,
            clock: p.clock,
            io,
            trackers: BTreeMap::new(),
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_tag: 1,
            paths: p.handle.paths.clone(),
            dl_files: BTreeMap::new(),
            share_files: BTreeMap::new(),
            events: p.events,
            data_dir: p.data_dir,
            direct_io: p.direct_io,
            saved_shares: Vec::new(),
            later: VecDeque::new(),
        };
        core.saved_shares = disk::shares_bytes(&core.node, &core.paths);
        core.drain();
        (core, p.handle)
    }
}

impl<R: ClientIo, C: Now, P: Pins> Core<R, C, P> {
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// When the loop must wake up if nothing arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout().map(|(t, _)| t)
    }

    /// One turn of the loop: the event that woke it (`None`: the wait timed
    /// out), then the machine's deadline if the clock has passed it.
    /// `false` when the handle asked to stop.
    pub fn turn(&mut self, ev: Option<Ev<R::Writer>>) -> bool {
        if let Some(ev) = ev {
            if let Ev::Handle(HandleMsg::Stop) = ev {
                return false;
            }
            let frame_of = match &ev {
                Ev::Input(cn::Input::TrackerFrame { conn, .. }) => Some(Err(*conn)),
                Ev::Input(
                    cn::Input::PeerFrame { conn, .. } | cn::Input::PeerPiece { conn, .. },
                ) => Some(Ok(*conn)),
                _ => None,
            };
            self.on_event(ev);
            self.drain();
            // Its replies are queued: the reader may go on.
            let writer = match frame_of {
                Some(Ok(peer)) => self.peers.get(&peer),
                Some(Err(tracker)) => self.trackers.get(&tracker),
                None => None,
            };
            if let Some(w) = writer {
                w.frame_handled();
            }
        }
        let now = self.clock.now();
        if let Some((t, why)) = self.node.poll_timeout()
            && t <= now
        {
            tracing::trace!("deadline: {why:?}");
            self.node.handle_timeout(now);
            self.drain();
        }
        true
    }

    fn on_event(&mut self, ev: Ev<R::Writer>) {
        let now = self.clock.now();
        match ev {
            Ev::Input(input) => self.node.handle_input(now, input),
            Ev::TrackerUp { conn, writer, peer } => {
                self.trackers.insert(conn, writer);
                self.node
                    .handle_input(now, cn::Input::TrackerConnected { conn, peer });
            }
            Ev::PeerUp {
                conn,
                writer,
                inbound,
                peer,
            } => {
                self.peers.insert(conn, writer);
                let input = match inbound {
                    Some(addr) => cn::Input::PeerAccepted { conn, peer, addr },
                    None => cn::Input::PeerConnected { conn, peer },
                };
                self.node.handle_input(now, input);
            }
            Ev::Disk(JobDone::Input(input)) => self.node.handle_input(now, input),
            Ev::Disk(JobDone::Prepared { dl, file, have }) => {
                self.dl_files.insert(dl, *file);
                self.node
                    .handle_input(now, cn::Input::DestReady { dl, have });
            }
            Ev::Disk(JobDone::Nothing) => {}
            Ev::Handle(HandleMsg::Cmd { cmd, reply }) => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.pending.insert(tag, reply);
                if let Command::Share { share, .. } = &cmd
                    && let Some(n) = share.upload()
                    && let Some((path, _)) = self.paths.lock().expect("paths").shares.get(&n)
                    && let Ok(f) = File::open(path)
                {
                    self.share_files.insert(n, Arc::new(f));
                }
                self.node.handle_input(now, cn::Input::Command { tag, cmd });
            }
            Ev::Handle(HandleMsg::Query(reply)) => {
                let (downloads_ended, failed) = self.node.downloads_ended();
                let logged_in = self.node.session().user().is_some();
                let served = &self.node.seeder().stats().served;
                let _ = reply.send(Status {
                    downloads_ended,
                    failed,
                    logged_in,
                    served_pieces: served.pieces,
                    served_bytes: served.bytes,
                });
            }
            Ev::Handle(HandleMsg::Snapshot(reply)) => {
                let _ = reply.send(Box::new(self.snapshot()));
            }
            Ev::Handle(HandleMsg::Stop) => {}
        }
    }

    /// What the dashboard shows of the machine (see [`Snapshot`]).
    fn snapshot(&self) -> Snapshot {
        let session = self.node.session();
        let seeder = self.node.seeder();
        let paths = self.paths.lock().expect("paths");
        let downloads = self.node.download_lines(self.clock.now());
        let shares = self
            .node
            .shares()
            .map(|(id, (group, meta))| {
                let served = seeder.share_served(*id).unwrap_or_default();
                ShareLine {
                    group: group.clone(),
                    file: meta.name.clone(),
                    size: meta.size,
                    path: id
                        .upload()
                        .and_then(|n| paths.shares.get(&n))
                        .map(|(p, _)| p.clone()),
                    served_pieces: served.pieces,
                    served_bytes: served.bytes,
                }
            })
            .collect();
        Snapshot {
            user: session.user().cloned(),
            tracker: session.tracker(),
            trackers: self.pins.addrs().to_vec(),
            tracker_up: session.is_up(),
            download_served: downloads
                .iter()
                .filter_map(|l| Some((l.dl, seeder.share_served(ShareId::Download(l.dl))?)))
                .collect(),
            downloads,
            shares,
            served_pieces: seeder.stats().served.pieces,
            served_bytes: seeder.stats().served.bytes,
            served_by_user: seeder
                .served_by_user()
                .iter()
                .map(|(u, s)| (u.clone(), s.pieces, s.bytes))
                .collect(),
            rates: self.node.rates(),
        }
    }

    /// Executes every output; then feeds what execution itself produced,
    /// one input at a time, draining after each.
    fn drain(&mut self) {
        loop {
            while let Some(o) = self.node.poll_output() {
                self.execute(o);
            }
            let Some(input) = self.later.pop_front() else {
                return;
            };
            self.node.handle_input(self.clock.now(), input);
        }
    }

    /// Runs one output. Never blocks and never calls the machine.
    fn execute(&mut self, o: cn::Output) {
        match o {
            cn::Output::TrackerConnect { conn, addr } => self.io.connect_tracker(conn, addr),
            cn::Output::TrackerSend { conn, frame } => {
                if let Some(w) = self.trackers.get(&conn) {
                    let mut b = BytesMut::new();
                    p2p_proto::encode_frame(&frame, &mut b);
                    w.send(b.freeze());
                }
            }
            cn::Output::TrackerClose { conn } => {
                if let Some(w) = self.trackers.remove(&conn) {
                    w.abort();
                }
            }
            cn::Output::PeerConnect { conn, addr } => self.io.connect_peer(conn, addr),
            cn::Output::PeerSend { conn, msg } => {
                if let PeerOut::Msg(PeerMsg::Request { .. }) = &msg {
                    trace::add(&trace::REQUESTS_SENT, 1);
                }
                let file = match &msg {
                    PeerOut::PieceFromFile { share, .. } => self.piece_source(*share),
                    _ => None,
                };
                if let Some(w) = self.peers.get(&conn) {
                    send_peer_msg(w, msg, file);
                }
            }
            cn::Output::PeerClose { conn } => {
                if let Some(w) = self.peers.remove(&conn) {
                    w.close();
                }
            }
            cn::Output::PrepareDest { dl, dest, meta } => {
                let path = self.paths.lock().expect("paths").dests.get(&dest).cloned();
                match path {
                    Some((dest, overwrite)) => self.io.disk(Job::Prepare {
                        dl,
                        dest,
                        meta,
                        direct_io: self.direct_io,
                        overwrite,
                    }),
                    None => self.later.push_back(cn::Input::DestFailed {
                        dl,
                        reason: Text::new("unknown destination"),
                    }),
                }
            }
            cn::Output::WritePiece {
                dl,
                index,
                offset,
                data,
            } => {
                if let Some(f) = self.dl_files.get(&dl) {
                    trace::disk_queued(data.len() as u64);
                    let job = Job::Write {
                        dl,
                        file: f.file.clone(),
                        direct: f.direct.clone(),
                        trim: f.trim.clone(),
                        record: f.record.clone(),
                        index,
                        offset,
                        data,
                    };
                    self.io.disk(job);
                }
            }
            cn::Output::Finalize { dl } => {
                if let Some(f) = self.dl_files.get(&dl) {
                    self.io.disk(Job::Finalize {
                        dl,
                        dir: f.dir.clone(),
                    });
                }
            }
            cn::Output::ReadPiece {
                conn,
                share,
                index,
                offset,
                len,
            } => match self.piece_source(share) {
                Some(file) => self.io.disk(Job::Serve {
                    conn,
                    file,
                    index,
                    offset,
                    len,
                }),
                None => self.later.push_back(cn::Input::ReadFailed { conn, index }),
            },
            cn::Output::Done { tag, result } => {
                let share_ok = matches!(result, Ok(CommandOk::Reply(_)));
                if let Some(reply) = self.pending.remove(&tag) {
                    let _ = reply.send(result);
                }
                if share_ok {
                    self.save_shares();
                }
            }
            cn::Output::PinTracker { index, key } => self.pins.pin(index, key),
            cn::Output::Event(e) => {
                let _ = self.events.send(e);
            }
        }
    }

    /// Writes the share table (off the loop) if it changed.
    fn save_shares(&mut self) {
        let bytes = disk::shares_bytes(&self.node, &self.paths);
        if bytes != self.saved_shares {
            self.saved_shares = bytes.clone();
            let dir = self.data_dir.clone();
            self.io.disk(Job::SaveShares { dir, bytes });
        }
    }

    /// The file a piece is served from: a download in progress (partial
    /// seeding) or a registered share.
    fn piece_source(&mut self, share: ShareId) -> Option<Arc<File>> {
        let n = match share {
            ShareId::Download(dl) => return self.dl_files.get(&dl).map(|f| f.file.clone()),
            ShareId::Upload(n) => n,
        };
        if let Some(f) = self.share_files.get(&n) {
            return Some(f.clone());
        }
        let path = self.paths.lock().expect("paths").shares.get(&n)?.0.clone();
        let f = Arc::new(File::open(path).ok()?);
        self.share_files.insert(n, f.clone());
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Mutex;

    /// A sink that keeps what it is given, part by part.
    #[derive(Default)]
    struct Parts(Mutex<Vec<Bytes>>);

    impl FrameSink for Parts {
        fn send(&self, frame: Bytes) -> bool {
            self.0.lock().unwrap().push(frame);
            true
        }
        fn send_parts(&self, head: Bytes, body: Bytes) -> bool {
            self.0.lock().unwrap().extend([head, body]);
            true
        }
        fn close(self) {}
        fn abort(&self) {}
    }

    #[test]
    fn a_piece_goes_out_as_the_encoder_frames_it_without_copying_its_data() {
        let data = Bytes::from(vec![5u8; 100_000]);
        let msg = PeerMsg::Piece {
            index: 42,
            data: data.clone(),
        };
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&msg, &mut want);
        let sink = Parts::default();
        send_peer_msg(&sink, PeerOut::Msg(msg), None);
        let parts = sink.0.into_inner().unwrap();
        assert_eq!(parts.concat(), want.to_vec());
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].as_ptr(), data.as_ptr(), "data queued as it is");
        // Anything else is one encoded frame.
        let sink = Parts::default();
        let other = PeerMsg::Cancel { index: 3 };
        send_peer_msg(&sink, PeerOut::Msg(other.clone()), None);
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&other, &mut want);
        assert_eq!(sink.0.into_inner().unwrap(), vec![want.freeze()]);
    }

    /// A piece in a file goes out framed exactly as the encoder frames
    /// the same piece from memory (this sink reads it, as the runtimes'
    /// writers do before encrypting it).
    #[test]
    fn a_piece_from_a_file_is_framed_like_one_from_memory() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share.bin");
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
        File::create(&path).unwrap().write_all(&bytes).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let (offset, len) = (1_000u64, 30_000u32);
        let msg = PeerOut::PieceFromFile {
            share: ShareId::Upload(1),
            index: 7,
            offset,
            len,
        };
        let sink = Parts::default();
        send_peer_msg(&sink, msg.clone(), Some(file));
        let data = Bytes::copy_from_slice(&bytes[1_000..31_000]);
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&PeerMsg::Piece { index: 7, data }, &mut want);
        assert_eq!(sink.0.into_inner().unwrap().concat(), want.to_vec());
        // The file is gone: nothing is sent.
        let sink = Parts::default();
        send_peer_msg(&sink, msg, None);
        assert!(sink.0.into_inner().unwrap().is_empty());
    }
}
