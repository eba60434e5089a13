//! Writing pieces to a download's part file: with `O_DIRECT` while the
//! device keeps up ([`WriteMode::Auto`], [`DirectGate`]), or through the
//! page cache, with writeback started early and pages dropped once clean
//! by the [`Writeback`] thread ([`CacheTrim`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::SyncSender;

use super::*;

/// How a download's pieces reach the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// `O_DIRECT` (no copy into the page cache, nothing left for the
    /// kernel to write back or reclaim) while the device keeps up with
    /// the network; a download whose writes fall behind moves to the page
    /// cache for the rest of its life ([`DirectGate`]). The default.
    #[default]
    Auto,
    /// Always `O_DIRECT` where the file system allows it: each write
    /// waits for the device (`client --direct-writes`).
    Direct,
    /// Always through the page cache with early writeback and dropped
    /// pages ([`CacheTrim`]; `client --buffered-writes`).
    PageCache,
}

/// Direct writes over which [`DirectGate`] measures how far the device
/// lags: 32 MiB at 512 KiB pieces (tens of milliseconds on a device that
/// keeps up).
pub const DIRECT_SPAN_WRITES: u32 = 64;
/// The share of a download's window that its writes may fill on average
/// over [`DIRECT_LAG_SPANS`] spans in a row before [`DirectGate`] moves
/// it to the page cache.
pub const DIRECT_LAG_SHARE: f64 = 0.6;
/// Spans of [`DIRECT_SPAN_WRITES`] in a row over [`DIRECT_LAG_SHARE`]
/// that move a download: one span (32 MiB, 30 ms on this project's VM
/// disk) can be a hiccup of a fast device; a 4 GiB download on the virtio
/// disk was moved by one span at 10.4 of 16 and then took 6.0 s instead
/// of 3.9, its last 3.5 GiB held to the kernel's writeback.
pub const DIRECT_LAG_SPANS: u32 = 2;
/// The quick test of [`DirectGate`]: a stretch of at least this long
/// (closed by a direct write ending, with at least
/// [`DIRECT_QUICK_WRITES`] of them in it) ...
pub const DIRECT_QUICK_SPAN: std::time::Duration = std::time::Duration::from_millis(20);
/// ... in which at least this many direct writes ended ...
pub const DIRECT_QUICK_WRITES: u32 = 4;
/// ... and the download's writes filled this share of its window on
/// average moves it to the page cache.
pub const DIRECT_QUICK_SHARE: f64 = 0.8;
/// One direct write that took this long (from its start on a disk
/// worker to its end, the wait in the queue not counted) moves the
/// download to the page cache at once: the device stalls, as a disk
/// throttled in bursts does (a cloud volume's throughput limit, the loop
/// device of `bench/slow-device`: 74-86 ms). On this project's VM disk
/// the longest of 4000 direct writes took 4.3 ms.
pub const DIRECT_STALL: std::time::Duration = std::time::Duration::from_millis(40);
/// ... among the download's first this many direct writes (64 MiB): a
/// device throttled in bursts shows it within its first burst, while a
/// fast device can stall once under load (on the virtio disk one write of
/// a 4 GiB download took 40 ms when the host was busy), and the later in
/// a download, the more likely such a hiccup; the level tests judge the
/// rest of the download.
pub const DIRECT_STALL_EARLY: u32 = 128;

