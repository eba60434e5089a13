//! Writing pieces to a download's part file: through the page cache, with
//! writeback started early and pages dropped once clean by the
//! [`Writeback`] thread ([`CacheTrim`]), or with `O_DIRECT`.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::SyncSender;

use super::*;

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
/// disk workers.
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

/// Writes `data` at `offset` of a part file: through `direct` (the file
/// opened with `O_DIRECT`) when offset and length are multiples of
/// [`DIRECT_ALIGN`] (every whole piece; a buffer that is not aligned is
/// copied into an aligned pooled one first), otherwise, or if the direct write
/// is refused as invalid, through the ordinary `file`, then handed to
/// `trim` if given (see [`CacheTrim`]).
pub fn write_piece(
    file: &File,
    direct: Option<&File>,
    trim: Option<&CacheTrim>,
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
    file.write_all_at(data, offset)?;
    match trim {
        Some(t) => t.written(file, offset, data.len() as u64),
        None => Ok(()),
    }
}
