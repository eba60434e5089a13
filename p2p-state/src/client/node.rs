//! The client machine a driver runs: the tracker session, the seeder, and
//! one download machine per `download_file`, wired together.
//!
//! It owns every decision that spans them: re-announcing shares and the
//! seeder address after login or failover, starting a download from the
//! tracker's metadata, turning verified pieces into seeder pieces and
//! tracker announcements, routing peer connections (outbound ones belong to
//! a download, inbound ones to the seeder). The driver only moves bytes,
//! hashes piece data (off the machine's thread), reads and writes files.
//!
//! Connection ids: the driver numbers inbound peer connections below
//! [`OUTBOUND`]; this machine numbers the outbound ones from [`OUTBOUND`] up.
//! Share ids: uploads use ids the driver picks below [`OUTBOUND`] (it keeps
//! their paths); a download's partial file is share `OUTBOUND | download`.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use p2p_proto::{
    FileMeta, FileName, GroupName, Hello, KeyId, PeerMsg, PieceSet, Reply, Request, Role, Sha1Hash,
    Text, Wire,
};

use super::session::{
    self, ClientError, ClientSession, CommandTag, SessionConfig, SessionConn, SessionEvent,
    SessionInput, SessionOutput,
};
use crate::download::{self, Download, DownloadConfig, DownloadState, PeerId, Progress};
use crate::machine::{Child, Outbox, impl_machine};
use crate::rate::TokenBucket;
use crate::seeder::{self, ConnId, Seeder, SeederConfig, ShareId};
use crate::time::Instant;

/// Ids at or above this are the machine's own (outbound connections,
/// download shares); the driver's are below.
pub const OUTBOUND: u64 = 1 << 63;

/// A download's number.
pub type DlId = u64;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub session: SessionConfig,
    pub seeder: SeederConfig,
    pub download: DownloadConfig,
    /// Where our seeder listens, as peers should dial it.
    pub seeder_addr: Option<SocketAddr>,
}

/// A user command, parsed and validated by the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Any plain tracker request (create_user, login, list_groups, ...).
    Tracker(Request),
    /// `upload_file`: the driver hashed the file; `share` is its id for it.
    Share {
        group: GroupName,
        meta: FileMeta,
        share: ShareId,
    },
    /// `download_file`: `dest` is the driver's id for the destination;
    /// `expected`, the file hash the user gave (`--hash`): metadata with
    /// another is refused before anything is fetched.
    Download {
        group: GroupName,
        file: FileName,
        dest: u64,
        expected: Option<Sha1Hash>,
    },
    ShowDownloads,
    /// Sets (bytes per second) or lifts (`None`) one of the rate limits;
    /// answered at once with all of them.
    SetRate {
        limit: RateLimit,
        rate: Option<u64>,
    },
    /// The rate limits in force.
    ShowRates,
}

/// One of the user-set transfer rate limits (issue 16 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// What the seeder uploads to all peers together.
    Up,
    /// What all downloads receive together.
    Down,
    /// What the seeder uploads on each connection.
    UpPerPeer,
    /// What a download receives from each seeder connection.
    DownPerPeer,
}

/// The rate limits in force, bytes per second (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    pub up: Option<u64>,
    pub down: Option<u64>,
    pub up_per_peer: Option<u64>,
    pub down_per_peer: Option<u64>,
}

/// What a finished command gives the user.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOk {
    Reply(Reply),
    /// `download_file` got the metadata and started in the background.
    Started {
        dl: DlId,
    },
    Downloads(Vec<DownloadLine>),
    /// The rate limits now in force.
    Rates(Rates),
}

/// One line of `show_downloads`.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadLine {
    pub dl: DlId,
    pub group: GroupName,
    pub file: FileName,
    pub progress: Option<Progress>,
    /// Set when the download failed before it could start.
    pub error: Option<Text>,
}

/// Where a download stands, as `show_downloads` marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadMark {
    /// `[D]`: getting the metadata, preparing or fetching pieces.
    Downloading,
    /// `[C]`: every piece verified and written.
    Complete,
    /// `[F]`: ended without the file.
    Failed,
}

impl DownloadMark {
    fn of(error: Option<&Text>, state: Option<&DownloadState>) -> Self {
        match (error, state) {
            (Some(_), _) | (_, Some(DownloadState::Failed(_))) => DownloadMark::Failed,
            (_, Some(DownloadState::Complete)) => DownloadMark::Complete,
            _ => DownloadMark::Downloading,
        }
    }

    /// `[D]`, `[C]` or `[F]`.
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadMark::Downloading => "[D]",
            DownloadMark::Complete => "[C]",
            DownloadMark::Failed => "[F]",
        }
    }
}

impl DownloadLine {
    pub fn state(&self) -> DownloadMark {
        DownloadMark::of(
            self.error.as_ref(),
            self.progress.as_ref().map(|p| &p.state),
        )
    }

    /// `[D]`, `[C]` or `[F]`.
    pub fn mark(&self) -> &'static str {
        self.state().as_str()
    }
}