/// Decides whether a download in [`WriteMode::Auto`] still writes with
/// `O_DIRECT`. A download's window (its requests in flight,
/// `DownloadConfig::max_parallel`) also holds its pieces waiting for the
/// disk, so the number of its writes queued or running, averaged over
/// time, says whether the network waits for the device: on a device that
/// keeps up it stays low (3.6 of 16 on this project's VM disk), on one
/// slower than the network the window fills with writes (13.7 of 16 on a
/// loop device throttled to 150 MiB/s; one span of the first reached
/// 7.6, none of the second went below 13.0). Over each
/// [`DIRECT_SPAN_WRITES`] direct writes, an average of
/// [`DIRECT_LAG_SHARE`] of the window or more, [`DIRECT_LAG_SPANS`] spans
/// in a row, moves the download to the page cache, which never waits for
/// the device, for good.
///
/// A slow device shows itself sooner than 64 of its writes: on the loop
/// device the window is full after about 20 ms and stays full while the
/// throttle holds writes back, so the 64th write ended 0.1-0.4 s into
/// the download, long enough to be a tenth of it. So a quicker, stricter
/// test runs beside it: over each stretch of at least
/// [`DIRECT_QUICK_SPAN`] (20 ms, closed when a direct write ends, with at
/// least [`DIRECT_QUICK_WRITES`] writes ended in it) an average of
/// [`DIRECT_QUICK_SHARE`] = 80% of the window moves it too. Replayed
/// over the writes of 4 downloads on each device: on the virtio disk no
/// 20 ms stretch went above 10.5 of 16 (the bound is 12.8); on the loop
/// device every download moved after 96-109 ms (the 64-write test alone:
/// 109-409 ms).
///
/// Neither test sees a device that takes writes in bursts and then holds
/// them all back: the loop device of `bench/slow-device` took its first
/// 15 MiB in 19 ms, then ended no write for 74-86 ms, then took another
/// burst; the level averaged over a stretch that began in the burst
/// stayed under the bound, and downloads moved only at the second stall,
/// 184-193 ms in. So a single direct write among the first
/// [`DIRECT_STALL_EARLY`] that took [`DIRECT_STALL`] (40 ms) moves the
/// download at once: on the loop device at the end of the first stall. One per
/// download, shared by the loop that queues its writes and the disk
/// workers that run them; the callers pass the time in.
#[derive(Debug)]
pub struct DirectGate {
    window: u32,
    /// Moved to the page cache.
    off: AtomicBool,
    level: Mutex<Level>,
}

/// The download's writes queued or running, integrated over time.
#[derive(Debug, Default)]
struct Level {
    writes: u32,
    /// When `writes` last changed.
    changed: Option<std::time::Instant>,
    /// The current span of [`DIRECT_SPAN_WRITES`] writes, and the
    /// current stretch of the quick test ([`DIRECT_QUICK_SPAN`]).
    long: Span,
    quick: Span,
    /// Spans of the 64-write test in a row whose mean was over its bound.
    long_over: u32,
    /// Direct writes ended so far.
    direct_ended: u32,
}

/// A stretch of time over which the level is averaged.
#[derive(Debug, Default)]
struct Span {
    /// Since when, the integral of `writes` over it (piece seconds), and
    /// the direct writes that ended in it.
    since: Option<std::time::Instant>,
    area: f64,
    done: u32,
}

impl Span {
    /// A direct write ended at `now`: if `full(writes ended, length)`,
    /// the span closes and a new one starts; its mean level is returned.
    fn ended(
        &mut self,
        now: std::time::Instant,
        full: impl Fn(u32, std::time::Duration) -> bool,
    ) -> Option<f64> {
        self.done += 1;
        let len = self.since.map_or(std::time::Duration::ZERO, |t| {
            now.saturating_duration_since(t)
        });
        if !full(self.done, len) {
            return None;
        }
        let mean = self.area / len.as_secs_f64().max(1e-6);
        *self = Span {
            since: Some(now),
            area: 0.0,
            done: 0,
        };
        Some(mean)
    }
}

impl Level {
    fn advance(&mut self, now: std::time::Instant) {
        let add = self.changed.map_or(0.0, |t| {
            f64::from(self.writes) * now.saturating_duration_since(t).as_secs_f64()
        });
        self.changed = Some(now);
        for s in [&mut self.long, &mut self.quick] {
            s.area += add;
            s.since.get_or_insert(now);
        }
    }
}

impl DirectGate {
    /// The gate of a download whose window is `window` pieces.
    pub fn new(window: usize) -> Self {
        DirectGate {
            window: u32::try_from(window).unwrap_or(u32::MAX).max(1),
            off: AtomicBool::new(false),
            level: Mutex::default(),
        }
    }

    fn level(&self) -> std::sync::MutexGuard<'_, Level> {
        self.level.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A write of the download was queued for the disk workers at `now`.
    pub fn queued(&self, now: std::time::Instant) {
        let mut l = self.level();
        l.advance(now);
        l.writes += 1;
    }

    /// Whether a write starting now goes to the device with `O_DIRECT`
    /// under `mode`.
    pub fn direct(&self, mode: WriteMode) -> bool {
        match mode {
            WriteMode::Direct => true,
            WriteMode::PageCache => false,
            WriteMode::Auto => !self.off.load(Ordering::Acquire),
        }
    }

