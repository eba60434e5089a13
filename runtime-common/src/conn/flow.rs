//! A connection's write-queue count and its reader's backpressure
//! ([`QueuedLen`]): the one decision of when a reader pauses, for both
//! runtimes (a thread waits with [`QueuedLen::wait_blocking`], a task with
//! [`QueuedLen::wait`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use event_listener::{Event, Listener};

#[cfg(doc)]
use super::PEER_TRACKER_WRITE_QUEUE_LEN_MAX;
use super::WRITE_QUEUE_LEN_MAX;

/// Bytes queued for a writer and not yet written, counted by the sending
/// half and the writer together; and the connection's backpressure: its
/// reader hands the machine no new frame while the replies queued pass
/// [`READ_PAUSE_QUEUE_LEN`] or [`FRAMES_UNHANDLED_MAX`] frames it handed
/// over are not handled yet ([`QueuedLen::wait_blocking`],
/// [`QueuedLen::wait`]). A peer that sends requests and never reads the
/// answers then stops being read (TCP pushes back on it), and what its
/// connection holds stays bounded: at most [`READ_PAUSE_QUEUE_LEN`] plus
/// the replies to [`FRAMES_UNHANDLED_MAX`] frames, plus a read chunk.
#[derive(Debug, Clone, Default)]
pub struct QueuedLen(Arc<Flow>);

#[derive(Debug, Default)]
struct Flow {
    /// Bytes queued for the writer.
    queued: AtomicUsize,
    /// The bound on `queued`; 0 is [`WRITE_QUEUE_LEN_MAX`].
    max: AtomicUsize,
    /// Frames the reader handed over that the machine has not handled.
    unhandled: AtomicUsize,
    /// The writer has ended: a paused reader must not wait for it.
    ended: AtomicBool,
    /// Rung when the reader may go on.
    go: Event,
}

/// See [`QueuedLen::writer_guard`].
#[derive(Debug)]
pub struct WriterGuard(QueuedLen);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.writer_ended();
    }
}

/// Replies queued for a connection past which its reader pauses (issue 16
/// §2): the peer must read what it asked for before it is read again.
pub const READ_PAUSE_QUEUE_LEN: usize = 2 * 1024 * 1024;
/// Frames a connection's reader hands the machine before it waits for
/// them to be handled (so their replies are counted before more is read).
pub const FRAMES_UNHANDLED_MAX: usize = 8;

