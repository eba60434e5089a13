//! Writing pieces to a download's part file: through the page cache with
//! early writeback and dropped pages ([`CacheTrim`]), or with `O_DIRECT`.

use super::*;

/// A download written through the page cache waits for the device
/// (`fdatasync`) after this many pieces, then drops the pages written
/// ([`CacheTrim`]): 16 MiB at 512 KiB pieces.
pub const CACHE_TRIM_LAG: usize = 32;

/// Keeps a download written through the page cache from filling it, and
/// the device busy from the first piece: each piece written is handed to
/// the kernel's writeback at once (`posix_fadvise(DONTNEED)` on dirty
/// pages starts their writeback, and drops those already clean); every
/// [`CACHE_TRIM_LAG`] pieces, one disk worker waits for the file's
/// writeback (`fdatasync`, by then mostly done) and drops the file's
/// clean pages. So the cache holds about [`CACHE_TRIM_LAG`] pieces of a
/// download whatever its size and whatever the device's speed, and a
/// slow device slows the writes instead of filling memory. Shared by
/// the disk workers of one download.
#[derive(Debug, Default)]
pub struct CacheTrim {
    /// Pieces written since the last wait.
    since: AtomicUsize,
    /// Held by the worker waiting for writeback (one at a time).
    waiting: Mutex<()>,
}

impl CacheTrim {
    /// `len` bytes at `offset` of `file` were just written through the cache.
    pub fn written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let drop_pages = |off: u64, len: u64| {
            rustix::fs::fadvise(
                file,
                off,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            )
        };
        drop_pages(offset, len)?;
        if self.since.fetch_add(1, Ordering::AcqRel) + 1 < CACHE_TRIM_LAG {
            return Ok(());
        }
        // Another worker is already waiting: it will catch this too.
        let Ok(_w) = self.waiting.try_lock() else {
            return Ok(());
        };
        self.since.store(0, Ordering::Release);
        file.sync_data()?;
        drop_pages(0, 0)?;
        Ok(())
    }

    /// Pieces written since the last wait for the device.
    pub fn pending(&self) -> usize {
        self.since.load(Ordering::Acquire)
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
