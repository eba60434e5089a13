//! The client driver's runtime-free half: options, the handle the CLI
//! holds, and [`Core`], which owns the [`ClientNode`] and executes its
//! outputs. A runtime supplies the plumbing through [`ClientIo`]
//! (connecting, a writer per connection, running disk [`Job`]s, and what
//! an open file is: the core holds none of its own, so the simulation
//! runs the same core over an in-memory disk) and runs the loop: wait
//! for the first of an [`Ev`] or the machine's deadline, then
//! [`Core::turn`]. The runtimes build the core from [`setup`]
//! ([`Core::new`]); the simulation from its parts ([`Core::from_parts`]).
//!
//! Piece data is hashed where it is read (the connection's reader, see
//! [`PeerSink`]: two pieces at once when they arrive back to back), so
//! verification never runs on the machine loop;
//! written at its offset in `<dest>.part` (through the page cache with
//! early writeback, [`disk::CacheTrim`], or with `O_DIRECT` if asked);
//! served from the shared file by the connection's writer, which reads
//! the range and encrypts it (`serve.rs`: a seeder's `Serve` becomes the
//! piece's frame head and file range queued on the connection, the
//! share's file opened off the loop first).
//!
//! Files: this one holds the options, what the loop receives, the
//! readers' inputs, [`setup`] and [`ClientIo`]; `handle.rs` the handle
//! ([`ClientHandle`], [`Commander`], [`Status`], [`Snapshot`]);
//! `core_loop.rs` [`Core`] (the loop's turn, events, output execution);
//! `serve.rs` the piece path on the sending side; `command.rs`; `disk/`.

pub mod command;
mod core_loop;
pub mod disk;
mod handle;
mod serve;

pub use core_loop::{Core, CoreParts};
pub use handle::{ClientHandle, Commander, ShareLine, Snapshot, Status};

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use p2p_proto::{PeerMsg, Sha1Hash};
use p2p_state::client::node::{
    self as cn, ClientConfig, ClientEvent, ClientNode, Command, CommandOk, PeerConnId,
};
use p2p_state::client::session::{ClientError, SessionConfig, SessionConn};
use p2p_state::download::DownloadConfig;
use p2p_state::hash::sha1;
use p2p_state::seeder::SeederConfig;

use crate::clock::Clock;
use crate::conn::{ConnEvent, EventSink, FileRange, FrameSink};
use crate::known_trackers::{KnownTrackers, Pinner, merge_pins};
use crate::tls::{Identity, KeyId, Tls};
use crate::trace;
pub use disk::{
    CacheTrim, DlFile, Job, JobDone, Paths, WriteMode, hash_file, hash_file_with_progress, run_job,
};

/// Disk jobs that run at once (worker threads, or blocking-pool tasks).
pub const DISK_WORKERS: usize = 4;

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
    /// How downloaded pieces reach the device ([`WriteMode`]; the
    /// default, `Auto`: `O_DIRECT` while the device keeps up, then the
    /// page cache with early writeback and dropped pages).
    pub write_mode: WriteMode,
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

/// What the machine loop receives (`P`, `F`: the file side's types, as in
/// [`Job`]; the defaults are the runtimes' real files).
pub enum Ev<W, P = Arc<DlFile>, F = Arc<File>> {
    Input(cn::Input),
    /// A connection is up and its TLS handshake done; `peer` is the key
    /// the other end proved it holds.
    TrackerUp {
        conn: SessionConn,
        writer: W,
        peer: KeyId,
    },
    PeerUp {
        conn: PeerConnId,
        writer: W,
        /// `Some(source address)` for a connection to our seeder port
        /// (the seeder's per-address limits count it), `None` for one we
        /// dialled.
        inbound: Option<IpAddr>,
        peer: KeyId,
    },
    Handle(HandleMsg),
    Disk(JobDone<P, F>),
}

/// What a [`Core`] over `R` receives.
pub type CoreEv<R> = Ev<<R as ClientIo>::Writer, <R as ClientIo>::Part, <R as ClientIo>::File>;

/// What a tracker connection's reader event means to the machine.
pub fn tracker_input(conn: SessionConn, ev: ConnEvent) -> cn::Input {
    match ev {
        ConnEvent::Frame(payload) => cn::Input::TrackerFrame { conn, payload },
        ConnEvent::BadFraming(_) | ConnEvent::Closed => cn::Input::TrackerClosed { conn },
    }
}

