//! [`Core`]: the client driver's loop body, the same on every runtime and
//! in the simulation. It owns the [`ClientNode`], registers connections,
//! feeds it events, and executes its outputs through [`ClientIo`] (files
//! too: it keeps the I/O's open part files and share files, never a real
//! file of its own); executing never blocks and never calls back into the
//! machine (what execution itself learns goes to the `later` queue, fed
//! after the drain). Built by [`Core::new`] from [`setup`], or from
//! [`CoreParts`].

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use p2p_proto::{PeerMsg, Text};
use p2p_state::Instant;
use p2p_state::client::node::{
    self as cn, ClientEvent, ClientNode, Command, CommandOk, PeerConnId, PeerOut,
};
use p2p_state::client::session::{ClientError, CommandTag, SessionConn};
use p2p_state::seeder::ShareId;

use super::serve::{ShareFile, send_peer_msg};
use super::{
    ClientIo, CoreEv, Ev, HandleMsg, HandleParts, Job, JobDone, Paths, Setup, ShareLine, Snapshot,
    Status, WriteMode, disk,
};
use crate::clock::{Clock, Now};
use crate::conn::FrameSink;
use crate::known_trackers::{Pinner, Pins};
use crate::trace;

/// The machine and what the driver knows beside it. The runtimes run it
/// on the [`Clock`] and record pins with a [`Pinner`] (the defaults); the
/// clock and the pin record are type parameters, as in the tracker's
/// core, and the files are the I/O's ([`ClientIo`]), so that a simulation
/// can give its own.
pub struct Core<R: ClientIo, C: Now = Clock, P: Pins = Pinner> {
    pub(super) node: ClientNode,
    pins: P,
    clock: C,
    pub(super) io: R,
    trackers: BTreeMap<SessionConn, R::Writer>,
    pub(super) peers: BTreeMap<PeerConnId, R::Writer>,
    pending: BTreeMap<CommandTag, Sender<Result<CommandOk, ClientError>>>,
    next_tag: CommandTag,
    pub(super) paths: Arc<Mutex<Paths>>,
    pub(super) dl_files: BTreeMap<u64, R::Part>,
    /// The files of uploaded shares, opened off the loop when first
    /// served (or shared).
    pub(super) share_files: BTreeMap<u64, ShareFile<R::File>>,
    events: Sender<ClientEvent>,
    data_dir: PathBuf,
    write_mode: WriteMode,
    /// A download's window (`DownloadConfig::max_parallel`).
    window: usize,
    /// The share table as last saved.
    saved_shares: Vec<u8>,
    /// Inputs the driver itself produced while executing outputs (a
    /// failure it can tell at once); fed after the drain.
    pub(super) later: VecDeque<cn::Input>,
}

/// What a [`Core`] is made of: the runtimes' come from [`setup`]
/// ([`Core::new`]); a simulation builds its own.
pub struct CoreParts<R, C, P> {
    /// The machine, its share table loaded.
    pub node: ClientNode,
    pub clock: C,
    pub pins: P,
    pub io: R,
    /// Where shares and destinations are (shared with the handle).
    pub paths: Arc<Mutex<Paths>>,
    /// Where the machine's events go (the handle's `take_events`).
    pub events: Sender<ClientEvent>,
    /// Where the share table is saved.
    pub data_dir: PathBuf,
    /// How downloads reach the device (see [`disk::write_piece`]).
    pub write_mode: WriteMode,
    /// A download's window (`DownloadConfig::max_parallel`), which
    /// [`disk::DirectGate`] measures the disk's lag against.
    pub window: usize,
}

impl<R: ClientIo> Core<R> {
    /// Takes the machine from [`setup`] (the handle's parts stay behind)
    /// and runs its first outputs (connecting to the first tracker).
    pub fn new(p: Setup, io: R) -> (Self, HandleParts) {
        let core = Core::from_parts(CoreParts {
            node: p.node,
            clock: p.clock,
            pins: p.pins,
            io,
            paths: p.handle.paths.clone(),
            events: p.events,
            data_dir: p.data_dir,
            write_mode: p.write_mode,
            window: p.window,
        });
        (core, p.handle)
    }
}

