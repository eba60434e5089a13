//! The client driver on std threads: one machine thread owns the
//! [`ClientNode`]; connection threads (from [`crate::conn`]) move frames;
//! a small pool of disk workers does positioned reads and writes, hashing
//! and renames; the caller (the CLI) sends commands and waits for answers.
//!
//! Piece data is hashed on the reader thread of the connection it arrived
//! on (so verification uses every core), written with `pwrite` at its
//! offset in `<dest>.part`, and served with `pread` from the shared file.
//! The record of verified pieces lives beside the part file in
//! `<dest>.part.pieces`; on resume every piece it claims is re-hashed, so a
//! torn record can cost a piece, never a wrong byte.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use p2p_proto::{FileMeta, FrameDecoder, GroupName, PeerMsg, PieceSet, Text, Wire};
use p2p_state::client::node::{
    self as cn, ClientConfig, ClientEvent, ClientNode, Command, CommandOk, PeerOut,
};
use p2p_state::client::session::{ClientError, CommandTag, SessionConfig, SessionConn};
use p2p_state::download::DownloadConfig;
use p2p_state::hash::{Sha1Stream, sha1};
use p2p_state::seeder::{SeederConfig, ShareId};

use crate::clock::Clock;
use crate::conn::{self, ConnEvent, ConnWriter, Listener};

/// Disk worker threads (reads, writes, hashing).
pub const DISK_WORKERS: usize = 2;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Trackers in `tracker_info.txt` order, and which to try first.
    pub trackers: Vec<SocketAddr>,
    pub first: usize,
    /// Where the seeder listens; port 0 picks a free port.
    pub listen: SocketAddr,
    pub max_parallel: Option<usize>,
    /// Holds the table of shared files.
    pub data_dir: PathBuf,
}

/// A file of this client's shares, re-announced after a restart.
const SHARES_FILE: &str = "shares";

/// Events into the machine thread.
enum Ev {
    Input(cn::Input),
    TrackerUp {
        conn: SessionConn,
        writer: ConnWriter,
    },
    PeerUp {
        conn: u64,
        writer: ConnWriter,
        inbound: bool,
    },
    Cmd {
        cmd: Command,
        reply: Sender<Result<CommandOk, ClientError>>,
    },
    Query(Sender<Status>),
    /// A destination was opened (and its claimed pieces re-verified).
    Prepared {
        dl: u64,
        file: Box<DlFile>,
        have: PieceSet,
    },
    Stop,
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

/// Paths behind the machine's ids.
#[derive(Default)]
struct Paths {
    shares: BTreeMap<u64, (PathBuf, GroupName)>,
    dests: BTreeMap<u64, PathBuf>,
    next: u64,
}

/// A running client.
pub struct ClientHandle {
    tx: Sender<Ev>,
    paths: Arc<Mutex<Paths>>,
    seeder_addr: SocketAddr,
    machine: Option<JoinHandle<()>>,
    events: Option<Receiver<ClientEvent>>,
}

impl ClientHandle {
    pub fn seeder_addr(&self) -> SocketAddr {
        self.seeder_addr
    }

    /// Lines the user should see that no command asked for.
    pub fn take_events(&mut self) -> Receiver<ClientEvent> {
        self.events.take().expect("events taken once")
    }

    /// Runs a command and waits for its answer.
    pub fn run(&self, cmd: Command) -> Result<CommandOk, ClientError> {
        let (reply, rx) = mpsc::channel();
        if self.tx.send(Ev::Cmd { cmd, reply }).is_err() {
            return Err(ClientError::Busy);
        }
        rx.recv().unwrap_or(Err(ClientError::Busy))
    }

    /// Registers a file to share: returns the id to put in `Command::Share`.
    pub fn share_id(&self, path: &Path, group: &GroupName) -> ShareId {
        let mut p = self.paths.lock().expect("paths");
        p.next += 1;
        let id = p.next;
        p.shares.insert(id, (path.to_path_buf(), group.clone()));
        ShareId(id)
    }