    /// A queued write that a disk worker started at `started` ended at
    /// `now`; `direct`: it went with `O_DIRECT`.
    pub fn end(
        &self,
        mode: WriteMode,
        direct: bool,
        started: std::time::Instant,
        now: std::time::Instant,
    ) {
        let mut l = self.level();
        l.advance(now);
        l.writes = l.writes.saturating_sub(1);
        if mode != WriteMode::Auto || !direct {
            return;
        }
        let window = f64::from(self.window);
        // (A millionth of a piece of slack for the sum's rounding.)
        let over = |mean: Option<f64>, share: f64| mean.filter(|m| m + 1e-6 >= share * window);
        l.direct_ended = l.direct_ended.saturating_add(1);
        let early = l.direct_ended <= DIRECT_STALL_EARLY;
        let long = l.long.ended(now, |n, _| n >= DIRECT_SPAN_WRITES);
        let mut long_lag = None;
        if long.is_some() {
            long_lag = over(long, DIRECT_LAG_SHARE);
            l.long_over = if long_lag.is_some() {
                l.long_over.saturating_add(1)
            } else {
                0
            };
        }
        let long_lag = long_lag.filter(|_| l.long_over >= DIRECT_LAG_SPANS);
        let quick = l.quick.ended(now, |n, len| {
            n >= DIRECT_QUICK_WRITES && len >= DIRECT_QUICK_SPAN
        });
        drop(l);
        let lagging = long_lag.or(over(quick, DIRECT_QUICK_SHARE));
        let took = now.saturating_duration_since(started);
        let stalled = early && took >= DIRECT_STALL;
        if (lagging.is_some() || stalled) && !self.off.swap(true, Ordering::AcqRel) {
            match lagging {
                Some(mean) => tracing::info!(
                    "the device is slower than the network ({mean:.1} of this download's {} \
                     pieces in flight waited for it on average): the download is written \
                     through the page cache from now on",
                    self.window
                ),
                None => tracing::info!(
                    "the device stalled (one write of a piece took {} ms): the download is \
                     written through the page cache from now on",
                    took.as_millis()
                ),
            }
        }
    }

    /// Whether the download has moved to the page cache.
    pub fn is_off(&self) -> bool {
        self.off.load(Ordering::Acquire)
    }

    /// Whether the download's page-cache writes have their writeback
    /// started early and their pages dropped ([`CacheTrim`]) under
    /// `mode`: always, except once this gate has moved a download in
    /// [`WriteMode::Auto`] off `O_DIRECT`. Its device is then known to
    /// be slower than the network, and starting writeback early cannot
    /// make it faster: it only spends the CPU the download needs (12% of
    /// the leecher's samples on the loop device throttled to 150 MiB/s,
    /// half of it walking the file's pages for clean ones that were not
    /// there yet). Such a download leaves writeback to the kernel's
    /// flusher, as curl and every program writing through the page cache
    /// do; the kernel's dirty limits bound what it holds.
    pub fn trims(&self, mode: WriteMode) -> bool {
        mode != WriteMode::Auto || !self.is_off()
    }
}

/// A download written through the page cache has the pages it wrote
/// dropped every this many pieces, once written back ([`CacheTrim`]):
/// 16 MiB at 512 KiB pieces.
pub const CACHE_TRIM_LAG: usize = 32;
/// Pieces whose writeback waits to be started by the [`Writeback`]
/// thread. When it is this far behind (a device slower than the
/// network), a piece's writeback is left to the kernel's flusher, as for
/// any program writing through the page cache.
pub const WRITEBACK_QUEUE_MAX: usize = 64;