/// Why a client asks to be woken up ([`ClientNode::poll_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTimer {
    Session(session::Timer),
    Seeder(seeder::Timer),
    Download(DlId, download::Timer),
    /// The download rate limit allows a waiting download its next request.
    DownloadRate,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Command {
        tag: CommandTag,
        cmd: Command,
    },
    /// The tracker connection is up and its TLS handshake done; `peer` is
    /// the key the tracker proved it holds.
    TrackerConnected {
        conn: SessionConn,
        peer: KeyId,
    },
    TrackerConnectFailed {
        conn: SessionConn,
    },
    TrackerFrame {
        conn: SessionConn,
        payload: Bytes,
    },
    TrackerClosed {
        conn: SessionConn,
    },
    /// A peer connected to our seeder port from `addr` (its source
    /// address, for the seeder's per-address limits) and proved it holds
    /// `peer`.
    PeerAccepted {
        conn: u64,
        peer: KeyId,
        addr: IpAddr,
    },
    /// An outbound connection asked for by `PeerConnect` is up, TLS done
    /// (`peer` is the seeder's proven key) / failed.
    PeerConnected {
        conn: u64,
        peer: KeyId,
    },
    PeerConnectFailed {
        conn: u64,
    },
    PeerFrame {
        conn: u64,
        payload: Bytes,
    },
    /// A `PeerMsg::Piece` frame the driver decoded and hashed itself.
    PeerPiece {
        conn: u64,
        index: u32,
        data: Bytes,
        sha1: Sha1Hash,
    },
    PeerClosed {
        conn: u64,
    },
    /// `<dest>.part` is open; `have` are the pieces its record says are verified.
    DestReady {
        dl: DlId,
        have: PieceSet,
    },
    DestFailed {
        dl: DlId,
        reason: Text,
    },
    PieceWritten {
        dl: DlId,
        index: u32,
    },
    WriteFailed {
        dl: DlId,
        index: u32,
        reason: Text,
    },
    /// `<dest>.part` was renamed into place.
    Finalized {
        dl: DlId,
    },
    FinalizeFailed {
        dl: DlId,
        reason: Text,
    },
    PieceRead {
        conn: u64,
        index: u32,
        data: Bytes,
    },
    /// A `ReadPiece` answered without reading: the file holds the piece,
    /// and the driver sends it from the file when told to
    /// (`PeerOut::PieceFromFile`).
    PieceInFile {
        conn: u64,
        index: u32,
    },
    ReadFailed {
        conn: u64,
        index: u32,
    },
}

/// A message for a peer connection.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerOut {
    Hello(Hello),
    Msg(PeerMsg),
    /// `PeerMsg::Piece { index, data }` whose data is the `len` bytes at
    /// `offset` of `share`'s file: the driver sends them from the file
    /// (`sendfile`), never through memory.
    PieceFromFile {
        share: ShareId,
        index: u32,
        offset: u64,
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    TrackerConnect {
        conn: SessionConn,
        addr: SocketAddr,
    },
    TrackerSend {
        conn: SessionConn,
        frame: Bytes,
    },
    TrackerClose {
        conn: SessionConn,
    },
    PeerConnect {
        conn: u64,
        addr: SocketAddr,
    },
    PeerSend {
        conn: u64,
        msg: PeerOut,
    },
    PeerClose {
        conn: u64,
    },
    /// Tracker `index` (in `tracker_info.txt` order) was not pinned and
    /// proved `key` on first contact: the driver keeps the pin (the data
    /// directory's `known_trackers`) and tells the user.
    PinTracker {
        index: usize,
        key: KeyId,
    },
    /// Open or create `<dest>.part` for `meta`, load its piece record;
    /// answer `DestReady` / `DestFailed`.
    PrepareDest {
        dl: DlId,
        dest: u64,
        meta: FileMeta,
    },
    WritePiece {
        dl: DlId,
        index: u32,
        offset: u64,
        data: Bytes,
    },
    /// Rename `<dest>.part` into place; answer `Finalized` / `FinalizeFailed`.
    Finalize {
        dl: DlId,
    },
    ReadPiece {
        conn: u64,
        share: ShareId,
        index: u32,
        offset: u64,
        len: u32,
    },
    Done {
        tag: CommandTag,
        result: Result<CommandOk, ClientError>,
    },
    Event(ClientEvent),
}

/// Lines for the user that no command asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Session(SessionEvent),
    DownloadFinished {
        dl: DlId,
        group: GroupName,
        file: FileName,
        result: Result<(), Text>,
    },
    /// The tracker recorded where peers reach this client's seeder (after
    /// each login or resume), or refused to.
    SeederAddress(Result<std::net::SocketAddr, Text>),
}

/// The session's own requests, and which download or share they serve.
#[derive(Debug, Clone)]
enum Internal {
    User {
        tag: CommandTag,
        cmd: Command,
    },
    /// `download_file`'s GetFile: answers the user, then starts `dl`.
    UserDownload {
        tag: CommandTag,
        dl: DlId,
    },
    RegisterSeeder,
    Reannounce,
    GetPeers {
        dl: DlId,
    },
    HavePieces,
}

enum DlState {
    Meta,
    Preparing(FileMeta),
    Running(Box<Child<Download>>),
    Ended(Option<Box<Progress>>, Option<Text>),
}

impl Dl {
    /// Running and holding a request back for the download rate limit.
    fn wants_request(&self) -> bool {
        matches!(&self.state, DlState::Running(m) if m.get().wants_request())
    }
}

struct Dl {
    group: GroupName,
    file: FileName,
    dest: u64,
    /// The file hash the user expects, if they gave one.
    expected: Option<Sha1Hash>,
    state: DlState,
    /// Our connection ids for the download's peers.
    peers: BTreeMap<PeerId, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerConn {
    /// Inbound, hello not seen yet (the seeder already counts it).
    InHello,
    /// Inbound, handed to the seeder.
    Seeder,
    /// Outbound for a download's `peer`, at `stage`.
    Out {
        dl: DlId,
        peer: PeerId,
        stage: OutStage,
    },
}

/// Where an outbound peer connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutStage {
    /// `PeerConnect` asked for.
    Dialing,
    /// Up and its key handed to the download, which decides whether we
    /// speak at all: nothing sent yet (our hello goes before its first
    /// message).
    Quiet,
    /// Our hello sent, theirs awaited.
    Hello,
    /// Hellos exchanged: frames go to the download.
    Open,
}