    /// Registers a download destination: returns its id.
    pub fn dest_id(&self, path: &Path) -> u64 {
        let mut p = self.paths.lock().expect("paths");
        p.next += 1;
        let id = p.next;
        p.dests.insert(id, path.to_path_buf());
        id
    }

    pub fn status(&self) -> Option<Status> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(Ev::Query(tx)).ok()?;
        rx.recv().ok()
    }

    /// Stops the machine thread (connections close with it).
    pub fn stop(mut self) {
        let _ = self.tx.send(Ev::Stop);
        if let Some(t) = self.machine.take() {
            let _ = t.join();
        }
    }
}

/// Hashes a file in pieces, on every core, reading with `pread`.
pub fn hash_file(path: &Path, piece_len: u32) -> io::Result<FileMeta> {
    hash_file_with_progress(path, piece_len, &|_| {})
}

/// [`hash_file`], calling `progress` with the bytes hashed so far (from the
/// hashing threads, about once per piece).
pub fn hash_file_with_progress(
    path: &Path,
    piece_len: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileMeta> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let name = p2p_proto::FileName::new(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let n = FileMeta::pieces_for(size, piece_len) as usize;
    if size > p2p_proto::limits::FILE_LEN_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file too large to share (12 GiB at most)",
        ));
    }
    let workers = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(n.max(1));
    let per = n.div_ceil(workers.max(1)).max(1);
    let mut piece_hashes = vec![p2p_proto::Sha1Hash::default(); n];
    let done = std::sync::atomic::AtomicU64::new(0);
    let done = &done;
    thread::scope(|s| -> io::Result<()> {
        let mut jobs = Vec::new();
        for (w, out) in piece_hashes.chunks_mut(per).enumerate() {
            let file = &file;
            jobs.push(s.spawn(move || -> io::Result<()> {
                let mut buf = vec![0u8; piece_len as usize];
                for (k, h) in out.iter_mut().enumerate() {
                    let i = (w * per + k) as u64;
                    let off = i * piece_len as u64;
                    let len = (size - off).min(piece_len as u64) as usize;
                    file.read_exact_at(&mut buf[..len], off)?;
                    *h = sha1(&buf[..len]);
                    done.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                    progress(done.load(std::sync::atomic::Ordering::Relaxed));
                }
                Ok(())
            }));
        }
        for j in jobs {
            j.join()
                .map_err(|_| io::Error::other("hashing thread panicked"))??;
        }
        Ok(())
    })?;
    // The whole-file hash needs the bytes in order: one more pass.
    let file_hash = hash_whole(&file, size)?;
    Ok(FileMeta {
        name,
        size,
        piece_len,
        piece_hashes,
        file_hash,
    })
}

fn hash_whole(file: &File, size: u64) -> io::Result<p2p_proto::Sha1Hash> {
    let mut s = Sha1Stream::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let len = (size - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..len], off)?;
        s.update(&buf[..len]);
        off += len as u64;
    }
    Ok(s.finish())
}

