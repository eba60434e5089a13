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
//! Connection ids: [`PeerConnId`], inbound ones numbered by the driver,
//! outbound ones by this machine.
//! Share ids: `ShareId::Upload` numbers are the driver's (it keeps their
//! paths); a download's partial file is `ShareId::Download(download)`.
//!
//! Files: this one holds the machine's state, its inputs' dispatch, the
//! pump that moves outputs between the parts, and its invariants;
//! `interface` what it takes and gives; `commands` the user's commands and
//! the session's answers; `downloads` starting, feeding, limiting and
//! ending downloads; `peers` peer connections.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use p2p_proto::{
    FileMeta, FileName, GroupName, Hello, KeyId, PeerMsg, PieceSet, Reply, Request, Role, Sha1Hash,
    Text, Wire,
};

use super::session::{
    self, ClientError, ClientSession, CommandTag, SessionConfig, SessionConn, SessionEvent,
    SessionInput, SessionOutput, TrackerOut,
};
use crate::download::{self, Download, DownloadConfig, DownloadState, PeerId, Progress};
use crate::machine::{Child, Outbox, impl_machine};
use crate::rate::TokenBucket;
use crate::seeder::{self, ConnId, Seeder, SeederConfig, ServeError, ShareId};
use crate::time::Instant;

/// A download's number.
pub type DlId = u64;

mod commands;
mod downloads;
mod interface;
mod peers;

pub use interface::*;

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
    /// A share announced again after a login or resume.
    Reannounce {
        group: GroupName,
        file: FileName,
    },
    GetPeers {
        dl: DlId,
    },
    HavePieces,
}

enum DlState {
    Meta,
    Opening(FileMeta),
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
    /// Our connections to the download's peers.
    peers: BTreeMap<PeerId, PeerConnId>,
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
    conns: BTreeMap<PeerConnId, PeerConn>,
    internal: BTreeMap<CommandTag, Internal>,
    next_internal: u64,
    /// The number of the next outbound connection.
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
            next_conn: 1,
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
                let Some(id) = conn.inbound() else {
                    debug_assert!(false, "driver accepted outbound {conn}");
                    return self.pump(now);
                };
                // The seeder counts it from now (hello and ticket awaited,
                // bounded and timed out there), before it takes a slot.
                self.conns.insert(conn, PeerConn::InHello);
                self.seeder.feed().handle_input(
                    now,
                    seeder::Input::Opened {
                        conn: id,
                        peer,
                        addr,
                    },
                );
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
                    .add_piece(now, ShareId::Download(dl), index);
                self.dl_input(now, dl, download::Input::PieceWritten { index });
            }
            Input::WriteFailed { dl, index, reason } => {
                self.dl_input(now, dl, download::Input::WriteFailed { index, reason })
            }
            Input::Finalized { dl } => self.on_finalized(now, dl, None),
            Input::FinalizeFailed { dl, reason } => self.on_finalized(now, dl, Some(reason)),
            Input::Served { conn, index } => self.on_served(now, conn, index, Ok(())),
            Input::ServeFailed { conn, index, why } => self.on_served(now, conn, index, Err(why)),
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
                    SessionOutput::Send { conn, msg } => {
                        self.out.push_back(Output::TrackerSend { conn, msg })
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
                        let conn = PeerConnId::Inbound(conn);
                        // Refused before its hello came: ours goes first,
                        // so the peer reads the refusal.
                        if self.conns.get(&conn) == Some(&PeerConn::InHello) {
                            self.say_hello(conn);
                        }
                        self.out.push_back(Output::PeerSend {
                            conn,
                            msg: PeerOut::Msg(msg),
                        })
                    }
                    seeder::Output::Serve {
                        conn,
                        share,
                        index,
                        offset,
                        len,
                    } => self.out.push_back(Output::Serve {
                        conn: PeerConnId::Inbound(conn),
                        share,
                        index,
                        offset,
                        len,
                    }),
                    seeder::Output::Close { conn, .. } => self.drop_peer(PeerConnId::Inbound(conn)),
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
            match (*c, conn) {
                (PeerConn::InHello | PeerConn::Seeder, PeerConnId::Outbound(_)) => {
                    return Err(format!("outbound connection {conn} handed to the seeder"));
                }
                (PeerConn::Out { .. }, PeerConnId::Inbound(_)) => {
                    return Err(format!("inbound connection {conn} taken for a download"));
                }
                (PeerConn::Out { dl, peer, .. }, PeerConnId::Outbound(n)) => {
                    if n == 0 || n >= self.next_conn {
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
            return Err(format!("share {id} announced but not served"));
        }
        Ok(())
    }

    fn done(&mut self, tag: CommandTag, result: Result<CommandOk, ClientError>) {
        self.out.push_back(Output::Done { tag, result });
    }
}

impl_machine!(ClientNode, Input, Output, ClientTimer);