pub struct ClientNode {
    cfg: ClientConfig,
    session: Child<ClientSession>,
    seeder: Child<Seeder>,
    downloads: BTreeMap<DlId, Dl>,
    /// Uploaded shares, re-announced after each login / resume.
    shares: BTreeMap<ShareId, (GroupName, FileMeta)>,
    conns: BTreeMap<u64, PeerConn>,
    internal: BTreeMap<CommandTag, Internal>,
    next_internal: u64,
    next_conn: u64,
    next_dl: DlId,
    seed: u64,
    /// When the machine was made (shares loaded at start-up are added then).
    started: Instant,
    /// The download rate limit over all downloads (`cfg.download.max_rate`)
    /// and the last download granted a request under it (round robin).
    down: Option<TokenBucket>,
    grant_cursor: DlId,
    out: Outbox<Output>,
}

impl ClientNode {
    pub fn new(cfg: ClientConfig, seed: u64, now: Instant) -> Self {
        let session = ClientSession::new(cfg.session.clone(), seed, now);
        let seeder = Seeder::new(cfg.seeder.clone(), now);
        let cfg_down = cfg.download.max_rate;
        let mut n = ClientNode {
            cfg,
            session: Child::new(session),
            seeder: Child::new(seeder),
            downloads: BTreeMap::new(),
            shares: BTreeMap::new(),
            conns: BTreeMap::new(),
            internal: BTreeMap::new(),
            next_internal: 1,
            next_conn: OUTBOUND,
            next_dl: 1,
            seed,
            started: now,
            down: cfg_down.map(|r| TokenBucket::new(now, r)),
            grant_cursor: 0,
            out: Outbox::new(),
        };
        n.pump(now);
        n
    }

    /// Registers a file shared in an earlier run (from the driver's share
    /// table): served at once, announced to the tracker at the next login.
    /// Part of start-up (before the first input); it queues no output.
    pub fn add_local_share(&mut self, share: ShareId, group: GroupName, meta: FileMeta) -> bool {
        let full = PieceSet::full(meta.piece_count());
        let now = self.started;
        if self
            .seeder
            .feed()
            .add_share(now, share, group.clone(), &meta, full)
            .is_err()
        {
            return false;
        }
        self.shares.insert(share, (group, meta));
        true
    }

    /// Shares this client announces (for the driver's share table).
    pub fn shares(&self) -> impl Iterator<Item = (&ShareId, &(GroupName, FileMeta))> {
        self.shares.iter()
    }

    // ------------------------------------------------------------ getters

    pub fn session(&self) -> &ClientSession {
        self.session.get()
    }
    pub fn seeder(&self) -> &Seeder {
        self.seeder.get()
    }
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The soonest deadline of the session, the seeder and the downloads,
    /// and whose it is (on a tie, the first in that order).
    pub fn poll_timeout(&self) -> Option<(Instant, ClientTimer)> {
        let session = self
            .session
            .get()
            .poll_timeout()
            .map(|(t, k)| (t, ClientTimer::Session(k)));
        let seeder = self
            .seeder
            .get()
            .poll_timeout()
            .map(|(t, k)| (t, ClientTimer::Seeder(k)));
        let dls = self.downloads.iter().filter_map(|(&dl, d)| match &d.state {
            DlState::Running(m) => m
                .get()
                .poll_timeout()
                .map(|(t, k)| (t, ClientTimer::Download(dl, k))),
            _ => None,
        });
        let rate = self
            .down
            .as_ref()
            .filter(|_| self.downloads.values().any(Dl::wants_request))
            .map(|b| (b.ready_at(), ClientTimer::DownloadRate));
        session
            .into_iter()
            .chain(seeder)
            .chain(dls)
            .chain(rate)
            .min_by_key(|(t, _)| *t)
    }

    /// The rate limits in force.
    pub fn rates(&self) -> Rates {
        Rates {
            up: self.seeder.get().upload_rate(),
            down: self.cfg.download.max_rate,
            up_per_peer: self.seeder.get().upload_rate_per_peer(),
            down_per_peer: self.cfg.download.max_rate_per_peer,
        }
    }

    /// Sets or lifts one rate limit (a fresh bucket, full).
    fn set_rate(&mut self, now: Instant, limit: RateLimit, rate: Option<u64>) {
        match limit {
            RateLimit::Up => self.seeder.feed().set_upload_rate(now, rate),
            RateLimit::UpPerPeer => self.seeder.feed().set_upload_rate_per_peer(now, rate),
            RateLimit::Down | RateLimit::DownPerPeer => {
                let c = &mut self.cfg.download;
                if limit == RateLimit::Down {
                    c.max_rate = rate;
                    self.down = rate.map(|r| TokenBucket::new(now, r));
                } else {
                    c.max_rate_per_peer = rate;
                }
                let (all, per_peer) = (c.max_rate, c.max_rate_per_peer);
                for d in self.downloads.values_mut() {
                    if let DlState::Running(m) = &mut d.state {
                        m.feed().set_rates(now, all, per_peer);
                    }
                }
            }
        }
    }

    /// Under the download rate limit: while the bucket allows, grants one
    /// request at a time to the next download (round robin) that holds
    /// one back, taking the bytes it asked for. True if any was granted
    /// (their outputs are then to be drained).
    fn grant_requests(&mut self, now: Instant) -> bool {
        let Some(bucket) = &mut self.down else {
            return false;
        };
        let mut any = false;
        while bucket.ready(now) {
            let wants = |(_, d): &(&DlId, &Dl)| d.wants_request();
            let next = self
                .downloads
                .range(self.grant_cursor.saturating_add(1)..)
                .find(wants)
                .or_else(|| self.downloads.iter().find(wants))
                .map(|(&dl, _)| dl);
            let Some(dl) = next else {
                break;
            };
            self.grant_cursor = dl;
            if let Some(Dl {
                state: DlState::Running(m),
                ..
            }) = self.downloads.get_mut(&dl)
            {
                let bytes = m.feed().allow_request(now);
                bucket.take(now, bytes);
                any = true;
            }
        }
        any
    }

