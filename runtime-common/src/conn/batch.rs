//! What a writer is asked to send ([`WriterMsg`], [`FileRange`]) and how
//! queued frames are joined into one write ([`collect_batch`], [`Batch`]):
//! small frames copied together, piece data written from its own buffer,
//! file ranges read into pooled buffers when their turn comes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use super::WRITE_BATCH_LEN_MAX;
use crate::buffers;

/// What a writer is asked to do.
#[derive(Debug)]
pub enum WriterMsg {
    /// Bytes to write: a whole frame, or a part of one whose other parts
    /// are queued right next to it.
    Frame(Bytes),
    /// A part of a frame that is a range of a file, read when its turn
    /// comes.
    File(FileRange),
    Close,
}

/// `len` bytes at `offset` of `file`, to be sent as they are. The file is
/// a real one for the runtimes' writers; the client driver core is generic
/// over it (the simulation's is on its in-memory disk).
#[derive(Debug, Clone)]
pub struct FileRange<F = Arc<File>> {
    pub file: F,
    pub offset: u64,
    pub len: usize,
}

/// Queued bytes at or above this length are written from their own buffer
/// (a vectored write); shorter ones are copied together first.
pub const WRITE_COPY_LEN_MAX: usize = 16 * 1024;
/// Most buffers handed to one vectored write.
const WRITE_SLICES_MAX: usize = 64;

/// What a writer sends next, in order: small frames copied into one
/// buffer, large ones (piece data) kept as they are, and file ranges
/// (read into memory by [`Batch::load_files`] before they are encrypted).
#[derive(Debug, Default)]
pub struct Batch {
    parts: VecDeque<Part>,
    small: BytesMut,
    len: usize,
}

#[derive(Debug)]
enum Part {
    Mem(Bytes),
    File(FileRange),
}

impl Batch {
    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        if b.len() < WRITE_COPY_LEN_MAX {
            self.small.extend_from_slice(&b);
            return;
        }
        self.seal();
        self.parts.push_back(Part::Mem(b));
    }

    fn push_file(&mut self, r: FileRange) {
        self.len += r.len;
        self.seal();
        if r.len > 0 {
            self.parts.push_back(Part::File(r));
        }
    }

    /// Ends the run of small frames copied so far.
    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.parts.push_back(Part::Mem(self.small.split().freeze()));
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next buffers to write, in order, up to the next file range
    /// (empty when one is first: see [`Batch::front_file`]).
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        let parts = self.parts.iter().take(WRITE_SLICES_MAX);
        parts
            .map_while(|p| match p {
                Part::Mem(b) => Some(IoSlice::new(b)),
                Part::File(_) => None,
            })
            .collect()
    }

    /// Reads every file range into a pooled buffer of its own, so the
    /// whole batch is in memory for encryption. A file that ends early is
    /// an error (`UnexpectedEof`): the frame it belongs to cannot be
    /// finished, so the connection fails.
    pub fn load_files(&mut self) -> io::Result<()> {
        for part in self.parts.iter_mut() {
            if let Part::File(r) = part {
                let mut buf = buffers::take(r.len);
                r.file.read_exact_at(&mut buf[..r.len], r.offset)?;
                *part = Part::Mem(buffers::freeze(buf, 0..r.len));
            }
        }
        Ok(())
    }

    /// The file range to send next, if that is what comes first.
    pub fn front_file(&self) -> Option<&FileRange> {
        match self.parts.front() {
            Some(Part::File(r)) => Some(r),
            _ => None,
        }
    }

    /// `n` bytes of [`Batch::slices`] or of [`Batch::front_file`] were
    /// written.
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            let left = match front {
                Part::Mem(b) if n < b.len() => {
                    b.advance(n);
                    return;
                }
                Part::File(r) if n < r.len => {
                    r.offset += n as u64;
                    r.len -= n;
                    return;
                }
                Part::Mem(b) => b.len(),
                Part::File(r) => r.len,
            };
            n -= left;
            self.parts.pop_front();
        }
    }
}

/// Joins `first` and whatever else `next` has ready (up to the batch
/// budget) into `batch`; returns whether a close came and the frame bytes
/// taken. `next` returns `None` when nothing more is queued, and
/// `Some(WriterMsg::Close)` when the sending half has gone.
pub fn collect_batch(
    first: WriterMsg,
    mut next: impl FnMut() -> Option<WriterMsg>,
    batch: &mut Batch,
) -> (bool, usize) {
    let mut len = 0;
    let mut msg = Some(first);
    let mut closing = false;
    while let Some(m) = msg.take() {
        match m {
            WriterMsg::Frame(f) => {
                len += f.len();
                batch.push(f);
            }
            WriterMsg::File(r) => {
                len += r.len;
                batch.push_file(r);
            }
            WriterMsg::Close => {
                closing = true;
                break;
            }
        }
        if batch.len() >= WRITE_BATCH_LEN_MAX {
            break;
        }
        msg = next();
    }
    batch.seal();
    (closing, len)
}