impl QueuedLen {
    /// Counts `len` more bytes; `false` (and nothing counted) if that
    /// would pass the bound ([`WRITE_QUEUE_LEN_MAX`] unless
    /// [`QueuedLen::set_max`] changed it).
    pub fn try_add(&self, len: usize) -> bool {
        let before = self.0.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > self.max() {
            self.0.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `len` bytes were written (or will never be).
    pub fn sub(&self, len: usize) {
        let before = self.0.queued.fetch_sub(len, Ordering::AcqRel);
        if before >= READ_PAUSE_QUEUE_LEN && before - len < READ_PAUSE_QUEUE_LEN {
            self.0.go.notify(usize::MAX);
        }
    }

    pub fn get(&self) -> usize {
        self.0.queued.load(Ordering::Relaxed)
    }

    /// The bound [`QueuedLen::try_add`] keeps.
    pub fn max(&self) -> usize {
        match self.0.max.load(Ordering::Relaxed) {
            0 => WRITE_QUEUE_LEN_MAX,
            m => m,
        }
    }

    /// Sets the bound (a peer tracker's connection,
    /// [`PEER_TRACKER_WRITE_QUEUE_LEN_MAX`]).
    pub fn set_max(&self, max: usize) {
        self.0.max.store(max.max(1), Ordering::Relaxed);
    }

    /// The reader hands the machine one frame.
    pub fn frame_read(&self) {
        self.0.unhandled.fetch_add(1, Ordering::AcqRel);
    }

    /// The machine has handled one frame of this connection (and queued
    /// its replies).
    pub fn frame_handled(&self) {
        let before = self.0.unhandled.fetch_sub(1, Ordering::AcqRel);
        if before == FRAMES_UNHANDLED_MAX {
            self.0.go.notify(usize::MAX);
        }
    }

    /// The writer has ended (the connection is going): a paused reader
    /// carries on, to find the socket closed.
    pub fn writer_ended(&self) {
        self.0.ended.store(true, Ordering::Release);
        self.0.go.notify(usize::MAX);
    }

    /// Held by a writer while it runs: when it ends (or its task is
    /// dropped), [`QueuedLen::writer_ended`].
    pub fn writer_guard(&self) -> WriterGuard {
        WriterGuard(self.clone())
    }

    /// Whether the reader may hand over another frame now.
    pub fn may_read(&self) -> bool {
        let f = &self.0;
        f.ended.load(Ordering::Acquire)
            || (f.queued.load(Ordering::Acquire) < READ_PAUSE_QUEUE_LEN
                && f.unhandled.load(Ordering::Acquire) < FRAMES_UNHANDLED_MAX)
    }

    /// Blocks the calling thread until [`QueuedLen::may_read`].
    pub fn wait_blocking(&self) {
        while !self.may_read() {
            let listener = self.0.go.listen();
            if self.may_read() {
                return;
            }
            listener.wait();
        }
    }

    /// Before a reader hands over a frame: blocks the thread until
    /// [`QueuedLen::may_read`], then counts the frame
    /// ([`QueuedLen::frame_read`]). `true` if it had to wait.
    pub fn before_frame_blocking(&self) -> bool {
        let waited = !self.may_read();
        self.wait_blocking();
        self.frame_read();
        waited
    }

    /// [`QueuedLen::before_frame_blocking`] in a task.
    pub async fn before_frame(&self) -> bool {
        let waited = !self.may_read();
        self.wait().await;
        self.frame_read();
        waited
    }

    /// Waits (in a task) until [`QueuedLen::may_read`].
    pub async fn wait(&self) {
        while !self.may_read() {
            let listener = self.0.go.listen();
            if self.may_read() {
                return;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::PEER_TRACKER_WRITE_QUEUE_LEN_MAX;
    use super::*;

    /// A connection's queue takes bytes up to `WRITE_QUEUE_LEN_MAX` and
    /// not one more; a peer tracker's, raised, up to its own bound.
    #[test]
    fn the_write_queue_is_bounded_and_a_peer_trackers_raised() {
        let q = QueuedLen::default();
        assert!(q.try_add(WRITE_QUEUE_LEN_MAX - 1));
        assert!(q.try_add(1), "at the bound");
        assert!(!q.try_add(1), "one byte past the bound");
        assert_eq!(q.get(), WRITE_QUEUE_LEN_MAX, "a refused add is not counted");
        q.set_max(PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
        assert!(q.try_add(PEER_TRACKER_WRITE_QUEUE_LEN_MAX - WRITE_QUEUE_LEN_MAX));
        assert!(!q.try_add(1));
        // What backpressure lets a peer make us queue fits well within it.
        let frame_max = p2p_proto::limits::FRAME_LEN_MAX as usize;
        let replies = READ_PAUSE_QUEUE_LEN + FRAMES_UNHANDLED_MAX * frame_max;
        assert!(2 * replies <= WRITE_QUEUE_LEN_MAX);
    }

    /// The reader may go on below both bounds, pauses at either, and a
    /// waiting reader is let go by the writer draining, by the machine
    /// handling a frame, or by the writer ending.
    #[test]
    fn the_reader_pauses_at_either_bound_and_is_let_go() {
        let q = QueuedLen::default();
        assert!(q.try_add(READ_PAUSE_QUEUE_LEN - 1));
        assert!(q.may_read(), "one byte below the queue bound");
        assert!(q.try_add(1));
        assert!(!q.may_read(), "at the queue bound");
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.wait_blocking())
        };
        q.sub(1);
        waiter.join().unwrap();
        for _ in 0..FRAMES_UNHANDLED_MAX - 1 {
            q.frame_read();
        }
        assert!(q.may_read(), "one frame below the bound");
        q.frame_read();
        assert!(!q.may_read(), "at the unhandled-frames bound");
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.wait_blocking())
        };
        q.frame_handled();
        waiter.join().unwrap();
        q.frame_read();
        assert!(!q.may_read());
        drop(q.writer_guard());
        assert!(q.may_read(), "a writer that ended holds nobody back");
    }
}