    /// Every download ended (for `wait_downloads`); failures listed.
    pub fn downloads_ended(&self) -> (bool, Vec<String>) {
        let mut all = true;
        let mut failed = Vec::new();
        for d in self.downloads.values() {
            let mark = match &d.state {
                DlState::Meta | DlState::Preparing(_) => DownloadMark::Downloading,
                DlState::Running(m) => DownloadMark::of(None, Some(m.get().state())),
                DlState::Ended(p, e) => DownloadMark::of(e.as_ref(), p.as_ref().map(|p| &p.state)),
            };
            match mark {
                DownloadMark::Downloading => all = false,
                DownloadMark::Failed => failed.push(format!("[{}] {}", d.group, d.file)),
                DownloadMark::Complete => {}
            }
        }
        (all, failed)
    }

    pub fn download_lines(&self, now: Instant) -> Vec<DownloadLine> {
        self.downloads
            .iter()
            .map(|(&dl, d)| {
                let (progress, error) = match &d.state {
                    DlState::Meta | DlState::Preparing(_) => (None, None),
                    DlState::Running(m) => (Some(m.get().progress(now)), None),
                    DlState::Ended(p, e) => (p.as_deref().cloned(), e.clone()),
                };
                DownloadLine {
                    dl,
                    group: d.group.clone(),
                    file: d.file.clone(),
                    progress,
                    error,
                }
            })
            .collect()
    }

    // ------------------------------------------------------------ inputs

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.out.check_drained("client");
        match input {
            Input::Command { tag, cmd } => self.on_command(now, tag, cmd),
            Input::TrackerConnected { conn, peer } => {
                self.session_input(now, SessionInput::Connected { conn, peer })
            }
            Input::TrackerConnectFailed { conn } => {
                self.session_input(now, SessionInput::ConnectFailed { conn })
            }
            Input::TrackerFrame { conn, payload } => {
                self.session_input(now, SessionInput::Frame { conn, payload })
            }
            Input::TrackerClosed { conn } => self.session_input(now, SessionInput::Closed { conn }),
            Input::PeerAccepted { conn, peer, addr } => {
                // The seeder counts it from now (hello and ticket awaited,
                // bounded and timed out there), before it takes a slot.
                self.conns.insert(conn, PeerConn::InHello);
                let (conn, peer) = (ConnId(conn), peer);
                self.seeder
                    .feed()
                    .handle_input(now, seeder::Input::Opened { conn, peer, addr });
            }
            Input::PeerConnected { conn, peer } => self.on_peer_connected(now, conn, peer),
            Input::PeerConnectFailed { conn } => self.on_peer_gone(now, conn, true),
            Input::PeerFrame { conn, payload } => self.on_peer_frame(now, conn, payload),
            Input::PeerPiece {
                conn,
                index,
                data,
                sha1,
            } => {
                if let Some(PeerConn::Out {
                    dl,
                    peer,
                    stage: OutStage::Open,
                }) = self.conns.get(&conn).copied()
                {
                    self.dl_input(
                        now,
                        dl,
                        download::Input::Piece {
                            peer,
                            index,
                            data,
                            sha1,
                        },
                    );
                }
            }
            Input::PeerClosed { conn } => self.on_peer_gone(now, conn, false),
            Input::DestReady { dl, have } => self.on_dest_ready(now, dl, have),
            Input::DestFailed { dl, reason } => self.end_download(now, dl, None, Some(reason)),
            Input::PieceWritten { dl, index } => {
                let _ = self
                    .seeder
                    .feed()
                    .add_piece(now, ShareId(OUTBOUND | dl), index);
                self.dl_input(now, dl, download::Input::PieceWritten { index });
            }
            Input::WriteFailed { dl, index, reason } => {
                self.dl_input(now, dl, download::Input::WriteFailed { index, reason })
            }
            Input::Finalized { dl } => self.on_finalized(now, dl, None),
            Input::FinalizeFailed { dl, reason } => self.on_finalized(now, dl, Some(reason)),
            Input::PieceRead { conn, index, data } => self.seeder.feed().handle_input(
                now,
                seeder::Input::PieceRead {
                    conn: ConnId(conn),
                    index,
                    data,
                },
            ),
            Input::PieceInFile { conn, index } => self.seeder.feed().handle_input(
                now,
                seeder::Input::PieceInFile {
                    conn: ConnId(conn),
                    index,
                },
            ),
            Input::ReadFailed { conn, index } => self.seeder.feed().handle_input(
                now,
                seeder::Input::ReadFailed {
                    conn: ConnId(conn),
                    index,
                },
            ),
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.check_drained("client");
        if self
            .session
            .get()
            .poll_timeout()
            .is_some_and(|(t, _)| t <= now)
        {
            self.session.feed().handle_timeout(now);
        }
        if self
            .seeder
            .get()
            .poll_timeout()
            .is_some_and(|(t, _)| t <= now)
        {
            self.seeder.feed().handle_timeout(now);
        }
        for d in self.downloads.values_mut() {
            if let DlState::Running(m) = &mut d.state
                && m.get().poll_timeout().is_some_and(|(t, _)| t <= now)
            {
                m.feed().handle_timeout(now);
            }
        }
        self.pump(now);
    }

