//! The sending side of the piece path: a seeder's `Serve` (serve this
//! range of this share on this connection) becomes the piece's frame head
//! and its file range queued on the connection's writer, which reads the
//! range into a pooled buffer and encrypts it ([`FrameSink::send_file`]);
//! the machine hears `Served` at once (the `later` queue), or
//! `ServeFailed` with a typed reason. Nothing here blocks the loop: a
//! share's file is opened (and its length read) by a disk job the first
//! time it is served or when it is shared, the serves that wait for it
//! held in [`ShareFile::Opening`]; the piece's read-ahead
//! (`posix_fadvise` WILLNEED) is a disk job too, so the writer's read
//! rarely waits for the disk. Per piece: one frame head, one queued file
//! range, one read-ahead job; no copy of the data before encryption.

use std::io;

use bytes::{Bytes, BytesMut};
use p2p_proto::PeerMsg;
use p2p_state::client::node::{self as cn, PeerConnId, PeerOut};
use p2p_state::seeder::{ServeError, ShareId};

use super::{ClientIo, Core, Job};
use crate::clock::Now;
use crate::conn::{FileRange, FrameSink};
use crate::known_trackers::Pins;

/// A `Serve` the driver holds while its share's file is being opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct Serve {
    conn: PeerConnId,
    index: u32,
    offset: u64,
    len: u32,
}

/// An uploaded share's file, as the loop knows it (`F`: the I/O's open
/// file, [`ClientIo::File`]).
#[derive(Debug)]
pub(super) enum ShareFile<F> {
    /// A disk job is opening it; these serves wait for it.
    Opening(Vec<Serve>),
    /// Open, `len` bytes long when it was opened.
    Open { file: F, len: u64 },
}

/// A piece frame's headers (frame length, message tag, index, length),
/// as the codec builds them.
fn piece_head(index: u32, len: usize) -> Bytes {
    Bytes::copy_from_slice(&PeerMsg::piece_frame_head(index, len as u32))
}

/// Encodes and queues a message for a peer; a piece's data is queued as it
/// is, behind its headers, so it is never copied into a frame.
pub(super) fn send_peer_msg(w: &impl FrameSink, msg: PeerOut) {
    let mut b = BytesMut::new();
    match msg {
        PeerOut::Msg(PeerMsg::Piece { index, data }) => {
            w.send_parts(piece_head(index, data.len()), data);
        }
        PeerOut::Hello(h) => {
            p2p_proto::encode_msg(&h, &mut b);
            w.send(b.freeze());
        }
        PeerOut::Msg(m) => {
            p2p_proto::encode_msg(&m, &mut b);
            w.send(b.freeze());
        }
    }
}

impl<R: ClientIo, C: Now, P: Pins> Core<R, C, P> {
    /// Executes a `Serve`: the piece goes out from its share's file, now
    /// if the file is open, once it is if it is being opened.
    pub(super) fn serve(
        &mut self,
        share: ShareId,
        conn: PeerConnId,
        index: u32,
        offset: u64,
        len: u32,
    ) {
        let s = Serve {
            conn,
            index,
            offset,
            len,
        };
        let n = match share {
            ShareId::Download(dl) => {
                let file = self.dl_files.get(&dl).map(R::part_file);
                return match file {
                    // A part file is allocated whole when it is opened.
                    Some(file) => self.send_piece(s, file, None),
                    None => self.serve_failed(s, ServeError::NoFile),
                };
            }
            ShareId::Upload(n) => n,
        };
        if !self.open_share(n) {
            return self.serve_failed(s, ServeError::NoFile);
        }
        match self.share_files.get_mut(&n) {
            Some(ShareFile::Open { file, len }) => {
                let (file, len) = (file.clone(), *len);
                self.send_piece(s, file, Some(len))
            }
            Some(ShareFile::Opening(waiting)) => waiting.push(s),
            None => unreachable!("open_share keeps an entry"),
        }
    }

    /// Starts opening uploaded share `n`'s file off the loop, unless it is
    /// open or being opened; false if the driver has no path for it.
    pub(super) fn open_share(&mut self, n: u64) -> bool {
        if self.share_files.contains_key(&n) {
            return true;
        }
        let path = self.paths.lock().expect("paths").shares.get(&n).cloned();
        let Some((path, _)) = path else {
            return false;
        };
        self.share_files.insert(n, ShareFile::Opening(Vec::new()));
        self.io.disk(Job::OpenShare { share: n, path });
        true
    }