/// Keeps a download written through the page cache from filling it,
/// without ever making a piece write wait for the device. Each piece
/// written is handed to the [`Writeback`] thread, which starts its
/// writeback at once (`posix_fadvise(DONTNEED)` on dirty pages starts
/// their writeback and drops nothing) and, every [`CACHE_TRIM_LAG`]
/// pieces, drops the download's pages that are written back by then
/// (`DONTNEED` over the whole file drops clean pages only). On a device
/// as fast as the network the cache holds about [`CACHE_TRIM_LAG`]
/// pieces of a download whatever its size; on a slower one it holds what
/// the device has not taken yet, up to the kernel's dirty limits, and
/// the download goes on at the speed of the page cache (the disk
/// workers never start writeback themselves: on a device whose queue is
/// full, starting writeback blocks). One per download, shared by its
/// disk workers; a download in [`WriteMode::Auto`] that [`DirectGate`]
/// moved off `O_DIRECT` stops using it ([`DirectGate::trims`]).
#[derive(Debug)]
pub struct CacheTrim {
    /// A handle of the part file the writeback thread can keep.
    file: OnceLock<Arc<File>>,
    /// Pieces written since the last drop was queued.
    since: AtomicUsize,
    /// `None` if the thread could not be started: the kernel's flusher
    /// then does it all.
    writeback: Option<Arc<Writeback>>,
}

impl Default for CacheTrim {
    fn default() -> Self {
        CacheTrim::with(Writeback::shared())
    }
}

impl CacheTrim {
    /// A trim handing its work to `writeback` (the shared thread, or a
    /// test's own).
    pub fn with(writeback: Option<Arc<Writeback>>) -> Self {
        CacheTrim {
            file: OnceLock::new(),
            since: AtomicUsize::new(0),
            writeback,
        }
    }

    /// `len` bytes at `offset` of `file` were just written through the
    /// cache. Never waits for the device or for the writeback thread.
    pub fn written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let Some(wb) = &self.writeback else {
            return Ok(());
        };
        let handle = match self.file.get() {
            Some(f) => f.clone(),
            None => {
                let dup = Arc::new(file.try_clone()?);
                self.file.get_or_init(|| dup).clone()
            }
        };
        let drop_clean = self.since.fetch_add(1, Ordering::AcqRel) + 1 >= CACHE_TRIM_LAG;
        let queued = wb.queue(WritebackReq::Piece {
            file: handle,
            offset,
            len,
            drop_clean,
        });
        if queued && drop_clean {
            self.since.store(0, Ordering::Release);
        }
        Ok(())
    }

    /// Pieces written since the last drop of clean pages was queued.
    pub fn pending(&self) -> usize {
        self.since.load(Ordering::Acquire)
    }
}

/// The thread that starts the writeback of pieces written through the
/// page cache and drops their pages once clean ([`CacheTrim`]): one for
/// the process ([`Writeback::shared`]), fed through a queue of at most
/// [`WRITEBACK_QUEUE_MAX`] requests. Starting writeback can block (a
/// device whose queue is full); only this thread ever waits for it.
#[derive(Debug)]
pub struct Writeback {
    tx: SyncSender<WritebackReq>,
    /// Requests not queued because the thread was that far behind.
    skipped: AtomicU64,
}

/// What the writeback thread is asked to do.
pub enum WritebackReq {
    /// A piece was written: start its writeback, and with `drop_clean`
    /// drop every page of the file already written back.
    Piece {
        file: Arc<File>,
        offset: u64,
        len: u64,
        drop_clean: bool,
    },
    /// Run this on the thread (tests: hold the thread, or learn that
    /// everything queued before is done).
    #[cfg(test)]
    Call(Box<dyn FnOnce() + Send>),
}