/// What a peer connection's reader event means to the machine: piece
/// frames are hashed right here, on the reader's thread or task.
pub fn peer_input(conn: PeerConnId, ev: ConnEvent) -> cn::Input {
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

/// A peer connection's reader events as the machine's inputs, handed to
/// `send` in order, the way [`peer_input`] makes them, with one
/// difference: piece frames are held until [`sha1_lanes::LANES`] of the
/// same length have arrived back to back (or another event comes, or a
/// piece of another length), then hashed together
/// ([`sha1_lanes::sha1_each`]: the rounds of up to four interleaved;
/// 2.0 GB/s for one piece alone, 3.7 for two, 5.0 for four, on one
/// core). The reader reads on without waiting while pieces are held
/// ([`EventSink::holding`]) and hands them over before it would wait, for
/// the socket or for the machine ([`EventSink::waiting`]): a piece is
/// never held while nothing else is arriving, so groups form only when
/// data is already waiting, which is when the reader is behind and the
/// saving counts.
pub struct PeerSink<S> {
    conn: PeerConnId,
    send: S,
    /// Pieces of one length, at most [`sha1_lanes::LANES`] - 1 between
    /// events.
    held: Vec<(u32, Bytes)>,
}

impl<S: FnMut(cn::Input) -> bool> PeerSink<S> {
    /// A sink for `conn`'s reader handing inputs to `send` (`false`:
    /// nobody listens any more).
    pub fn new(conn: PeerConnId, send: S) -> Self {
        PeerSink {
            conn,
            send,
            held: Vec::with_capacity(sha1_lanes::LANES),
        }
    }

    /// Hashes the pieces held, together, and hands them over in order.
    fn flush(&mut self) -> bool {
        if self.held.is_empty() {
            return true;
        }
        let digests = {
            let data: Vec<&[u8]> = self.held.iter().map(|(_, d)| &d[..]).collect();
            sha1_lanes::sha1_each(&data)
        };
        let n = digests.len() as u64;
        trace::add(&trace::PIECES_HASHED, n);
        if n > 1 {
            trace::add(&trace::PIECES_BATCHED, n);
            trace::add(&trace::HASH_BATCHES, 1);
        }
        let mut ok = true;
        for ((index, data), sha1) in self.held.drain(..).zip(digests) {
            ok = ok
                && (self.send)(cn::Input::PeerPiece {
                    conn: self.conn,
                    index,
                    sha1: Sha1Hash(sha1),
                    data,
                });
        }
        ok
    }
}

impl<S: FnMut(cn::Input) -> bool> EventSink for PeerSink<S> {
    fn event(&mut self, e: ConnEvent) -> bool {
        if let ConnEvent::Frame(payload) = &e
            && let Some((index, data)) = PeerMsg::split_piece(payload)
        {
            let mut ok = true;
            if self
                .held
                .first()
                .is_some_and(|(_, h)| h.len() != data.len())
            {
                ok = self.flush();
            }
            self.held.push((index, data));
            if self.held.len() == sha1_lanes::LANES {
                ok = self.flush() && ok;
            }
            return ok;
        }
        self.flush() && (self.send)(peer_input(self.conn, e))
    }

    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn waiting(&mut self) -> bool {
        self.flush()
    }
}

/// A client ready to run: the machine with its share table loaded, and
/// what the handle keeps.
pub struct Setup {
    node: ClientNode,
    tls: Tls,
    pins: Pinner,
    clock: Clock,
    data_dir: PathBuf,
    write_mode: WriteMode,
    window: usize,
    events: Sender<ClientEvent>,
    handle: HandleParts,
}

/// What [`ClientHandle::new`] takes from [`setup`].
pub struct HandleParts {
    paths: Arc<Mutex<Paths>>,
    seeder_addr: SocketAddr,
    events: Receiver<ClientEvent>,
}

impl Setup {
    /// The TLS configurations of the client's identity (built once).
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }
}