    /// Share `n`'s file is open (with its length then), or could not be
    /// opened: the serves waiting for it go out, or fail.
    pub(super) fn on_share_opened(&mut self, n: u64, opened: io::Result<(R::File, u64)>) {
        let waiting = match self.share_files.remove(&n) {
            Some(ShareFile::Opening(waiting)) => waiting,
            other => {
                debug_assert!(other.is_none(), "share {n} opened twice");
                Vec::new()
            }
        };
        match opened {
            Ok((file, len)) => {
                let open = ShareFile::Open {
                    file: file.clone(),
                    len,
                };
                self.share_files.insert(n, open);
                for s in waiting {
                    self.send_piece(s, file.clone(), Some(len));
                }
            }
            Err(e) => {
                // Not kept: the next serve tries again.
                tracing::warn!("cannot open shared file #{n} to serve it: {e}");
                for s in waiting {
                    self.serve_failed(s, ServeError::Unreadable);
                }
            }
        }
    }

    /// Asks the kernel to start reading the piece's range of `file` (a
    /// disk job), then queues the piece's frame head and the range on the
    /// connection, whose writer reads and encrypts it; `file_len`, if
    /// known, must hold the range. The machine hears how it went after
    /// this drain.
    fn send_piece(&mut self, s: Serve, file: R::File, file_len: Option<u64>) {
        let end = s.offset + u64::from(s.len);
        if file_len.is_some_and(|l| l < end) {
            return self.serve_failed(s, ServeError::Short);
        }
        let Some(w) = self.peers.get(&s.conn) else {
            return self.serve_failed(s, ServeError::ConnGone);
        };
        // The kernel starts reading the range before the writer gets it.
        self.io.disk(Job::ReadAhead {
            file: file.clone(),
            offset: s.offset,
            len: s.len,
        });
        let len = s.len as usize;
        let range = FileRange {
            file,
            offset: s.offset,
            len,
        };
        if !R::send_file(w, piece_head(s.index, len), range) {
            return self.serve_failed(s, ServeError::ConnGone);
        }
        let (conn, index) = (s.conn, s.index);
        self.later.push_back(cn::Input::Served { conn, index });
    }