/// Starts the client: binds the seeder port, loads the share table, starts
/// the machine thread (which connects to the first tracker).
pub fn start(opts: ClientOptions) -> io::Result<ClientHandle> {
    fs::create_dir_all(&opts.data_dir)?;
    let listener = TcpListener::bind(opts.listen)?;
    let mut seeder_addr = listener.local_addr()?;
    if seeder_addr.ip().is_unspecified() {
        seeder_addr.set_ip(advertised_ip(&opts.trackers));
    }
    let (tx, rx) = mpsc::channel();
    let (ev_tx, ev_rx) = mpsc::channel();
    let mut download = DownloadConfig::default();
    if let Some(n) = opts.max_parallel {
        download.max_parallel = n.max(1);
    }
    let cfg = ClientConfig {
        session: SessionConfig::new(opts.trackers.clone(), opts.first),
        seeder: SeederConfig::default(),
        download,
        seeder_addr: Some(seeder_addr),
    };
    let clock = Clock::new();
    let seed = seed();
    let mut node = ClientNode::new(cfg, seed, clock.now());
    let paths = Arc::new(Mutex::new(Paths {
        next: 1 << 32,
        ..Paths::default()
    }));
    load_shares(&opts.data_dir, &mut node, &paths);
    let accept_tx = tx.clone();
    let listener = Listener::spawn(listener, move |stream, _peer| {
        let conn = conn::next_conn_id();
        let Ok(writer) = ConnWriter::spawn(conn, &stream) else {
            return;
        };
        // Register the connection before its reader can report anything.
        let _ = accept_tx.send(Ev::PeerUp {
            conn,
            writer,
            inbound: true,
        });
        let sink = peer_sink(accept_tx.clone(), conn);
        if conn::spawn_reader(conn, stream, FrameDecoder::default(), sink).is_err() {
            let _ = accept_tx.send(Ev::Input(cn::Input::PeerClosed { conn }));
        }
    })?;
    let disk = DiskPool::start(tx.clone());
    let mut m = Machine {
        node,
        clock,
        tx: tx.clone(),
        trackers: BTreeMap::new(),
        peers: BTreeMap::new(),
        pending: BTreeMap::new(),
        next_tag: 1,
        paths: paths.clone(),
        dl_files: BTreeMap::new(),
        share_files: BTreeMap::new(),
        disk,
        events: ev_tx,
        data_dir: opts.data_dir.clone(),
    };
    let machine = thread::Builder::new()
        .name("client".into())
        .spawn(move || {
            m.run(rx);
            listener.stop();
        })?;
    Ok(ClientHandle {
        tx,
        paths,
        seeder_addr,
        machine: Some(machine),
        events: Some(ev_rx),
    })
}

/// The local address that reaches the first reachable tracker (what peers
/// should dial), or loopback.
fn advertised_ip(trackers: &[SocketAddr]) -> std::net::IpAddr {
    for t in trackers {
        if let Ok(s) =
            std::net::TcpStream::connect_timeout(t, std::time::Duration::from_millis(500))
            && let Ok(a) = s.local_addr()
        {
            return a.ip();
        }
    }
    std::net::Ipv4Addr::LOCALHOST.into()
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// A reader sink for a peer connection: piece frames are hashed right here,
/// on the reader's thread.
fn peer_sink(tx: Sender<Ev>, conn: u64) -> impl FnMut(ConnEvent) -> bool + Send + 'static {
    move |ev| {
        let input = match ev {
            ConnEvent::Frame(payload) => match PeerMsg::split_piece(&payload) {
                Some((index, data)) => cn::Input::PeerPiece {
                    conn,
                    index,
                    sha1: sha1(&data),
                    data,
                },
                None => cn::Input::PeerFrame { conn, payload },
            },
            ConnEvent::BadFraming(_) | ConnEvent::Closed => cn::Input::PeerClosed { conn },
        };
        tx.send(Ev::Input(input)).is_ok()
    }
}

fn tracker_sink(
    tx: Sender<Ev>,
    conn: SessionConn,
) -> impl FnMut(ConnEvent) -> bool + Send + 'static {
    move |ev| {
        let input = match ev {
            ConnEvent::Frame(payload) => cn::Input::TrackerFrame { conn, payload },
            ConnEvent::BadFraming(_) | ConnEvent::Closed => cn::Input::TrackerClosed { conn },
        };
        tx.send(Ev::Input(input)).is_ok()
    }
}

