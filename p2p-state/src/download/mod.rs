//! Download scheduler: one pure state machine per download.
//!
//! It knows the file's piece hashes, which peers hold which pieces, and what
//! is in flight. It decides whom to connect to, which piece to ask of whom
//! (rarest first, random tie-break, weighted by peer speed, adaptive
//! pipelining, endgame duplicates), verifies every piece's SHA-1 before
//! writing it, penalises and bans bad peers, re-queues lost requests, and
//! asks the tracker again with backoff when no peer is usable. It never
//! keeps piece data: verified bytes go straight out in
//! [`Output::WritePiece`].
//!
//! Before anything else it checks the metadata (`check_meta`): the file
//! hash must be [`file_root`](crate::hash::file_root) of the size, piece
//! length and piece hashes. Every piece is then verified against a hash
//! the file hash commits to, so the download is complete when the last
//! piece is written: the file is never read back whole.
//!
//! Files:
//! - `interface.rs`: [`Input`], [`Output`], [`DownloadConfig`], [`DownloadError`];
//! - `picker.rs`: piece states, availability, rarest-first and endgame picks;
//! - `peer.rs`: per-peer state, rate/latency estimates, window, timeouts;
//! - `react.rs`: reactions to connection events, messages and pieces;
//! - `schedule.rs`: after each input: connect, fill requests, arm timers;
//! - `progress.rs`: [`Progress`] and [`WaitingReason`] for `show_downloads`;
//! - `rate_tests.rs` (tests): the rate limits over simulated time;
//! - `harness.rs` (tests): an in-memory world of one download and N seeders.
//!
//! Rate limits (issue 16 §6) gate the decision to send a request, so
//! pieces are asked for only as fast as the user allows and never queue at
//! a seeder behind a limit (their request timeouts stay honest). Two
//! limits, both `TokenBucket`s (`rate.rs`):
//! - **global** (`max_rate`, over all of a client's downloads): several
//!   downloads share it, so the bucket lives where they meet, in the client
//!   node. While it is set, a download sends a request only with an
//!   allowance the node grants ([`Download::allow_request`], one request
//!   each); [`Download::wants_request`] says a request is ready and held.
//!   The node grants round robin over the downloads that want one, as fast
//!   as its bucket allows, taking the bytes asked for. No share of the rate
//!   is reserved for an idle download, and no allowance is handed out
//!   before a request is ready, so the limit holds within one burst and one
//!   piece whatever the number of downloads.
//! - **per peer** (`max_rate_per_peer`): a bucket per seeder connection,
//!   kept by the download; a peer whose bucket is in debt is not picked,
//!   and a `Rate` deadline wakes the download when the first is clear.
//!
//! Unlimited (both `None`), the gate is never consulted and the window
//! logic runs exactly as without it. Waiting on a limit is not a stall:
//! the `Stall` deadline restarts while a request is held back by one.
//!
//! Contract (docs/STYLE.md §2.2): one `handle_*` call, then drain
//! [`Download::poll_output`] until `None`, then read
//! [`Download::poll_timeout`]. `now` never goes backwards.

mod interface;
mod invariants;
mod peer;
mod picker;
mod progress;
mod react;
mod schedule;

#[cfg(test)]
pub(crate) mod harness;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod rate_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

pub use interface::*;
pub use progress::{
    DownloadState, PeerProblem, PeerProgress, Progress, WAITING_WINDOW, WaitingReason,
};

use std::collections::BTreeMap;
use std::net::SocketAddr;

use p2p_proto::{FileMeta, FileName, GroupName, PieceSet, Sha1Hash, Text, UserName};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::machine::{Outbox, impl_machine};
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;
use peer::Peer;
use picker::{Picker, PieceState};
use progress::RateMeter;

/// Counters for tests, traces and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownloadStats {
    /// Requests sent (endgame duplicates included).
    pub requests: u64,
    /// Verified pieces accepted (each piece at most once).
    pub pieces_accepted: u64,
    /// Verified copies of pieces already held, dropped.
    pub duplicates: u64,
    /// Pieces whose hash (or length) was wrong.
    pub bad_pieces: u64,
    pub timeouts: u64,
    pub bytes_received: u64,
    pub tracker_asks: u64,
    /// Connections dropped because the peer proved another key than the
    /// one the tracker vouched for.
    pub wrong_keys: u64,
    /// Fresh tickets shown on live connections.
    pub tickets_renewed: u64,
}