    fn serve_failed(&mut self, s: Serve, why: ServeError) {
        let (conn, index) = (s.conn, s.index);
        tracing::debug!("{conn}: cannot serve piece {index}: {why}");
        let failed = cn::Input::ServeFailed { conn, index, why };
        self.later.push_back(failed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClientOptions, JobDone, run_job, setup};
    use super::*;
    use p2p_state::client::session::SessionConn;
    use std::fs::File;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    /// A sink that keeps what it is given, part by part.
    #[derive(Default)]
    struct Parts(Mutex<Vec<Bytes>>);

    impl FrameSink for Parts {
        fn send(&self, frame: Bytes) -> bool {
            self.0.lock().unwrap().push(frame);
            true
        }
        fn send_parts(&self, head: Bytes, body: Bytes) -> bool {
            self.0.lock().unwrap().extend([head, body]);
            true
        }
        fn close(self) {}
        fn abort(&self) {}
    }

    #[test]
    fn a_piece_goes_out_as_the_encoder_frames_it_without_copying_its_data() {
        let data = Bytes::from(vec![5u8; 100_000]);
        let msg = PeerMsg::Piece {
            index: 42,
            data: data.clone(),
        };
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&msg, &mut want);
        let sink = Parts::default();
        send_peer_msg(&sink, PeerOut::Msg(msg));
        let parts = sink.0.into_inner().unwrap();
        assert_eq!(parts.concat(), want.to_vec());
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].as_ptr(), data.as_ptr(), "data queued as it is");
        // Anything else is one encoded frame.
        let sink = Parts::default();
        let other = PeerMsg::Cancel { index: 3 };
        send_peer_msg(&sink, PeerOut::Msg(other.clone()));
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&other, &mut want);
        assert_eq!(sink.0.into_inner().unwrap(), vec![want.freeze()]);
    }

    /// A piece in a file goes out framed exactly as the encoder frames
    /// the same piece from memory (this sink reads it, as the runtimes'
    /// writers do before encrypting it).
    #[test]
    fn a_piece_from_a_file_is_framed_like_one_from_memory() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share.bin");
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
        File::create(&path).unwrap().write_all(&bytes).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let (offset, len) = (1_000u64, 30_000usize);
        let range = FileRange { file, offset, len };
        let sink = Parts::default();
        sink.send_file(piece_head(7, len), range.clone());
        let data = Bytes::copy_from_slice(&bytes[1_000..31_000]);
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&PeerMsg::Piece { index: 7, data }, &mut want);
        assert_eq!(sink.0.into_inner().unwrap().concat(), want.to_vec());
        // The file ends early: nothing is sent.
        let short = FileRange {
            offset: 40_000,
            ..range
        };
        let sink = Parts::default();
        assert!(!sink.send_file(piece_head(7, len), short));
        assert!(sink.0.into_inner().unwrap().is_empty());
    }

    /// The effects of a test `Core`: dials go nowhere, disk jobs are kept.
    #[derive(Default)]
    struct Jobs(Vec<Job>);

    impl ClientIo for Jobs {
        type Writer = Parts;
        type Part = Arc<super::super::DlFile>;
        type File = Arc<File>;
        fn connect_tracker(&mut self, _: SessionConn, _: SocketAddr) {}
        fn connect_peer(&mut self, _: PeerConnId, _: SocketAddr) {}
        fn disk(&mut self, job: Job) {
            self.0.push(job);
        }
        fn part_file(part: &Self::Part) -> Arc<File> {
            part.file.clone()
        }
        fn send_file(w: &Parts, head: Bytes, range: FileRange) -> bool {
            w.send_file(head, range)
        }
    }

    /// A client driver core on a fresh data directory, with disk jobs kept.
    fn core_in(dir: &std::path::Path) -> Core<Jobs> {
        let opts = ClientOptions {
            trackers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
            tracker_keys: Vec::new(),
            first: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_port: None,
            max_parallel: None,
            data_dir: dir.to_path_buf(),
            write_mode: crate::client::WriteMode::PageCache,
            request_timeout: None,
            ping_interval: None,
            rates: Default::default(),
        };
        let (p, _listener) = setup(opts).unwrap();
        Core::new(p, Jobs::default()).0
    }

    /// A `Serve` of a share whose file is not open yet waits for the disk
    /// job that opens it (the loop never opens a file), then goes out
    /// framed as the encoder frames the piece, followed by its
    /// read-ahead; a range past the file's end, a closed connection or an
    /// unknown share fail with their reason, and nothing is sent.
    #[test]
    fn a_serve_waits_for_its_file_to_open_then_goes_out_or_fails_with_a_reason() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let path = dir.path().join("share.bin");
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 239) as u8).collect();
        File::create(&path).unwrap().write_all(&bytes).unwrap();
        let mut core = core_in(&data_dir);
        let n = {
            let mut p = core.paths.lock().unwrap();
            let n = p.next_id();
            let group = p2p_proto::GroupName::new("g").unwrap();
            p.shares.insert(n, (path, group));
            n
        };
        let conn = PeerConnId::Inbound(p2p_state::seeder::ConnId(7));
        core.peers.insert(conn, Parts::default());
        core.io.0.clear();
        core.serve(ShareId::Upload(n), conn, 1, 16_000, 16_000);
        assert!(core.later.is_empty(), "not before the file is open");
        let Some(job @ Job::OpenShare { .. }) = core.io.0.pop() else {
            panic!("the file is opened by a disk job")
        };
        let JobDone::ShareOpened { share, opened } = run_job(job) else {
            panic!("opened")
        };
        core.on_share_opened(share, opened);
        let data = Bytes::copy_from_slice(&bytes[16_000..32_000]);
        let mut want = BytesMut::new();
        p2p_proto::encode_msg(&PeerMsg::Piece { index: 1, data }, &mut want);
        assert_eq!(core.peers[&conn].0.lock().unwrap().concat(), want.to_vec());
        assert!(matches!(
            core.io.0.pop(),
            Some(Job::ReadAhead {
                offset: 16_000,
                len: 16_000,
                ..
            })
        ));
        assert_eq!(
            core.later.pop_front(),
            Some(cn::Input::Served { conn, index: 1 })
        );
        // The file is open now: the next serve needs no job; past its end
        // fails.
        core.serve(ShareId::Upload(n), conn, 3, 48_000, 2_001);
        let failed = |why| cn::Input::ServeFailed {
            conn,
            index: 3,
            why,
        };
        assert_eq!(core.later.pop_front(), Some(failed(ServeError::Short)));
        core.serve(ShareId::Upload(n), conn, 3, 48_000, 2_000);
        assert_eq!(
            core.later.pop_front(),
            Some(cn::Input::Served { conn, index: 3 })
        );
        core.serve(ShareId::Upload(n + 1), conn, 3, 0, 10);
        assert_eq!(core.later.pop_front(), Some(failed(ServeError::NoFile)));
        core.serve(ShareId::Download(5), conn, 3, 0, 10);
        assert_eq!(core.later.pop_front(), Some(failed(ServeError::NoFile)));
        let gone = PeerConnId::Inbound(p2p_state::seeder::ConnId(8));
        core.serve(ShareId::Upload(n), gone, 3, 0, 10);
        let failed = cn::Input::ServeFailed {
            conn: gone,
            index: 3,
            why: ServeError::ConnGone,
        };
        assert_eq!(core.later.pop_front(), Some(failed));
        assert!(core.later.is_empty());
    }
}