/// Hands a fresh connection to the machine thread: its writer first (so
/// the machine knows the connection before anything is read from it),
/// then its reader.
fn attach<S>(
    tx: &Sender<Ev>,
    stream: std::net::TcpStream,
    id: conn::ConnId,
    up: impl FnOnce(ConnWriter) -> Ev,
    sink: S,
    failed: Ev,
    closed: Ev,
) where
    S: FnMut(ConnEvent) -> bool + Send + 'static,
{
    let Ok(writer) = ConnWriter::spawn(id, &stream) else {
        let _ = tx.send(failed);
        return;
    };
    let _ = tx.send(up(writer));
    if conn::spawn_reader(id, stream, FrameDecoder::default(), sink).is_err() {
        let _ = tx.send(closed);
    }
}

/// The share table on disk: one line per share, `group \t path \t meta hex`.
fn load_shares(dir: &Path, node: &mut ClientNode, paths: &Arc<Mutex<Paths>>) {
    let Ok(text) = fs::read_to_string(dir.join(SHARES_FILE)) else {
        return;
    };
    let mut p = paths.lock().expect("paths");
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(g), Some(path), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(group), Some(bytes)) = (GroupName::new(g), unhex(hex)) else {
            continue;
        };
        let Ok(meta) = FileMeta::from_bytes(Bytes::from(bytes)) else {
            continue;
        };
        let path = PathBuf::from(path);
        // A file that changed since it was shared is not served.
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(meta.size) {
            tracing::warn!(
                "{} changed since it was shared; not serving it",
                path.display()
            );
            continue;
        }
        p.next += 1;
        let id = p.next;
        if node.add_local_share(ShareId(id), group.clone(), meta) {
            p.shares.insert(id, (path, group));
        }
    }
}

fn save_shares(dir: &Path, node: &ClientNode, paths: &Arc<Mutex<Paths>>) {
    let p = paths.lock().expect("paths");
    let mut out = String::new();
    for (id, (group, meta)) in node.shares() {
        if let Some((path, _)) = p.shares.get(&id.0) {
            let hex: String = meta.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!("{group}\t{}\t{hex}\n", path.display()));
        }
    }
    let tmp = dir.join(format!("{SHARES_FILE}.tmp"));
    if fs::write(&tmp, out)
        .and_then(|_| fs::rename(&tmp, dir.join(SHARES_FILE)))
        .is_err()
    {
        tracing::warn!("could not save the share table in {}", dir.display());
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// An open download destination.
struct DlFile {
    file: Arc<File>,
    part: PathBuf,
    dest: PathBuf,
    record: Arc<Mutex<(File, PieceSet)>>,
}

/// Disk work off the machine thread.
enum Job {
    Prepare {
        dl: u64,
        dest: PathBuf,
        meta: FileMeta,
    },
    Write {
        dl: u64,
        file: Arc<File>,
        record: Arc<Mutex<(File, PieceSet)>>,
        index: u32,
        offset: u64,
        data: Bytes,
    },
    Hash {
        dl: u64,
        file: Arc<File>,
        size: u64,
    },
    Finalize {
        dl: u64,
        part: PathBuf,
        dest: PathBuf,
    },
    Read {
        conn: u64,
        file: Arc<File>,
        index: u32,
        offset: u64,
        len: u32,
    },
}

struct DiskPool {
    tx: Sender<Job>,
}

impl DiskPool {
    fn start(events: Sender<Ev>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..DISK_WORKERS {
            let rx = rx.clone();
            let events = events.clone();
            let _ = thread::Builder::new()
                .name(format!("disk-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock().expect("disk queue").recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        if events.send(run_job(job)).is_err() {
                            return;
                        }
                    }
                });
        }
        DiskPool { tx }
    }

    fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

fn text(e: impl std::fmt::Display) -> Text {
    Text::new(e.to_string())
}