#[cfg(test)]
mod tests {
    use super::super::{QueuedLen, WRITE_QUEUE_LEN_MAX};
    use super::*;

    /// Writes `batch` out the way a writer does, at most `step` bytes per
    /// write; returns what was written.
    fn write_all(batch: &mut Batch, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !batch.is_empty() {
            let mut n = 0;
            for s in batch.slices() {
                let k = s.len().min(step - n);
                out.extend_from_slice(&s[..k]);
                n += k;
                if n == step {
                    break;
                }
            }
            batch.advance(n);
        }
        out
    }

    #[test]
    fn large_parts_are_written_from_their_own_buffers_in_order() {
        let head = Bytes::from_static(b"head");
        let body = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut q = vec![
            WriterMsg::Frame(body.clone()),
            WriterMsg::Frame(Bytes::from_static(b"tail")),
        ]
        .into_iter();
        let mut batch = Batch::default();
        let r = collect_batch(WriterMsg::Frame(head), || q.next(), &mut batch);
        assert_eq!(r, (false, 4 + 100_000 + 4));
        let slices = batch.slices();
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[1].as_ptr(), body.as_ptr(), "not copied");
        drop(slices);
        let mut want = b"head".to_vec();
        want.extend_from_slice(&body);
        want.extend_from_slice(b"tail");
        assert_eq!(write_all(&mut batch, 7_777), want, "short writes resume");
        assert!(batch.is_empty() && batch.slices().is_empty());
    }

    /// File ranges are read into memory in their place among the frames
    /// (then written like any bytes, resuming after short writes); a file
    /// that ends early is an error.
    #[test]
    fn file_ranges_are_loaded_in_order() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("share.bin");
        let src: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
        File::create(&src_path).unwrap().write_all(&src).unwrap();
        let file = Arc::new(File::open(&src_path).unwrap());
        let range = |offset: u64, len: usize| FileRange {
            file: file.clone(),
            offset,
            len,
        };
        let mut q = vec![
            WriterMsg::File(range(10, 200_000)),
            WriterMsg::Frame(Bytes::from_static(b"mid")),
            WriterMsg::File(range(250_000, 50_000)),
        ]
        .into_iter();
        let mut batch = Batch::default();
        let r = collect_batch(
            WriterMsg::Frame(Bytes::from_static(b"head")),
            || q.next(),
            &mut batch,
        );
        assert_eq!(r, (false, 4 + 200_000 + 3 + 50_000));
        assert!(batch.slices().len() == 1, "stops at the first file range");
        batch.load_files().unwrap();
        assert!(batch.front_file().is_none());
        let mut want = b"head".to_vec();
        want.extend_from_slice(&src[10..200_010]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&src[250_000..]);
        assert_eq!(write_all(&mut batch, 65_536), want);
        // Past the end of the file: the range cannot be filled.
        let mut q = std::iter::empty();
        collect_batch(WriterMsg::File(range(299_990, 20)), || q.next(), &mut batch);
        let e = batch.load_files().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_batch_stops_at_close_or_the_budget() {
        let mut q = vec![
            WriterMsg::Frame(Bytes::from_static(b"bb")),
            WriterMsg::Close,
        ]
        .into_iter();
        let mut batch = Batch::default();
        let r = collect_batch(
            WriterMsg::Frame(Bytes::from_static(b"a")),
            || q.next(),
            &mut batch,
        );
        assert_eq!(r, (true, 3));
        assert_eq!(write_all(&mut batch, usize::MAX), b"abb");
        let big = Bytes::from(vec![0u8; WRITE_BATCH_LEN_MAX]);
        let mut q = std::iter::repeat_with(|| WriterMsg::Frame(Bytes::from_static(b"x")));
        let r = collect_batch(WriterMsg::Frame(big), || q.next(), &mut batch);
        assert_eq!(r, (false, WRITE_BATCH_LEN_MAX));
        let queued = QueuedLen::default();
        assert!(queued.try_add(WRITE_QUEUE_LEN_MAX));
        assert!(!queued.try_add(1));
        queued.sub(WRITE_QUEUE_LEN_MAX);
        assert_eq!(queued.get(), 0);
    }
}
