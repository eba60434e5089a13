//! One downloader's connection to our seeder: whether it has shown a valid
//! ticket (and for which share), its piece requests (queued for a read
//! slot, being served by the driver, or being served but cancelled) and its
//! counters.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use p2p_proto::{KeyId, UserName};

use super::interface::{Served, ShareId};
use crate::rate::TokenBucket;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Connected; no `Open` yet.
    AwaitOpen,
    /// Ticket verified for `share`, issued to `downloader` (whose key is
    /// the connection's), valid until `expires_ms`.
    Open {
        share: ShareId,
        downloader: UserName,
        /// The ticket's `downloader_key` (the connection's key, checked).
        ticket_key: KeyId,
        expires_ms: u64,
    },
}

/// Where one requested piece stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Req {
    /// Waiting for a disk read slot.
    Queued,
    /// `Serve` emitted; the driver sends the piece.
    Reading,
    /// `Serve` emitted, then cancelled: not counted when it is answered.
    ReadingCancelled,
}

/// What to do with a new request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Queued,
    /// Already queued or being read: nothing to do.
    Duplicate,
    /// A cancelled read asked for again: it will be sent after all.
    Revived,
    /// Per-connection limit reached.
    Busy,
}

#[derive(Clone, Debug)]
pub(crate) struct Conn {
    /// The key the peer proved in the TLS handshake.
    pub key: KeyId,
    /// The peer's source address (per-address limits).
    pub addr: IpAddr,
    pub state: ConnState,
    pub pending: BTreeMap<u32, Req>,
    /// `Queued` pieces in arrival order.
    pub queue: VecDeque<u32>,
    pub refusals: u32,
    pub served: Served,
    /// The per-peer upload rate limit's bucket, made at the first read
    /// under a limit (`None` while unlimited).
    pub bucket: Option<TokenBucket>,
}

impl Conn {
    pub(crate) fn new(key: KeyId, addr: IpAddr) -> Self {
        Conn {
            key,
            addr,
            state: ConnState::AwaitOpen,
            pending: BTreeMap::new(),
            queue: VecDeque::new(),
            refusals: 0,
            served: Served::default(),
            bucket: None,
        }
    }

    /// Has a queued request the per-peer limit (if any) lets start now.
    pub(crate) fn can_start(&self, now: Instant) -> bool {
        !self.queue.is_empty() && self.bucket.as_ref().is_none_or(|b| b.ready_at() <= now)
    }

    pub(crate) fn share(&self) -> Option<ShareId> {
        match &self.state {
            ConnState::Open { share, .. } => Some(*share),
            ConnState::AwaitOpen => None,
        }
    }

    /// Whether it holds a serving slot (showed a valid ticket).
    pub(crate) fn is_open(&self) -> bool {
        self.state != ConnState::AwaitOpen
    }

    pub(crate) fn downloader(&self) -> Option<&UserName> {
        match &self.state {
            ConnState::Open { downloader, .. } => Some(downloader),
            ConnState::AwaitOpen => None,
        }
    }

    /// Requests the peer is still owed an answer for.
    pub(crate) fn active(&self) -> usize {
        self.pending
            .values()
            .filter(|r| **r != Req::ReadingCancelled)
            .count()
    }

    pub(crate) fn admit(&mut self, index: u32, max: usize) -> Admit {
        match self.pending.get(&index) {
            Some(Req::Queued | Req::Reading) => Admit::Duplicate,
            Some(Req::ReadingCancelled) => {
                self.pending.insert(index, Req::Reading);
                Admit::Revived
            }
            None if self.active() >= max => Admit::Busy,
            None => {
                self.pending.insert(index, Req::Queued);
                self.queue.push_back(index);
                Admit::Queued
            }
        }
    }

    /// Drops a queued request, or marks a read in progress as unwanted.
    pub(crate) fn cancel(&mut self, index: u32) {
        match self.pending.get(&index) {
            Some(Req::Queued) => {
                self.pending.remove(&index);
                self.queue.retain(|&i| i != index);
            }
            Some(Req::Reading) => {
                self.pending.insert(index, Req::ReadingCancelled);
            }
            _ => {}
        }
    }

    /// Takes the oldest queued request and marks it `Reading`.
    pub(crate) fn start_read(&mut self) -> Option<u32> {
        let index = self.queue.pop_front()?;
        debug_assert_eq!(self.pending.get(&index), Some(&Req::Queued));
        self.pending.insert(index, Req::Reading);
        Some(index)
    }

    /// The read of `index` finished: true if its bytes should be sent.
    pub(crate) fn finish_read(&mut self, index: u32) -> bool {
        match self.pending.remove(&index) {
            Some(Req::Reading) => true,
            Some(Req::ReadingCancelled) | None => false,
            Some(Req::Queued) => {
                // Not being read: a driver bug. Keep it queued.
                self.pending.insert(index, Req::Queued);
                false
            }
        }
    }

    /// Queue and pending map agree. Returns what is wrong.
    pub(crate) fn check(&self, max: usize) -> Result<(), String> {
        let queued = self.pending.values().filter(|r| **r == Req::Queued).count();
        if queued != self.queue.len()
            || self
                .queue
                .iter()
                .any(|i| self.pending.get(i) != Some(&Req::Queued))
        {
            return Err("request queue and pending map disagree".into());
        }
        if self.active() > max {
            return Err(format!("{} requests > per-connection cap", self.active()));
        }
        if self.state == ConnState::AwaitOpen && !self.pending.is_empty() {
            return Err("requests accepted before Open".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_cancel_read_lifecycle() {
        let mut c = Conn::new(KeyId([1; 32]), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.admit(1, 2), Admit::Queued);
        assert_eq!(c.admit(1, 2), Admit::Duplicate);
        assert_eq!(c.admit(2, 2), Admit::Queued);
        assert_eq!(c.admit(3, 2), Admit::Busy);
        assert_eq!(c.start_read(), Some(1));
        c.cancel(1);
        c.cancel(2);
        assert_eq!(c.active(), 0, "cancelled read and dropped queue entry");
        assert_eq!(c.admit(1, 2), Admit::Revived);
        assert!(c.finish_read(1));
        assert!(!c.finish_read(1), "answered once");
        assert_eq!(c.start_read(), None);
    }
}