fn run_job(job: Job) -> Ev {
    match job {
        Job::Prepare { dl, dest, meta } => match prepare_dest(&dest, &meta) {
            Ok((file, have)) => Ev::Prepared {
                dl,
                file: Box::new(file),
                have,
            },
            Err(e) => Ev::Input(cn::Input::DestFailed {
                dl,
                reason: text(format!("{}: {e}", dest.display())),
            }),
        },
        Job::Write {
            dl,
            file,
            record,
            index,
            offset,
            data,
        } => {
            let r = file.write_all_at(&data, offset).and_then(|_| {
                let mut rec = record.lock().expect("record");
                rec.1.insert(index);
                let bytes = rec.1.to_bytes();
                rec.0.write_all_at(&bytes, 0)
            });
            Ev::Input(match r {
                Ok(()) => cn::Input::PieceWritten { dl, index },
                Err(e) => cn::Input::WriteFailed {
                    dl,
                    index,
                    reason: text(e),
                },
            })
        }
        Job::Hash { dl, file, size } => match hash_whole(&file, size) {
            Ok(hash) => Ev::Input(cn::Input::FileHashed { dl, hash }),
            Err(e) => Ev::Input(cn::Input::FinalizeFailed {
                dl,
                reason: text(e),
            }),
        },
        Job::Finalize { dl, part, dest } => {
            let record = record_path(&part);
            Ev::Input(match fs::rename(&part, &dest) {
                Ok(()) => {
                    let _ = fs::remove_file(record);
                    cn::Input::Finalized { dl }
                }
                Err(e) => cn::Input::FinalizeFailed {
                    dl,
                    reason: text(e),
                },
            })
        }
        Job::Read {
            conn,
            file,
            index,
            offset,
            len,
        } => {
            let mut buf = vec![0u8; len as usize];
            Ev::Input(match file.read_exact_at(&mut buf, offset) {
                Ok(()) => cn::Input::PieceRead {
                    conn,
                    index,
                    data: Bytes::from(buf),
                },
                Err(_) => cn::Input::ReadFailed { conn, index },
            })
        }
    }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn record_path(part: &Path) -> PathBuf {
    let mut s = part.as_os_str().to_owned();
    s.push(".pieces");
    PathBuf::from(s)
}

/// Opens or creates `<dest>.part` and its record; re-hashes every piece the
/// record claims, keeping only those that verify.
fn prepare_dest(dest: &Path, meta: &FileMeta) -> io::Result<(DlFile, PieceSet)> {
    let part = part_path(dest);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part)?;
    if file.metadata()?.len() != meta.size {
        file.set_len(meta.size)?;
    }
    let rec_path = record_path(&part);
    let rec = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&rec_path)?;
    let claimed = fs::read(&rec_path)
        .ok()
        .and_then(|b| PieceSet::from_bytes(Bytes::from(b)).ok())
        .filter(|s| s.len() == meta.piece_count())
        .unwrap_or_else(|| PieceSet::empty(meta.piece_count()));
    let mut have = PieceSet::empty(meta.piece_count());
    let mut buf = vec![0u8; meta.piece_len as usize];
    for i in claimed.iter() {
        let len = meta.piece_size(i) as usize;
        if file
            .read_exact_at(&mut buf[..len], meta.piece_offset(i))
            .is_ok()
            && sha1(&buf[..len]) == meta.piece_hashes[i as usize]
        {
            have.insert(i);
        }
    }
    rec.set_len(0)?;
    rec.write_all_at(&have.to_bytes(), 0)?;
    let dl = DlFile {
        file: Arc::new(file),
        part,
        dest: dest.to_path_buf(),
        record: Arc::new(Mutex::new((rec, have.clone()))),
    };
    Ok((dl, have))
}

/// The machine thread's state.
struct Machine {
    node: ClientNode,
    clock: Clock,
    tx: Sender<Ev>,
    trackers: BTreeMap<SessionConn, ConnWriter>,
    peers: BTreeMap<u64, ConnWriter>,
    pending: BTreeMap<CommandTag, Sender<Result<CommandOk, ClientError>>>,
    next_tag: CommandTag,
    paths: Arc<Mutex<Paths>>,
    dl_files: BTreeMap<u64, DlFile>,
    share_files: BTreeMap<u64, Arc<File>>,
    disk: DiskPool,
    events: Sender<ClientEvent>,
    data_dir: PathBuf,
}