    // ------------------------------------------------------------ commands

    fn on_command(&mut self, now: Instant, tag: CommandTag, cmd: Command) {
        let req = match &cmd {
            Command::ShowDownloads => {
                let lines = self.download_lines(now);
                self.done(tag, Ok(CommandOk::Downloads(lines)));
                return;
            }
            Command::SetRate { limit, rate } => {
                self.set_rate(now, *limit, *rate);
                self.done(tag, Ok(CommandOk::Rates(self.rates())));
                return;
            }
            Command::ShowRates => {
                self.done(tag, Ok(CommandOk::Rates(self.rates())));
                return;
            }
            Command::Tracker(r) => r.clone(),
            Command::Share { group, meta, .. } => Request::UploadFile {
                group: group.clone(),
                meta: meta.clone(),
            },
            Command::Download {
                group,
                file,
                dest,
                expected,
            } => {
                let dl = self.next_dl;
                self.next_dl += 1;
                let d = Dl {
                    group: group.clone(),
                    file: file.clone(),
                    dest: *dest,
                    expected: *expected,
                    state: DlState::Meta,
                    peers: BTreeMap::new(),
                };
                self.downloads.insert(dl, d);
                let req = Request::GetFile {
                    group: group.clone(),
                    file: file.clone(),
                };
                self.internal_request(now, Internal::UserDownload { tag, dl }, req);
                return;
            }
        };
        self.internal_request(now, Internal::User { tag, cmd }, req);
    }

    /// Sends a request through the session, remembering what it is for.
    fn internal_request(&mut self, now: Instant, what: Internal, req: Request) {
        let t = self.next_internal;
        self.next_internal += 1;
        self.internal.insert(t, what);
        self.session_input(now, SessionInput::Command { tag: t, req });
    }

    fn session_input(&mut self, now: Instant, input: SessionInput) {
        self.session.feed().handle_input(now, input);
    }

    // ------------------------------------------------------------ session results

    fn on_session_done(&mut self, now: Instant, t: CommandTag, result: Result<Reply, ClientError>) {
        let Some(what) = self.internal.remove(&t) else {
            return;
        };
        match what {
            Internal::User { tag, cmd } => {
                if let Ok(reply) = &result {
                    self.after_success(now, &cmd, reply);
                }
                self.done(tag, result.map(CommandOk::Reply));
            }
            Internal::UserDownload { tag, dl } => match result {
                Ok(Reply::File(meta)) => {
                    let Some(d) = self.downloads.get_mut(&dl) else {
                        return;
                    };
                    // The metadata of the file asked for (a hostile tracker
                    // cannot substitute another), checked before any I/O.
                    if let Err(error) = download::check_meta_for(&meta, &d.file, d.expected) {
                        let file = d.file.clone();
                        self.downloads.remove(&dl);
                        self.done(tag, Err(ClientError::BadMetadata { file, error }));
                        return;
                    }
                    d.state = DlState::Preparing(meta.clone());
                    let dest = d.dest;
                    self.out.push_back(Output::PrepareDest { dl, dest, meta });
                    self.done(tag, Ok(CommandOk::Started { dl }));
                }
                Ok(other) => {
                    self.downloads.remove(&dl);
                    let e = p2p_proto::TrackerError::BadRequest {
                        reason: Text::new(format!("unexpected reply {other:?}")),
                    };
                    self.done(tag, Err(ClientError::Tracker(e)));
                }
                Err(e) => {
                    self.downloads.remove(&dl);
                    self.done(tag, Err(e));
                }
            },
            Internal::GetPeers { dl } => {
                let input = match result {
                    Ok(Reply::Peers(peers)) => download::Input::Peers(peers),
                    Ok(_) => download::Input::Peers(Vec::new()),
                    Err(e) => download::Input::PeersUnavailable {
                        reason: Text::new(e.to_string()),
                    },
                };
                self.dl_input(now, dl, input);
            }
            Internal::RegisterSeeder => {
                let ev = match result {
                    Ok(Reply::SeederAt { addr }) => Ok(addr),
                    Ok(other) => Err(Text::new(format!("unexpected reply {other:?}"))),
                    Err(e) => Err(Text::new(e.to_string())),
                };
                self.out
                    .push_back(Output::Event(ClientEvent::SeederAddress(ev)));
            }
            Internal::Reannounce | Internal::HavePieces => {}
        }
    }

    /// Local side effects of a user command the tracker accepted.
    fn after_success(&mut self, now: Instant, cmd: &Command, reply: &Reply) {
        match (cmd, reply) {
            (Command::Share { group, meta, share }, Reply::Shared { .. }) => {
                let full = PieceSet::full(meta.piece_count());
                if self
                    .seeder
                    .feed()
                    .add_share(now, *share, group.clone(), meta, full)
                    .is_ok()
                {
                    self.shares.insert(*share, (group.clone(), meta.clone()));
                }
            }
            (Command::Tracker(Request::StopShare { group, file }), _) => {
                let gone: Vec<ShareId> = self
                    .shares
                    .iter()
                    .filter(|(_, (g, m))| g == group && m.name == *file)
                    .map(|(&id, _)| id)
                    .collect();
                for id in gone {
                    self.shares.remove(&id);
                    let _ = self.seeder.feed().remove_share(now, id);
                }
            }
            (Command::Tracker(Request::LeaveGroup { group }), _) => {
                let gone: Vec<ShareId> = self
                    .shares
                    .iter()
                    .filter(|(_, (g, _))| g == group)
                    .map(|(&id, _)| id)
                    .collect();
                for id in gone {
                    self.shares.remove(&id);
                    let _ = self.seeder.feed().remove_share(now, id);
                }
            }
            _ => {}
        }
    }

