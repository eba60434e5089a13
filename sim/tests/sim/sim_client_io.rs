//! The simulated I/O the world gives the real client driver core
//! (`runtime_common::client::Core`): writers that queue bytes for the
//! simulated network, dials, disk jobs on files of the in-memory disk
//! ([`SimPart`], [`SimFile`]: ids, not file handles), and the pins file.
//! Everything the core asks for lands, in order, in the host's
//! [`Effects`], which the world executes after each turn of the core
//! (`world_client.rs`); the clock is the tracker's ([`SimClock`]).

use std::net::SocketAddr;

use bytes::Bytes;
use p2p_proto::KeyId;
use p2p_state::client::node::PeerConnId;
use p2p_state::client::session::SessionConn;
use runtime_common::client::{ClientIo, Core, CoreEv, Job};
use runtime_common::conn::{FileRange, FrameSink};
use runtime_common::known_trackers::Pins;

use crate::net::End;
use crate::sim_io::{Effects, SimClock};

/// The real client driver core over the simulated I/O.
pub type ClientCore = Core<SimClientIo, SimClock, SimClientPins>;

/// What a client core receives.
pub type ClientEv = CoreEv<SimClientIo>;

/// An open part file: download `dl`, written into destination `dest` of
/// the client's disk (`ClientDisk::parts`, then `finished`).
#[derive(Debug, Clone, Copy)]
pub struct SimPart {
    pub dl: u64,
    pub dest: u64,
}

/// An open file a piece is served from.
#[derive(Debug, Clone, Copy)]
pub enum SimFile {
    /// A download's part (or, once finalized, finished) file.
    Part(SimPart),
    /// Uploaded share `n`'s original (`ClientDisk::shared`).
    Shared(u64),
}

/// One thing a client core asked of its host.
pub enum ClientEffect {
    /// Bytes (whole frames) for a connection.
    Send(End, Bytes),
    /// One frame as its head and the rest (a piece from memory).
    Parts(End, Bytes, Bytes),
    /// One frame as its head and a range of a file (a piece served).
    SendFile(End, Bytes, FileRange<SimFile>),
    /// Send what is queued, then shut the connection down.
    Close(End),
    /// Shut the connection down now.
    Abort(End),
    ConnectTracker(SessionConn, SocketAddr),
    ConnectPeer(PeerConnId, SocketAddr),
    Disk(Job<SimPart, SimFile>),
    /// The key tracker `index` proved on first contact, for the disk.
    Pin(usize, KeyId),
}

pub struct SimClientIo {
    pub fx: Effects<ClientEffect>,
}

impl ClientIo for SimClientIo {
    type Writer = SimClientWriter;
    type Part = SimPart;
    type File = SimFile;

    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr) {
        self.fx.push(ClientEffect::ConnectTracker(conn, addr));
    }
    fn connect_peer(&mut self, conn: PeerConnId, addr: SocketAddr) {
        self.fx.push(ClientEffect::ConnectPeer(conn, addr));
    }
    fn disk(&mut self, job: Job<SimPart, SimFile>) {
        self.fx.push(ClientEffect::Disk(job));
    }
    fn part_file(part: &SimPart) -> SimFile {
        SimFile::Part(*part)
    }
    fn send_file(w: &SimClientWriter, head: Bytes, range: FileRange<SimFile>) -> bool {
        w.fx.push(ClientEffect::SendFile(w.end, head, range));
        true
    }
}

/// A client connection's writer: its bytes go to the simulated network.
pub struct SimClientWriter {
    pub end: End,
    pub fx: Effects<ClientEffect>,
}

impl FrameSink for SimClientWriter {
    fn send(&self, frame: Bytes) -> bool {
        self.fx.push(ClientEffect::Send(self.end, frame));
        true
    }
    fn send_parts(&self, head: Bytes, body: Bytes) -> bool {
        self.fx.push(ClientEffect::Parts(self.end, head, body));
        true
    }
    fn close(self) {
        self.fx.push(ClientEffect::Close(self.end));
    }
    fn abort(&self) {
        self.fx.push(ClientEffect::Abort(self.end));
    }
}

/// Pins go to the host's disk (the world keeps them across restarts).
pub struct SimClientPins {
    pub addrs: Vec<SocketAddr>,
    pub fx: Effects<ClientEffect>,
}

impl Pins for SimClientPins {
    fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
    fn pin(&mut self, index: usize, key: KeyId) {
        self.fx.push(ClientEffect::Pin(index, key));
    }
}