impl Machine {
    fn run(&mut self, rx: Receiver<Ev>) {
        self.drain();
        loop {
            let ev = match self.node.poll_timeout() {
                Some(deadline) => match rx.recv_timeout(self.clock.until(deadline)) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(ev) => Some(ev),
                    Err(_) => return,
                },
            };
            let now = self.clock.now();
            match ev {
                None => self.node.handle_timeout(now),
                Some(Ev::Stop) => return,
                Some(ev) => self.on_event(ev),
            }
            if self
                .node
                .poll_timeout()
                .is_some_and(|t| t <= self.clock.now())
            {
                self.node.handle_timeout(self.clock.now());
            }
            self.drain();
        }
    }

    fn on_event(&mut self, ev: Ev) {
        let now = self.clock.now();
        match ev {
            Ev::Input(input) => self.node.handle_input(now, input),
            Ev::TrackerUp { conn, writer } => {
                self.trackers.insert(conn, writer);
                self.node
                    .handle_input(now, cn::Input::TrackerConnected { conn });
            }
            Ev::PeerUp {
                conn,
                writer,
                inbound,
            } => {
                self.peers.insert(conn, writer);
                let input = if inbound {
                    cn::Input::PeerAccepted { conn }
                } else {
                    cn::Input::PeerConnected { conn }
                };
                self.node.handle_input(now, input);
            }
            Ev::Prepared { dl, file, have } => {
                self.dl_files.insert(dl, *file);
                self.node
                    .handle_input(now, cn::Input::DestReady { dl, have });
            }
            Ev::Cmd { cmd, reply } => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.pending.insert(tag, reply);
                if let Command::Share { share, .. } = &cmd
                    && let Some((path, _)) = self.paths.lock().expect("paths").shares.get(&share.0)
                    && let Ok(f) = File::open(path)
                {
                    self.share_files.insert(share.0, Arc::new(f));
                }
                self.node.handle_input(now, cn::Input::Command { tag, cmd });
            }
            Ev::Query(reply) => {
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
            Ev::Stop => {}
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            self.execute(o);
        }
    }

    fn execute(&mut self, o: cn::Output) {
        match o {
            cn::Output::TrackerConnect { conn, addr } => self.dial(addr, move |tx, res| {
                let failed = Ev::Input(cn::Input::TrackerConnectFailed { conn });
                let closed = Ev::Input(cn::Input::TrackerClosed { conn });
                match res {
                    Ok((stream, id)) => attach(
                        tx,
                        stream,
                        id,
                        |writer| Ev::TrackerUp { conn, writer },
                        tracker_sink(tx.clone(), conn),
                        failed,
                        closed,
                    ),
                    Err(_) => {
                        let _ = tx.send(failed);
                    }
                }
            }),
            cn::Output::TrackerSend { conn, frame } => {
                if let Some(w) = self.trackers.get(&conn) {
                    let mut b = bytes::BytesMut::new();
                    p2p_proto::encode_frame(&frame, &mut b);
                    w.send(b.freeze());
                }
            }
            cn::Output::TrackerClose { conn } => {
                if let Some(w) = self.trackers.remove(&conn) {
                    w.abort();
                }
            }
            cn::Output::PeerConnect { conn, addr } => self.dial(addr, move |tx, res| {
                let failed = Ev::Input(cn::Input::PeerConnectFailed { conn });
                let closed = Ev::Input(cn::Input::PeerClosed { conn });
                match res {
                    Ok((stream, id)) => {
                        let up = |writer| Ev::PeerUp {
                            conn,
                            writer,
                            inbound: false,
                        };
                        attach(
                            tx,
                            stream,
                            id,
                            up,
                            peer_sink(tx.clone(), conn),
                            failed,
                            closed,
                        )
                    }
                    Err(_) => {
                        let _ = tx.send(failed);
                    }
                }
            }),
            cn::Output::PeerSend { conn, msg } => {
                if let Some(w) = self.peers.get(&conn) {
                    let mut b = bytes::BytesMut::new();
                    match msg {
                        PeerOut::Hello(h) => p2p_proto::encode_msg(&h, &mut b),
                        PeerOut::Msg(m) => p2p_proto::encode_msg(&m, &mut b),
                    }
                    w.send(b.freeze());
                }
            }
            cn::Output::PeerClose { conn } => {
                if let Some(w) = self.peers.remove(&conn) {
                    drop(w.close());
                }
            }
            cn::Output::PrepareDest { dl, dest, meta } => {
                let path = self.paths.lock().expect("paths").dests.get(&dest).cloned();
                match path {
                    Some(dest) => self.disk.submit(Job::Prepare { dl, dest, meta }),
                    None => {
                        let now = self.clock.now();
                        let reason = Text::new("unknown destination");
                        self.node
                            .handle_input(now, cn::Input::DestFailed { dl, reason });
                    }
                }
            }
            cn::Output::WritePiece {
                dl,
                index,
                offset,
                data,
            } => {
                if let Some(f) = self.dl_files.get(&dl) {
                    let job = Job::Write {
                        dl,
                        file: f.file.clone(),
                        record: f.record.clone(),
                        index,
                        offset,
                        data,
                    };
                    self.disk.submit(job);
                }
            }
            cn::Output::HashFile { dl } => {
                if let Some(f) = self.dl_files.get(&dl) {
                    let size = f.file.metadata().map(|m| m.len()).unwrap_or(0);
                    self.disk.submit(Job::Hash {
                        dl,
                        file: f.file.clone(),
                        size,
                    });
                }
            }
            cn::Output::Finalize { dl } => {
                if let Some(f) = self.dl_files.get(&dl) {
                    self.disk.submit(Job::Finalize {
                        dl,
                        part: f.part.clone(),
                        dest: f.dest.clone(),
                    });
                }
            }
            cn::Output::ReadPiece {
                conn,
                share,
                index,
                offset,
                len,
            } => {
                let file = if share.0 >= cn::OUTBOUND {
                    self.dl_files
                        .get(&(share.0 & !cn::OUTBOUND))
                        .map(|f| f.file.clone())
                } else {
                    self.share_files
                        .get(&share.0)
                        .cloned()
                        .or_else(|| self.open_share(share.0))
                };
                match file {
                    Some(file) => self.disk.submit(Job::Read {
                        conn,
                        file,
                        index,
                        offset,
                        len,
                    }),
                    None => {
                        let now = self.clock.now();
                        self.node
                            .handle_input(now, cn::Input::ReadFailed { conn, index });
                    }
                }
            }
            cn::Output::Done { tag, result } => {
                let share_ok = matches!(result, Ok(CommandOk::Reply(_)));
                if let Some(reply) = self.pending.remove(&tag) {
                    let _ = reply.send(result);
                }
                if share_ok {
                    save_shares(&self.data_dir, &self.node, &self.paths);
                }
            }
            cn::Output::Event(e) => {
                let _ = self.events.send(e);
            }
        }
    }

    fn open_share(&mut self, id: u64) -> Option<Arc<File>> {
        let path = self.paths.lock().expect("paths").shares.get(&id)?.0.clone();
        let f = Arc::new(File::open(path).ok()?);
        self.share_files.insert(id, f.clone());
        Some(f)
    }

    /// Connects on a short-lived thread; `then` runs there with the result.
    fn dial<F>(&self, addr: SocketAddr, then: F)
    where
        F: FnOnce(&Sender<Ev>, io::Result<(std::net::TcpStream, conn::ConnId)>) + Send + 'static,
    {
        let tx = self.tx.clone();
        let _ = thread::Builder::new().name("dial".into()).spawn(move || {
            let r = conn::dial(addr, conn::DIAL_TIMEOUT).map(|s| (s, conn::next_conn_id()));
            then(&tx, r);
        });
    }
}