/// Whether `meta` can be downloaded: its numbers agree
/// ([`FileMeta::validate`]) and its file hash is the
/// [`file_root`](crate::hash::file_root) of its size, piece length and
/// piece hashes, so that pieces verified against those hashes make the
/// file the hash names. A download refuses anything else before it starts.
/// [`check_meta`], and the metadata is that of the file asked for: named
/// `asked`, and with file hash `expected` when the user gave one.
pub(crate) fn check_meta_for(
    meta: &FileMeta,
    asked: &FileName,
    expected: Option<Sha1Hash>,
) -> Result<(), DownloadError> {
    check_meta(meta)?;
    if meta.name != *asked {
        return Err(DownloadError::WrongFile {
            asked: asked.clone(),
            got: meta.name.clone(),
        });
    }
    match expected {
        Some(e) if e != meta.file_hash => Err(DownloadError::NotExpectedHash {
            expected: e,
            got: meta.file_hash,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_meta(meta: &FileMeta) -> Result<(), DownloadError> {
    if let Err(e) = meta.validate() {
        let reason = Text::new(e.to_string());
        return Err(DownloadError::BadMetadata { reason });
    }
    let computed = crate::hash::meta_root(meta);
    if computed != meta.file_hash {
        return Err(DownloadError::FileHashMismatch {
            expected: meta.file_hash,
            computed,
        });
    }
    Ok(())
}

/// One download. See the module docs.
pub struct Download {
    cfg: DownloadConfig,
    group: GroupName,
    meta: FileMeta,
    rng: ChaCha8Rng,
    state: DownloadState,
    picker: Picker,
    peers: BTreeMap<PeerId, Peer>,
    by_addr: BTreeMap<(UserName, SocketAddr), PeerId>,
    next_peer: u32,
    /// Requesters of each piece in flight, with when they were asked.
    requests: BTreeMap<u32, Vec<(PeerId, Instant)>>,
    in_flight: usize,
    timers: TimerTable<Timer>,
    out: Outbox<Output>,
    rate: RateMeter,
    tracker: TrackerContact,
    last_peer_problem: Option<PeerProblem>,
    last_progress: Instant,
    announce: AnnounceState,
    stats: DownloadStats,
    gate: Gate,
}

/// The rate-limit gate on sending requests (see the module docs).
#[derive(Clone, Debug, Default)]
struct Gate {
    /// The node allowed one request under the global limit, not sent yet.
    allowed: bool,
    /// The last pump held a request back for want of a global allowance.
    held_global: bool,
    /// The last pump left a useful peer unasked because of its own limit.
    held_peer: bool,
    /// Bytes asked for so far (what an allowance cost).
    requested: u64,
}

/// When and why we ask the tracker for peers.
#[derive(Clone, Debug)]
struct TrackerContact {
    last_ask: Instant,
    backoff: Duration,
    /// Interval between asks while peers are usable: from
    /// `peers_refresh_first`, doubled after each ask, up to `peers_refresh`.
    refresh: Duration,
    /// Asked; no `Peers`/`PeersUnavailable` since.
    pending: bool,
    problem: Option<Text>,
    /// Sources of this file in the latest listing (banned ones included).
    last_listed: usize,
}

#[derive(Clone, Debug, Default)]
struct AnnounceState {
    dirty: bool,
    last: Option<Instant>,
}

impl Download {
    /// A download of `meta` in `group`, resuming with the pieces in
    /// `already_have` (the driver's record of verified pieces; ignored if
    /// its length is wrong). Its first output asks the tracker for peers.
    pub fn new(
        cfg: DownloadConfig,
        group: GroupName,
        meta: FileMeta,
        already_have: PieceSet,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let picker = Picker::new(meta.piece_count(), &already_have, &mut rng);
        let cfg = cfg.normalized();
        let mut d = Download {
            tracker: TrackerContact {
                last_ask: now,
                backoff: cfg.tracker_backoff_min,
                refresh: cfg.peers_refresh_first,
                pending: false,
                problem: None,
                last_listed: 0,
            },
            cfg,
            group,
            rng,
            state: DownloadState::Downloading,
            picker,
            peers: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            next_peer: 0,
            requests: BTreeMap::new(),
            in_flight: 0,
            timers: TimerTable::new(),
            out: Outbox::new(),
            rate: RateMeter::new(now),
            last_peer_problem: None,
            last_progress: now,
            announce: AnnounceState::default(),
            stats: DownloadStats::default(),
            gate: Gate::default(),
            meta,
        };
        d.start(now);
        d
    }

    fn start(&mut self, now: Instant) {
        if let Err(e) = check_meta(&self.meta) {
            self.finish(Err(e));
            return;
        }
        if self.picker.done_count() > 0 {
            self.announce.dirty = true;
            self.timers.set(Timer::Announce, now);
        }
        if !self.picker.all_verified() {
            self.ask_tracker(now);
        }
        self.pump(now);
        self.debug_check();
    }

    // ------------------------------------------------------------ inputs

    /// Feeds one input. Ignored once the download has finished.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.out.check_drained("download");
        if self.is_finished() {
            return;
        }
        match input {
            Input::Peers(list) => self.on_peers(now, list),
            Input::PeersPushed(list) => self.on_peers_pushed(now, list),
            Input::PeersUnavailable { reason } => self.on_peers_unavailable(reason),
            Input::Connected { peer, key } => self.on_connected(now, peer, key),
            Input::ConnectFailed { peer } => self.on_connect_failed(peer),
            Input::Msg { peer, msg } => self.on_msg(now, peer, msg),
            Input::Piece {
                peer,
                index,
                data,
                sha1,
            } => self.on_piece(now, peer, index, data, sha1),
            Input::Closed { peer } => self.on_closed(peer),
            Input::PieceWritten { index } => self.on_written(now, index),
            Input::WriteFailed { index, reason } => {
                self.finish(Err(DownloadError::WriteFailed { index, reason }))
            }
        }
        self.pump(now);
        self.debug_check();
    }

    /// Fires every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.check_drained("download");
        while !self.is_finished() {
            let Some(timer) = self.timers.pop_expired(now) else {
                break;
            };
            self.on_timer(now, timer);
        }
        self.pump(now);
        self.debug_check();
    }

    /// The user stops the download: every connection is closed and the
    /// download finishes with [`DownloadError::Cancelled`].
    pub fn cancel(&mut self, now: Instant) {
        self.out.check_drained("download");
        if !self.is_finished() {
            self.finish(Err(DownloadError::Cancelled));
        }
        self.pump(now);
        self.debug_check();
    }

    /// Sets the rate limits (`None`: lifts one): `max_rate` over all the
    /// client's downloads (the node keeps that bucket and grants
    /// requests) and `max_rate_per_peer` (fresh buckets per connection).
    pub fn set_rates(&mut self, now: Instant, max_rate: Option<u64>, per_peer: Option<u64>) {
        self.out.check_drained("download");
        self.cfg.max_rate = max_rate;
        self.cfg.max_rate_per_peer = per_peer;
        for p in self.peers.values_mut() {
            p.bucket = None;
        }
        if max_rate.is_none() {
            self.gate.allowed = false;
        }
        self.timers.clear(Timer::Rate);
        self.pump(now);
        self.debug_check();
    }

    /// Under the global limit, a request is ready and waits for an
    /// allowance from the node.
    pub fn wants_request(&self) -> bool {
        self.cfg.max_rate.is_some()
            && self.gate.held_global
            && !self.gate.allowed
            && !self.is_finished()
    }

    /// The node allows one request under the global limit: it goes out at
    /// once if one is ready. Returns the bytes asked for (0 if none went:
    /// the allowance is kept for the next).
    pub fn allow_request(&mut self, now: Instant) -> u64 {
        self.out.check_drained("download");
        if self.is_finished() {
            return 0;
        }
        let before = self.gate.requested;
        self.gate.allowed = true;
        self.pump(now);
        self.debug_check();
        self.gate.requested - before
    }

    // ------------------------------------------------------------ outputs

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Download::handle_timeout`] next, and why.
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    // ------------------------------------------------------------ getters

    pub fn state(&self) -> &DownloadState {
        &self.state
    }

    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            DownloadState::Complete | DownloadState::Failed(_)
        )
    }

    pub fn meta(&self) -> &FileMeta {
        &self.meta
    }

    pub fn group(&self) -> &GroupName {
        &self.group
    }

    pub fn config(&self) -> &DownloadConfig {
        &self.cfg
    }

    /// Pieces written to disk (what a resume record should hold).
    pub fn pieces_done(&self) -> &PieceSet {
        self.picker.done()
    }

    pub fn stats(&self) -> &DownloadStats {
        &self.stats
    }

    /// Requests in flight over all peers.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests in flight to `peer`.
    pub fn peer_in_flight(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.requests.len())
    }

    /// Pieces `peer` said it holds (`None` before its `Have`).
    pub fn peer_pieces(&self, peer: PeerId) -> Option<&PieceSet> {
        self.peers.get(&peer).and_then(Peer::pieces)
    }

    /// Pieces received from `peer` that it had been asked for.
    pub fn peer_pieces_received(&self, peer: PeerId) -> u32 {
        self.peers.get(&peer).map_or(0, |p| p.pieces_received)
    }

    // ------------------------------------------------------------ endings

    /// Ends the download: closes every connection, drops every deadline,
    /// flushes a pending announce on success, and emits `Finished` once.
    fn finish(&mut self, result: Result<(), DownloadError>) {
        if self.is_finished() {
            return;
        }
        let reason = match result {
            Ok(()) => DisconnectReason::Complete,
            Err(_) => DisconnectReason::Ended,
        };
        self.close_all(reason);
        self.timers = TimerTable::new();
        if result.is_ok() && self.announce.dirty {
            self.flush_announce(None);
        }
        self.state = match &result {
            Ok(()) => DownloadState::Complete,
            Err(e) => DownloadState::Failed(e.clone()),
        };
        self.out.push_back(Output::Finished(result));
    }

    fn flush_announce(&mut self, now: Option<Instant>) {
        self.announce.dirty = false;
        self.announce.last = now.or(self.announce.last);
        let pieces = self.picker.done().clone();
        self.out.push_back(Output::AnnounceHave { pieces });
    }
}

impl_machine!(Download, Input, Output, Timer);
