//! Hashing a file to share: every piece's SHA-1 on every core, reading
//! whole pieces with `pread`, and the file hash (the root of its pieces).

use super::*;

/// Hashes a file to share: every piece's SHA-1, on every core, then the
/// file hash, [`file_root`] of the size, piece length and piece hashes.
pub fn hash_file(path: &Path, piece_len: u32) -> io::Result<FileMeta> {
    hash_file_with_progress(path, piece_len, &|_| {})
}

/// [`hash_file`], calling `progress` with the bytes hashed so far (from the
/// hashing threads, once per piece).
pub fn hash_file_with_progress(
    path: &Path,
    piece_len: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileMeta> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let name = p2p_proto::FileName::new(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > p2p_proto::limits::FILE_LEN_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file too large to share (12 GiB at most)",
        ));
    }
    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    let piece_hashes = hash_pieces(&file, size, piece_len, workers, progress)?;
    Ok(FileMeta {
        name,
        size,
        piece_len,
        file_hash: file_root(size, piece_len, &piece_hashes),
        piece_hashes,
    })
}

/// The SHA-1 of every piece of the first `size` bytes of `file`, hashed by
/// `workers` threads that each take the next [`sha1_lanes::LANES`] pieces
/// as they finish theirs (whole pieces read with `pread`, that many piece
/// buffers per thread: memory is bounded by threads x 4 pieces, never by
/// the file), each group hashed at once ([`sha1_lanes::sha1_each`]).
pub fn hash_pieces(
    file: &File,
    size: u64,
    piece_len: u32,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<Vec<Sha1Hash>> {
    const LANES: usize = sha1_lanes::LANES;
    let n = FileMeta::pieces_for(size, piece_len) as usize;
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let work = || -> io::Result<Vec<(usize, Sha1Hash)>> {
        let piece = (piece_len as u64).min(size) as usize;
        let mut bufs: [Vec<u8>; LANES] = std::array::from_fn(|_| Vec::new());
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(LANES, Ordering::Relaxed);
            if i >= n {
                return Ok(out);
            }
            let group = (n - i).min(LANES);
            let mut lens = [0usize; LANES];
            for (k, buf) in bufs.iter_mut().enumerate().take(group) {
                let off = (i + k) as u64 * u64::from(piece_len);
                lens[k] = (size - off).min(u64::from(piece_len)) as usize;
                buf.resize(piece, 0);
                if let Err(e) = file.read_exact_at(&mut buf[..lens[k]], off) {
                    next.store(n, Ordering::Relaxed); // the others stop too
                    return Err(e);
                }
            }
            let data: Vec<&[u8]> = (0..group).map(|k| &bufs[k][..lens[k]]).collect();
            let digests = sha1_lanes::sha1_each(&data);
            out.extend((i..).zip(digests.into_iter().map(Sha1Hash)));
            let len = lens.iter().sum::<usize>() as u64;
            progress(done.fetch_add(len, Ordering::Relaxed) + len);
        }
    };
    let parts = thread::scope(|s| {
        let threads: Vec<_> = (0..workers.clamp(1, n.max(1)))
            .map(|_| s.spawn(work))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
            })
            .collect::<io::Result<Vec<_>>>()
    })?;
    let mut hashes = vec![Sha1Hash::default(); n];
    for (i, h) in parts.into_iter().flatten() {
        hashes[i] = h;
    }
    Ok(hashes)
}
