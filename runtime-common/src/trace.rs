//! Counters of a client's data path, and a thread that writes them to a
//! file every [`TRACE_INTERVAL`] (`client --trace FILE`, which
//! `p2p-bench --trace` turns into a plot): where a download waits shows
//! up as a stretch with nothing received, few requests in flight, or
//! pieces waiting for the disk.
//!
//! The counters are process-wide relaxed atomics, always counted (an
//! increment per TLS read and per piece: nothing next to the bytes they
//! count). Each line of the file is
//! `ms,bytes_received,requests_sent,pieces_hashed,pieces_queued,pieces_written,disk_bytes_queued,disk_bytes_peak`,
//! totals since the process started, except the last two: the piece bytes
//! handed to the disk workers and not yet written (held in memory) now,
//! and the most there ever were. Requests in flight are
//! `requests_sent - pieces_hashed` (cancelled requests aside), pieces
//! waiting for the disk `pieces_queued - pieces_written`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the trace thread writes a line.
pub const TRACE_INTERVAL: Duration = Duration::from_millis(10);

/// Ciphertext bytes read from peers' and trackers' sockets.
pub static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Piece requests sent to peers.
pub static REQUESTS_SENT: AtomicU64 = AtomicU64::new(0);
/// Pieces received and hashed (by the connection readers).
pub static PIECES_HASHED: AtomicU64 = AtomicU64::new(0);
/// Pieces handed to the disk workers.
pub static PIECES_QUEUED: AtomicU64 = AtomicU64::new(0);
/// Pieces the disk workers wrote.
pub static PIECES_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Of those, pieces handed to `O_DIRECT` (the rest went through the page
/// cache: a download that left `O_DIRECT` stops adding here).
pub static PIECES_DIRECT: AtomicU64 = AtomicU64::new(0);
/// Of the pieces hashed, those hashed together with others (the next
/// pieces of the same connection, `client::PeerSink`).
pub static PIECES_BATCHED: AtomicU64 = AtomicU64::new(0);
/// The groups those were hashed in (2 to `sha1_lanes::LANES` pieces each).
pub static HASH_BATCHES: AtomicU64 = AtomicU64::new(0);

/// Piece bytes handed to the disk workers and not yet written (a gauge).
pub static DISK_BYTES_QUEUED: AtomicU64 = AtomicU64::new(0);
/// The most [`DISK_BYTES_QUEUED`] has been.
pub static DISK_BYTES_PEAK: AtomicU64 = AtomicU64::new(0);

/// A piece of `n` bytes was handed to the disk workers.
pub fn disk_queued(n: u64) {
    add(&PIECES_QUEUED, 1);
    let now = DISK_BYTES_QUEUED.fetch_add(n, Ordering::Relaxed) + n;
    DISK_BYTES_PEAK.fetch_max(now, Ordering::Relaxed);
}

/// A piece of `n` bytes handed to the disk workers is done with (written,
/// or its write failed): its buffer is released.
pub fn disk_done(n: u64) {
    DISK_BYTES_QUEUED.fetch_sub(n, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The CSV header of a trace file.
pub const TRACE_HEADER: &str = "ms,bytes_received,requests_sent,pieces_hashed,pieces_queued,pieces_written,disk_bytes_queued,disk_bytes_peak,pieces_direct,pieces_batched,hash_batches";

/// One line of counters, `ms` after the start.
fn line(ms: u128) -> String {
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    format!(
        "{ms},{},{},{},{},{},{},{},{},{},{}",
        g(&BYTES_RECEIVED),
        g(&REQUESTS_SENT),
        g(&PIECES_HASHED),
        g(&PIECES_QUEUED),
        g(&PIECES_WRITTEN),
        g(&DISK_BYTES_QUEUED),
        g(&DISK_BYTES_PEAK),
        g(&PIECES_DIRECT),
        g(&PIECES_BATCHED),
        g(&HASH_BATCHES)
    )
}

/// Creates `path` and starts a thread that appends a line of counters to
/// it (flushed) every [`TRACE_INTERVAL`] until the process ends.
pub fn start(path: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "{TRACE_HEADER}")?;
    out.flush()?;
    let t0 = Instant::now();
    std::thread::Builder::new()
        .name("trace".into())
        .spawn(move || {
            let mut next = t0;
            loop {
                next += TRACE_INTERVAL;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                let l = line(t0.elapsed().as_millis());
                if writeln!(out, "{l}").and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_counter_in_header_order() {
        let fields = line(7);
        assert_eq!(
            fields.split(',').count(),
            TRACE_HEADER.split(',').count(),
            "{fields}"
        );
        assert!(fields.starts_with("7,"));
    }
}