/// Loads (or makes) the identity in the data directory, binds the seeder
/// port, builds the machine and loads the share table.
pub fn setup(opts: ClientOptions) -> io::Result<(Setup, TcpListener)> {
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
    let window = download.max_parallel;
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
    let p = Setup {
        node,
        tls: identity.tls(),
        pins: Pinner::new(known, opts.trackers.clone()),
        clock,
        data_dir: opts.data_dir,
        write_mode: opts.write_mode,
        window,
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
///
/// The file side is here too, so that the [`Core`] never holds a real
/// file: `Part` is an open download destination and `File` an open file
/// pieces are served from, both made by disk jobs and used by the jobs
/// and the writers. The runtimes' are real files (`Arc<DlFile>`,
/// `Arc<File>`, read by the connection's writer, [`FrameSink::send_file`]);
/// the simulation's are on its in-memory disk.
pub trait ClientIo {
    type Writer: FrameSink;
    /// An open download destination (the runtimes': `Arc<DlFile>`).
    type Part: Clone;
    /// An open file a piece is served from (the runtimes': `Arc<File>`).
    type File: Clone;
    /// Connects to a tracker: `Ev::TrackerUp`, then the reader's inputs
    /// ([`tracker_input`]); or `TrackerConnectFailed`.
    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr);
    /// Connects to a peer's seeder: `Ev::PeerUp { inbound: false }`, then
    /// the reader's inputs ([`peer_input`]); or `PeerConnectFailed`.
    fn connect_peer(&mut self, conn: PeerConnId, addr: SocketAddr);
    /// Runs a job off the loop ([`run_job`]) and reports `Ev::Disk`
    /// (unless it is [`JobDone::Nothing`]).
    fn disk(&mut self, job: Job<Self::Part, Self::File>);
    /// The file a download's pieces are served from (its part file).
    fn part_file(part: &Self::Part) -> Self::File;
    /// Queues on `w` one frame: `head`, then the file range (a piece
    /// served from disk; the runtimes: [`FrameSink::send_file`]). `false`
    /// if the writer has gone.
    fn send_file(w: &Self::Writer, head: Bytes, range: FileRange<Self::File>) -> bool;
}

#[cfg(test)]
mod peer_sink_tests {
    use super::*;
    use p2p_proto::Wire;

    fn piece(index: u32, len: usize) -> (Bytes, Bytes) {
        let data = Bytes::from(
            (0..len)
                .map(|i| (i as u32 * 31 + index) as u8)
                .collect::<Vec<u8>>(),
        );
        let payload = PeerMsg::Piece {
            index,
            data: data.clone(),
        }
        .to_bytes();
        (payload, data)
    }

    /// What the sink handed over, as (piece index, its hash) or the
    /// other input's name.
    fn seen(inputs: &[cn::Input]) -> Vec<String> {
        inputs
            .iter()
            .map(|i| match i {
                cn::Input::PeerPiece {
                    index,
                    sha1: h,
                    data,
                    ..
                } => {
                    assert_eq!(*h, sha1(data), "piece {index} hashed right");
                    format!("piece {index}")
                }
                cn::Input::PeerFrame { .. } => "frame".into(),
                cn::Input::PeerClosed { .. } => "closed".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Pieces are handed over in order with the right hashes, whether
    /// they went four at a time (same length, back to back), in a smaller
    /// group (a shorter last piece, pieces before another frame), or were
    /// held until the reader was about to wait; other events flush the
    /// pieces held before them.
    #[test]
    fn pieces_group_up_and_keep_their_order() {
        let out = std::cell::RefCell::new(Vec::new());
        let conn = PeerConnId::Outbound(7);
        let mut sink = PeerSink::new(conn, |i| {
            out.borrow_mut().push(i);
            true
        });
        let p = |i| piece(i, 4096).0;
        let short = piece(9, 100).0;
        let have = PeerMsg::HavePiece { index: 9 }.to_bytes();
        assert!(!sink.holding());
        for i in 0..3 {
            assert!(sink.event(ConnEvent::Frame(p(i))));
            assert!(sink.holding(), "piece {i} waits for the group to fill");
        }
        assert!(out.borrow().is_empty());
        assert!(sink.event(ConnEvent::Frame(p(3))));
        assert!(!sink.holding(), "a full group goes at once");
        assert_eq!(
            seen(&out.borrow()),
            ["piece 0", "piece 1", "piece 2", "piece 3"]
        );
        assert!(sink.event(ConnEvent::Frame(p(4))));
        assert!(sink.event(ConnEvent::Frame(p(5))));
        assert!(sink.event(ConnEvent::Frame(short.clone())));
        assert!(sink.holding(), "the short piece waits");
        assert_eq!(seen(&out.borrow())[4..], ["piece 4", "piece 5"]);
        assert!(sink.event(ConnEvent::Frame(have)));
        assert_eq!(seen(&out.borrow())[6..], ["piece 9", "frame"]);
        assert!(sink.event(ConnEvent::Frame(p(6))));
        assert!(sink.event(ConnEvent::Frame(p(7))));
        assert!(sink.waiting(), "about to wait: the held pieces go");
        assert!(!sink.holding());
        assert_eq!(seen(&out.borrow())[8..], ["piece 6", "piece 7"]);
        assert!(sink.event(ConnEvent::Frame(p(8))));
        assert!(sink.event(ConnEvent::Closed));
        assert_eq!(seen(&out.borrow())[10..], ["piece 8", "closed"]);
    }

    /// A sink whose listener has gone says so, held piece or not.
    #[test]
    fn a_gone_listener_stops_the_reader() {
        let mut sink = PeerSink::new(PeerConnId::Outbound(1), |_| false);
        assert!(sink.event(ConnEvent::Frame(piece(0, 64).0)), "only held");
        assert!(!sink.waiting());
        for i in 1..4 {
            assert!(sink.event(ConnEvent::Frame(piece(i, 64).0)), "only held");
        }
        assert!(!sink.event(ConnEvent::Frame(piece(4, 64).0)));
    }
}