    /// After login or a resume on another tracker: tell the tracker where
    /// our seeder listens and what we share.
    fn on_session_event(&mut self, now: Instant, e: SessionEvent) {
        if let SessionEvent::Peers { group, file, peers } = e {
            return self.on_pushed_peers(now, &group, &file, peers);
        }
        match &e {
            SessionEvent::LoggedIn { user, seeder_key } => {
                self.seeder
                    .feed()
                    .set_identity(now, user.clone(), *seeder_key);
                self.reannounce(now);
            }
            SessionEvent::Resumed { .. } => self.reannounce(now),
            SessionEvent::LoggedOut | SessionEvent::SessionLost => {
                self.seeder.feed().clear_identity(now)
            }
            _ => {}
        }
        self.out.push_back(Output::Event(ClientEvent::Session(e)));
    }

    /// The tracker pushed new sources of a file: every running download
    /// of it learns them (and connects as it sees fit); nothing else does.
    fn on_pushed_peers(
        &mut self,
        now: Instant,
        group: &GroupName,
        file: &FileName,
        peers: Vec<p2p_proto::PeerInfo>,
    ) {
        let dls: Vec<DlId> = self
            .downloads
            .iter()
            .filter(|(_, d)| &d.group == group && &d.file == file)
            .filter(|(_, d)| matches!(d.state, DlState::Running(_)))
            .map(|(&id, _)| id)
            .collect();
        for dl in dls {
            self.dl_input(now, dl, download::Input::PeersPushed(peers.clone()));
        }
    }

    fn reannounce(&mut self, now: Instant) {
        if let Some(addr) = self.cfg.seeder_addr {
            self.internal_request(
                now,
                Internal::RegisterSeeder,
                Request::RegisterSeeder { addr },
            );
        }
        let shares: Vec<(GroupName, FileMeta)> = self.shares.values().cloned().collect();
        for (group, meta) in shares {
            self.internal_request(
                now,
                Internal::Reannounce,
                Request::UploadFile { group, meta },
            );
        }
        let partial: Vec<(GroupName, FileName, PieceSet)> = self
            .downloads
            .values()
            .filter_map(|d| match &d.state {
                DlState::Running(m) if !m.get().pieces_done().is_empty() => Some((
                    d.group.clone(),
                    d.file.clone(),
                    m.get().pieces_done().clone(),
                )),
                _ => None,
            })
            .collect();
        for (group, file, pieces) in partial {
            self.internal_request(
                now,
                Internal::HavePieces,
                Request::HavePieces {
                    group,
                    file,
                    pieces,
                },
            );
        }
    }

    // ------------------------------------------------------------ downloads

    fn on_dest_ready(&mut self, now: Instant, dl: DlId, have: PieceSet) {
        let Some(d) = self.downloads.get_mut(&dl) else {
            return;
        };
        let DlState::Preparing(meta) = &d.state else {
            return;
        };
        let meta = meta.clone();
        let seed = self.seed ^ dl.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let m = Download::new(
            self.cfg.download.clone(),
            d.group.clone(),
            meta.clone(),
            have.clone(),
            seed,
            now,
        );
        d.state = DlState::Running(Box::new(Child::new(m)));
        let group = d.group.clone();
        let have = if have.len() == meta.piece_count() {
            have
        } else {
            PieceSet::empty(meta.piece_count())
        };
        let _ = self
            .seeder
            .feed()
            .add_share(now, ShareId(OUTBOUND | dl), group, &meta, have);
    }

    fn dl_input(&mut self, now: Instant, dl: DlId, input: download::Input) {
        if let Some(Dl {
            state: DlState::Running(m),
            ..
        }) = self.downloads.get_mut(&dl)
        {
            m.feed().handle_input(now, input);
        }
    }