impl<R: ClientIo, C: Now, P: Pins> Core<R, C, P> {
    /// A core from its parts; runs the machine's first outputs
    /// (connecting to the first tracker).
    pub fn from_parts(p: CoreParts<R, C, P>) -> Self {
        let mut core = Core {
            node: p.node,
            pins: p.pins,
            clock: p.clock,
            io: p.io,
            trackers: BTreeMap::new(),
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_tag: 1,
            paths: p.paths,
            dl_files: BTreeMap::new(),
            share_files: BTreeMap::new(),
            events: p.events,
            data_dir: p.data_dir,
            write_mode: p.write_mode,
            window: p.window,
            saved_shares: Vec::new(),
            later: VecDeque::new(),
        };
        core.saved_shares = disk::shares_bytes(&core.node, &core.paths);
        core.drain();
        core
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The machine (for a simulation's checks).
    pub fn node(&self) -> &ClientNode {
        &self.node
    }

    /// When the loop must wake up if nothing arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout().map(|(t, _)| t)
    }

    /// One turn of the loop: the event that woke it (`None`: the wait timed
    /// out), then the machine's deadline if the clock has passed it.
    /// `false` when the handle asked to stop.
    pub fn turn(&mut self, ev: Option<CoreEv<R>>) -> bool {
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

    fn on_event(&mut self, ev: CoreEv<R>) {
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
            Ev::Disk(JobDone::DestOpened { dl, file, have }) => {
                self.dl_files.insert(dl, file);
                self.node
                    .handle_input(now, cn::Input::DestReady { dl, have });
            }
            Ev::Disk(JobDone::ShareOpened { share, opened }) => self.on_share_opened(share, opened),
            Ev::Disk(JobDone::Nothing) => {}
            Ev::Handle(HandleMsg::Cmd { cmd, reply }) => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.pending.insert(tag, reply);
                if let Command::Share { share, .. } = &cmd
                    && let Some(n) = share.upload()
                {
                    // Held open from now (off the loop), as it was hashed.
                    self.open_share(n);
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
        let mut n = 0;
        loop {
            while let Some(o) = self.node.poll_output() {
                crate::count_turn_output(&mut n, "client");
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
            cn::Output::TrackerSend { conn, msg } => {
                if let Some(w) = self.trackers.get(&conn) {
                    let mut b = BytesMut::new();
                    msg.encode_frame(&mut b);
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
                if let Some(w) = self.peers.get(&conn) {
                    send_peer_msg(w, msg);
                }
            }
            cn::Output::PeerClose { conn } => {
                if let Some(w) = self.peers.remove(&conn) {
                    w.close();
                }
            }
            cn::Output::OpenDest { dl, dest, meta } => {
                let path = self.paths.lock().expect("paths").dests.get(&dest).cloned();
                match path {
                    Some((dest, overwrite)) => self.io.disk(Job::OpenDest {
                        dl,
                        dest,
                        meta,
                        mode: self.write_mode,
                        window: self.window,
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
                if let Some(part) = self.dl_files.get(&dl) {
                    trace::disk_queued(data.len() as u64);
                    let job = Job::Write {
                        dl,
                        part: part.clone(),
                        index,
                        offset,
                        data,
                    };
                    self.io.disk(job);
                }
            }
            cn::Output::Finalize { dl } => {
                if let Some(part) = self.dl_files.get(&dl) {
                    let part = part.clone();
                    self.io.disk(Job::Finalize { dl, part });
                }
            }
            cn::Output::Serve {
                conn,
                share,
                index,
                offset,
                len,
            } => self.serve(share, conn, index, offset, len),
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
}
