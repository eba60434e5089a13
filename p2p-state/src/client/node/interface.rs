//! What the client node takes and gives: its configuration, the user's
//! commands and their answers, inputs, outputs, timers and events.

use super::*;

/// A peer connection of the client: one a peer opened to our seeder port
/// (numbered by the driver, which accepts it; the seeder knows it by that
/// [`ConnId`]), or one this machine dialled for a download (numbered by
/// the machine). The two numberings never meet: this type is the only
/// place that tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerConnId {
    Inbound(ConnId),
    Outbound(u64),
}

impl PeerConnId {
    /// The seeder's id of an inbound connection (`None` for an outbound one).
    pub fn inbound(self) -> Option<ConnId> {
        match self {
            PeerConnId::Inbound(c) => Some(c),
            PeerConnId::Outbound(_) => None,
        }
    }
}

impl std::fmt::Display for PeerConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerConnId::Inbound(c) => write!(f, "in-{c}"),
            PeerConnId::Outbound(n) => write!(f, "out-conn#{n}"),
        }
    }
}

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

/// Where a download stands, as `show_downloads` marks it (the marks'
/// text is the driver's: `runtime_common::present::mark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadMark {
    /// `[D]`: getting the metadata, opening the destination or fetching pieces.
    Downloading,
    /// `[C]`: every piece verified and written.
    Complete,
    /// `[F]`: ended without the file.
    Failed,
}

impl DownloadMark {
    pub(super) fn of(error: Option<&Text>, state: Option<&DownloadState>) -> Self {
        match (error, state) {
            (Some(_), _) | (_, Some(DownloadState::Failed(_))) => DownloadMark::Failed,
            (_, Some(DownloadState::Complete)) => DownloadMark::Complete,
            _ => DownloadMark::Downloading,
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
        conn: PeerConnId,
        peer: KeyId,
        addr: IpAddr,
    },
    /// An outbound connection asked for by `PeerConnect` is up, TLS done
    /// (`peer` is the seeder's proven key) / failed.
    PeerConnected {
        conn: PeerConnId,
        peer: KeyId,
    },
    PeerConnectFailed {
        conn: PeerConnId,
    },
    PeerFrame {
        conn: PeerConnId,
        payload: Bytes,
    },
    /// A `PeerMsg::Piece` frame the driver decoded and hashed itself.
    PeerPiece {
        conn: PeerConnId,
        index: u32,
        data: Bytes,
        sha1: Sha1Hash,
    },
    PeerClosed {
        conn: PeerConnId,
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
    /// A `Serve` is done: the piece's frame is queued on the connection.
    Served {
        conn: PeerConnId,
        index: u32,
    },
    /// A `Serve` the driver could not do.
    ServeFailed {
        conn: PeerConnId,
        index: u32,
        why: ServeError,
    },
}

/// A message for a peer connection.
// Boxing the message would cost an allocation per message (requests,
// announcements) to save space in a value that only moves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PeerOut {
    Hello(Hello),
    Msg(PeerMsg),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    TrackerConnect {
        conn: SessionConn,
        addr: SocketAddr,
    },
    TrackerSend {
        conn: SessionConn,
        msg: TrackerOut,
    },
    TrackerClose {
        conn: SessionConn,
    },
    PeerConnect {
        conn: PeerConnId,
        addr: SocketAddr,
    },
    PeerSend {
        conn: PeerConnId,
        msg: PeerOut,
    },
    PeerClose {
        conn: PeerConnId,
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
    OpenDest {
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
    /// Serve piece `index` on inbound `conn`: send `Piece { index, data }`,
    /// the data being the `len` bytes at `offset` of `share`'s file, in
    /// order with every earlier `PeerSend` on `conn` (the connection's
    /// writer reads them from the file, so no piece waits in memory in the
    /// machine's queues); answer `Served` or `ServeFailed`.
    Serve {
        conn: PeerConnId,
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
    /// A share announced again after a login or resume was refused
    /// (`reason`): nobody is shown this client as a source of `file` in
    /// `group` until it is shared again.
    ShareNotAnnounced {
        group: GroupName,
        file: FileName,
        reason: Text,
    },
}