    fn on_finalized(&mut self, now: Instant, dl: DlId, error: Option<Text>) {
        let progress = match self.downloads.get(&dl).map(|d| &d.state) {
            Some(DlState::Running(m)) => Some(m.get().progress(now)),
            _ => None,
        };
        let result = match &error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        };
        self.end_download(now, dl, progress, error);
        if let Some(d) = self.downloads.get(&dl) {
            let ev = ClientEvent::DownloadFinished {
                dl,
                group: d.group.clone(),
                file: d.file.clone(),
                result,
            };
            self.out.push_back(Output::Event(ev));
        }
    }

    fn end_download(
        &mut self,
        now: Instant,
        dl: DlId,
        progress: Option<Progress>,
        error: Option<Text>,
    ) {
        let Some(d) = self.downloads.get_mut(&dl) else {
            return;
        };
        let peers: Vec<u64> = d.peers.values().copied().collect();
        d.peers.clear();
        d.state = DlState::Ended(progress.map(Box::new), error.clone());
        for conn in peers {
            self.conns.remove(&conn);
            self.out.push_back(Output::PeerClose { conn });
        }
        if error.is_some() {
            let _ = self.seeder.feed().remove_share(now, ShareId(OUTBOUND | dl));
        }
    }

    /// Executes one download's outputs.
    /// Executes one download's outputs; true if there were any (some become
    /// session requests, which the next pass of `pump` must send).
    fn pump_download(&mut self, now: Instant, dl: DlId) -> bool {
        let mut any = false;
        loop {
            let Some(d) = self.downloads.get_mut(&dl) else {
                return any;
            };
            let DlState::Running(m) = &mut d.state else {
                return any;
            };
            let Some(o) = m.poll() else { return any };
            any = true;
            match o {
                download::Output::Connect { peer, addr } => {
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    d.peers.insert(peer, conn);
                    let stage = OutStage::Dialing;
                    self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
                    self.out.push_back(Output::PeerConnect { conn, addr });
                }
                download::Output::Send { peer, msg } => {
                    if let Some(&conn) = d.peers.get(&peer) {
                        let quiet = PeerConn::Out {
                            dl,
                            peer,
                            stage: OutStage::Quiet,
                        };
                        if self.conns.get(&conn) == Some(&quiet) {
                            let stage = OutStage::Hello;
                            self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
                            self.out.push_back(Output::PeerSend {
                                conn,
                                msg: PeerOut::Hello(Hello::new(Role::Peer)),
                            });
                        }
                        self.out.push_back(Output::PeerSend {
                            conn,
                            msg: PeerOut::Msg(msg),
                        });
                    }
                }
                download::Output::Disconnect { peer, .. } => {
                    if let Some(conn) = d.peers.remove(&peer) {
                        self.conns.remove(&conn);
                        self.out.push_back(Output::PeerClose { conn });
                    }
                }
                download::Output::WritePiece {
                    index,
                    offset,
                    data,
                } => self.out.push_back(Output::WritePiece {
                    dl,
                    index,
                    offset,
                    data,
                }),
                download::Output::AnnounceHave { pieces } => {
                    let (group, file) = (d.group.clone(), d.file.clone());
                    self.internal_request(
                        now,
                        Internal::HavePieces,
                        Request::HavePieces {
                            group,
                            file,
                            pieces,
                        },
                    );
                }
                download::Output::AskTrackerForPeers => {
                    let req = Request::GetPeers {
                        group: d.group.clone(),
                        file: d.file.clone(),
                    };
                    self.internal_request(now, Internal::GetPeers { dl }, req);
                }
                download::Output::Finished(Ok(())) => self.out.push_back(Output::Finalize { dl }),
                download::Output::Finished(Err(e)) => {
                    let progress = Some(m.get().progress(now));
                    let (group, file) = (d.group.clone(), d.file.clone());
                    let reason = Text::new(e.to_string());
                    self.end_download(now, dl, progress, Some(reason.clone()));
                    let ev = ClientEvent::DownloadFinished {
                        dl,
                        group,
                        file,
                        result: Err(reason),
                    };
                    self.out.push_back(Output::Event(ev));
                }
            }
        }
    }

    // ------------------------------------------------------------ peers

    /// An outbound connection is up and proved `key`: the download
    /// decides whether it is the seeder the tracker vouched for, before a
    /// byte is sent (our hello goes out with its first message).
    fn on_peer_connected(&mut self, now: Instant, conn: u64, key: KeyId) {
        if let Some(PeerConn::Out {
            dl,
            peer,
            stage: OutStage::Dialing,
        }) = self.conns.get(&conn).copied()
        {
            let stage = OutStage::Quiet;
            self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
            self.dl_input(now, dl, download::Input::Connected { peer, key });
        }
    }

    fn on_peer_frame(&mut self, now: Instant, conn: u64, payload: Bytes) {
        let Some(&state) = self.conns.get(&conn) else {
            return;
        };
        match state {
            PeerConn::InHello => match Hello::from_bytes(payload) {
                Ok(h) if h.role == Role::Peer => self.say_hello(conn),
                _ => {
                    self.seeder
                        .feed()
                        .handle_input(now, seeder::Input::Closed { conn: ConnId(conn) });
                    self.drop_peer(conn);
                }
            },
            PeerConn::Seeder => match PeerMsg::from_bytes(payload) {
                Ok(msg) => self.seeder.feed().handle_input(
                    now,
                    seeder::Input::Msg {
                        conn: ConnId(conn),
                        msg,
                    },
                ),
                Err(_) => {
                    self.seeder
                        .feed()
                        .handle_input(now, seeder::Input::Closed { conn: ConnId(conn) });
                    self.drop_peer(conn);
                }
            },
            PeerConn::Out {
                dl,
                peer,
                stage: OutStage::Hello,
            } => match Hello::from_bytes(payload) {
                Ok(h) if h.role == Role::Server => {
                    let stage = OutStage::Open;
                    self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
                }
                _ => self.on_peer_gone(now, conn, false),
            },
            PeerConn::Out {
                dl,
                peer,
                stage: OutStage::Open,
            } => match PeerMsg::from_bytes(payload) {
                Ok(msg) => self.dl_input(now, dl, download::Input::Msg { peer, msg }),
                Err(_) => self.on_peer_gone(now, conn, false),
            },
            // It spoke before we did (or before it was up): not a seeder.
            PeerConn::Out { .. } => self.on_peer_gone(now, conn, false),
        }
    }

    /// Our hello as a seeder on inbound `conn`, which then belongs to the
    /// seeder.
    fn say_hello(&mut self, conn: u64) {
        self.out.push_back(Output::PeerSend {
            conn,
            msg: PeerOut::Hello(Hello::new(Role::Server)),
        });
        self.conns.insert(conn, PeerConn::Seeder);
    }

    fn drop_peer(&mut self, conn: u64) {
        self.conns.remove(&conn);
        self.out.push_back(Output::PeerClose { conn });
    }

    fn on_peer_gone(&mut self, now: Instant, conn: u64, connect_failed: bool) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        // The driver releases its side (a reader that stopped on bad framing
        // leaves the socket open until then).
        self.out.push_back(Output::PeerClose { conn });
        match state {
            PeerConn::InHello | PeerConn::Seeder => self
                .seeder
                .feed()
                .handle_input(now, seeder::Input::Closed { conn: ConnId(conn) }),
            PeerConn::Out { dl, peer, stage } => {
                if let Some(d) = self.downloads.get_mut(&dl) {
                    d.peers.remove(&peer);
                }
                let input = match (stage, connect_failed) {
                    (OutStage::Dialing, _) => download::Input::ConnectFailed { peer },
                    _ => download::Input::Closed { peer },
                };
                self.dl_input(now, dl, input);
            }
        }
    }

    // ------------------------------------------------------------ plumbing

    /// Drains every sub-machine until none has output left.
    fn pump(&mut self, now: Instant) {
        for _ in 0..1000 {
            let mut any = false;
            while let Some(o) = self.session.poll() {
                any = true;
                match o {
                    SessionOutput::Connect { conn, addr } => {
                        self.out.push_back(Output::TrackerConnect { conn, addr })
                    }
                    SessionOutput::Send { conn, frame } => {
                        self.out.push_back(Output::TrackerSend { conn, frame })
                    }
                    SessionOutput::Close { conn } => {
                        self.out.push_back(Output::TrackerClose { conn })
                    }
                    SessionOutput::PinTracker { index, key } => {
                        self.out.push_back(Output::PinTracker { index, key })
                    }
                    SessionOutput::Done { tag, result } => self.on_session_done(now, tag, result),
                    SessionOutput::Event(e) => self.on_session_event(now, e),
                }
            }
            while let Some(o) = self.seeder.poll() {
                any = true;
                match o {
                    seeder::Output::Send { conn, msg } => {
                        // Refused before its hello came: ours goes first,
                        // so the peer reads the refusal.
                        if self.conns.get(&conn.0) == Some(&PeerConn::InHello) {
                            self.say_hello(conn.0);
                        }
                        self.out.push_back(Output::PeerSend {
                            conn: conn.0,
                            msg: PeerOut::Msg(msg),
                        })
                    }
                    seeder::Output::ReadPiece {
                        conn,
                        share,
                        index,
                        offset,
                        len,
                    } => self.out.push_back(Output::ReadPiece {
                        conn: conn.0,
                        share,
                        index,
                        offset,
                        len,
                    }),
                    seeder::Output::SendPieceFromFile {
                        conn,
                        share,
                        index,
                        offset,
                        len,
                    } => self.out.push_back(Output::PeerSend {
                        conn: conn.0,
                        msg: PeerOut::PieceFromFile {
                            share,
                            index,
                            offset,
                            len,
                        },
                    }),
                    seeder::Output::Close { conn, .. } => self.drop_peer(conn.0),
                }
            }
            let running: Vec<DlId> = self
                .downloads
                .iter()
                .filter(|(_, d)| matches!(d.state, DlState::Running(_)))
                .map(|(&id, _)| id)
                .collect();
            for dl in running {
                any |= self.pump_download(now, dl);
            }
            if !any && self.grant_requests(now) {
                continue;
            }
            if !any {
                self.debug_check();
                return;
            }
        }
        debug_assert!(false, "client machines kept producing output");
    }

    // ------------------------------------------------------------ invariants

    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    /// Panics if the machine's bookkeeping disagrees with itself, or with
    /// its sub-machines' (called after every input and timeout in debug
    /// builds, and by the simulator).
    pub fn check_invariants(&self) {
        self.session.get().check_invariants();
        self.seeder.get().check_invariants();
        for d in self.downloads.values() {
            if let DlState::Running(m) = &d.state {
                m.get().check_invariants();
            }
        }
        if let Err(e) = self.invariant_violation() {
            panic!("client invariant broken: {e}");
        }
    }

    fn invariant_violation(&self) -> Result<(), String> {
        for (&conn, c) in &self.conns {
            match *c {
                PeerConn::InHello | PeerConn::Seeder if conn >= OUTBOUND => {
                    return Err(format!("inbound connection {conn} in our own id range"));
                }
                PeerConn::Out { dl, peer, .. } => {
                    if conn < OUTBOUND || conn >= self.next_conn {
                        return Err(format!("outbound connection {conn} not an id we gave"));
                    }
                    let d = self.downloads.get(&dl).ok_or(format!(
                        "connection {conn} belongs to unknown download {dl}"
                    ))?;
                    if !matches!(d.state, DlState::Running(_)) {
                        return Err(format!("connection {conn} of download {dl}, not running"));
                    }
                    if d.peers.get(&peer) != Some(&conn) {
                        return Err(format!("download {dl} does not know its connection {conn}"));
                    }
                }
                _ => {}
            }
        }
        for (&dl, d) in &self.downloads {
            if dl >= self.next_dl {
                return Err(format!("download {dl} not an id we gave"));
            }
            for (&peer, conn) in &d.peers {
                match self.conns.get(conn) {
                    Some(PeerConn::Out { dl: x, peer: p, .. }) if *x == dl && *p == peer => {}
                    _ => {
                        return Err(format!(
                            "download {dl}: connection {conn} is not its peer's"
                        ));
                    }
                }
            }
        }
        for (&t, what) in &self.internal {
            if t >= self.next_internal {
                return Err(format!("session tag {t} not one we gave"));
            }
            if let Internal::UserDownload { dl, .. } = what
                && !matches!(
                    self.downloads.get(dl).map(|d| &d.state),
                    Some(DlState::Meta)
                )
            {
                return Err(format!(
                    "download {dl} waits for metadata but is not in that state"
                ));
            }
        }
        if let Some(id) = self
            .shares
            .keys()
            .find(|id| self.seeder.get().share_pieces(**id).is_none())
        {
            return Err(format!("share {} announced but not served", id.0));
        }
        Ok(())
    }

    fn done(&mut self, tag: CommandTag, result: Result<CommandOk, ClientError>) {
        self.out.push_back(Output::Done { tag, result });
    }
}

impl_machine!(ClientNode, Input, Output, ClientTimer);