impl Writeback {
    /// The process's writeback thread, started on first use; `None` (and
    /// a warning) if no thread could be started.
    pub fn shared() -> Option<Arc<Writeback>> {
        static SHARED: OnceLock<Option<Arc<Writeback>>> = OnceLock::new();
        SHARED
            .get_or_init(|| match Writeback::spawn() {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "could not start the writeback thread ({e}); downloads are left \
                         to the kernel's writeback and may fill the page cache"
                    );
                    None
                }
            })
            .clone()
    }

    /// A writeback thread of its own; it ends when the last handle is
    /// dropped.
    pub fn spawn() -> io::Result<Arc<Writeback>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(WRITEBACK_QUEUE_MAX);
        thread::Builder::new()
            .name("p2p-writeback".into())
            .spawn(move || {
                for req in rx {
                    run_writeback(req);
                }
            })?;
        Ok(Arc::new(Writeback {
            tx,
            skipped: AtomicU64::new(0),
        }))
    }

    /// Queues `req` if the thread is less than [`WRITEBACK_QUEUE_MAX`]
    /// requests behind; never waits.
    pub fn queue(&self, req: WritebackReq) -> bool {
        match self.tx.try_send(req) {
            Ok(()) => true,
            Err(_) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues `req`, waiting for room (tests).
    #[cfg(test)]
    pub(crate) fn queue_waiting(&self, req: WritebackReq) {
        self.tx.send(req).expect("the writeback thread runs");
    }

    /// Requests not queued so far (the thread was behind).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

fn run_writeback(req: WritebackReq) {
    match req {
        WritebackReq::Piece {
            file,
            offset,
            len,
            drop_clean,
        } => {
            let advise = |off: u64, len: u64| {
                rustix::fs::fadvise(
                    &*file,
                    off,
                    std::num::NonZeroU64::new(len),
                    rustix::fs::Advice::DontNeed,
                )
            };
            // Advice only: a failure leaves the pages to the kernel.
            let _ = advise(offset, len);
            if drop_clean {
                let _ = advise(0, 0);
            }
        }
        #[cfg(test)]
        WritebackReq::Call(f) => f(),
    }
}

/// The size of the writes that put a piece into the page cache: 32 KiB,
/// 16 to a piece.
///
/// The kernel gives a buffered write page-cache folios as large as the
/// write, up to the whole piece. On this project's machines (Firecracker
/// guests with free page reporting: `page_reporting_order` 9 when this
/// was measured, 11 on the VM of 2026-12-04) free blocks of 2 MiB (8 MiB)
/// and more are handed back to the host, and the next touch of each of
/// their pages costs a fault in the host. A 512 KiB folio comes from such
/// blocks as soon as the few smaller free blocks of 512 KiB and more run
/// out; 32 KiB folios come first from the many smaller free
/// fragments, which are never handed back. 1 GiB written with `dd` on
/// memory that had sat free: 0.35-0.45 s of system time in 16 KiB
/// writes, 0.67-2.1 s in 512 KiB writes (alternated); on memory freed a
/// moment before, 0.27-0.37 s against 0.19-0.23 s. A download of 1 GiB to
/// the slow loop device (through the page cache after its first span):
/// 1.06-1.28 s in 32 KiB writes, 2.0-2.9 s in whole pieces (bench first
/// runs, alternated; 16 KiB: 1.31-1.65 s, 128 KiB: 1.37-1.67 s). curl
/// writes 16 KiB at a time.
pub const PAGE_CACHE_WRITE_CHUNK: usize = 32 * 1024;

/// Writes `data` at `offset` of a part file: through `direct` (the file
/// opened with `O_DIRECT`) when offset and length are multiples of
/// [`DIRECT_ALIGN`] (every whole piece; a buffer that is not aligned is
/// copied into an aligned pooled one first), otherwise, or if the direct write
/// is refused as invalid, through the ordinary `file` in writes of
/// [`PAGE_CACHE_WRITE_CHUNK`], holding `writer` (the file's one
/// page-cache writer, `DlFile::cache_writer`), then handed to `trim` if
/// given (see [`CacheTrim`]).
pub fn write_piece(
    file: &File,
    direct: Option<&File>,
    trim: Option<&CacheTrim>,
    writer: &Mutex<()>,
    data: &[u8],
    offset: u64,
) -> io::Result<()> {
    let fits =
        data.len().is_multiple_of(DIRECT_ALIGN) && offset.is_multiple_of(DIRECT_ALIGN as u64);
    if let Some(d) = direct.filter(|_| fits && !data.is_empty()) {
        let r = if data.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
            d.write_all_at(data, offset)
        } else {
            let mut buf = buffers::take(data.len() + DIRECT_ALIGN);
            let at = buffers::aligned_start(&buf, 0);
            buf[at..at + data.len()].copy_from_slice(data);
            let r = d.write_all_at(&buf[at..at + data.len()], offset);
            buffers::give_back(buf);
            r
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            r => return r,
        }
    }
    let serial = writer.lock().unwrap_or_else(|e| e.into_inner());
    for (i, chunk) in data.chunks(PAGE_CACHE_WRITE_CHUNK).enumerate() {
        file.write_all_at(chunk, offset + (i * PAGE_CACHE_WRITE_CHUNK) as u64)?;
    }
    drop(serial);
    match trim {
        Some(t) => t.written(file, offset, data.len() as u64),
        None => Ok(()),
    }
}
