//! `p2p-bench --disk-test DIR`: the client's ways of writing downloaded
//! pieces, timed on the device under `DIR`, so the default write strategy
//! is chosen by figures (README, "Writing pieces to disk").
//!
//! Each strategy writes a file of the given size in 512 KiB pieces from
//! [`DISK_WORKERS`] threads, as a download's disk jobs do, through
//! [`write_piece`]: straight to the device (`O_DIRECT`), through the page
//! cache, and through the page cache with [`CacheTrim`]. Two times: when
//! the last write returned (when a download would report completion), and
//! after `fdatasync` (everything on the device); and how much the page
//! cache grew meanwhile (`Cached` in /proc/meminfo, so other activity on
//! the machine shows up in it too).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use runtime_common::buffers;
use runtime_common::client::disk::write_piece;
use runtime_common::client::{CacheTrim, DISK_WORKERS};

use super::proc::Res;

const PIECE: usize = 512 * 1024;

/// One strategy's figures.
pub struct DiskRun {
    pub name: &'static str,
    /// Until the last write returned.
    pub written: f64,
    /// Until `fdatasync` returned as well.
    pub durable: f64,
    /// Growth of the page cache at the last write, MiB.
    pub cache_mib: i64,
    /// CPU seconds the writing threads used until the last write
    /// returned (this process's user + system time; the kernel's own
    /// writeback threads are not in it).
    pub cpu: f64,
}

/// CPU seconds this process has used (user + system, every thread).
fn own_cpu_secs() -> f64 {
    crate::proc::cpu_secs_of(std::process::id()).unwrap_or(0.0)
}

fn cached_kib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Cached:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Mode {
    Direct,
    Cache,
    Trim,
}

/// Writes `size` bytes to `dir` once per strategy.
pub fn run(dir: &Path, size: u64) -> Res<Vec<DiskRun>> {
    let modes = [
        ("O_DIRECT", Mode::Direct),
        ("page cache", Mode::Cache),
        ("page cache + trim", Mode::Trim),
    ];
    let mut out = Vec::new();
    for (name, mode) in modes {
        eprintln!("p2p-bench: disk test: {name}");
        out.push(one(dir, size, name, mode)?);
    }
    Ok(out)
}

fn one(dir: &Path, size: u64, name: &'static str, mode: Mode) -> Res<DiskRun> {
    let path = dir.join("p2p-bench-disk-test.bin");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(&path);
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(err)?;
    file.set_len(size).map_err(err)?;
    let direct = match mode {
        Mode::Direct => Some(
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .map_err(|e| format!("{} with O_DIRECT: {e}", path.display()))?,
        ),
        _ => None,
    };
    let trim = CacheTrim::default();
    let writer = std::sync::Mutex::new(());
    let pieces = size.div_ceil(PIECE as u64) as usize;
    let next = AtomicUsize::new(0);
    let cache0 = cached_kib();
    let cpu0 = own_cpu_secs();
    let t0 = Instant::now();
    let work = || -> std::io::Result<()> {
        let mut buf = buffers::take(PIECE + buffers::DIRECT_ALIGN);
        let at = buffers::aligned_start(&buf, 0);
        for (i, b) in buf[at..at + PIECE].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pieces {
                return Ok(());
            }
            let off = (i * PIECE) as u64;
            let len = (size - off).min(PIECE as u64) as usize;
            let t = matches!(mode, Mode::Trim).then_some(&trim);
            write_piece(&file, direct.as_ref(), t, &writer, &buf[at..at + len], off)?;
        }
    };
    std::thread::scope(|s| {
        let ts: Vec<_> = (0..DISK_WORKERS).map(|_| s.spawn(work)).collect();
        ts.into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("panicked")))
            })
            .collect::<std::io::Result<Vec<()>>>()
    })
    .map_err(err)?;
    let written = t0.elapsed().as_secs_f64();
    let cpu = own_cpu_secs() - cpu0;
    let cache_mib = (cached_kib() - cache0) / 1024;
    file.sync_data().map_err(err)?;
    let durable = t0.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(DiskRun {
        name,
        written,
        durable,
        cache_mib,
        cpu,
    })
}

/// The table.
pub fn table(dir: &Path, size: u64, runs: &[DiskRun]) -> String {
    let mb = |s: f64| size as f64 / s / 1e6;
    let mut t = format!(
        "Writing {} MiB in 512 KiB pieces from {DISK_WORKERS} threads to {}\n",
        size >> 20,
        dir.display()
    );
    t += &format!(
        "    {:<20} {:>22} {:>22} {:>14} {:>10}\n",
        "strategy", "last write returned", "+ fdatasync", "cache growth", "CPU"
    );
    for r in runs {
        t += &format!(
            "    {:<20} {:>9.3} s {:>5.0} MB/s {:>9.3} s {:>5.0} MB/s {:>10} MiB {:>8.2} s\n",
            r.name,
            r.written,
            mb(r.written),
            r.durable,
            mb(r.durable),
            r.cache_mib,
            r.cpu
        );
    }
    t
}

/// The device and file system a directory is on (`/dev/loop0 ext4`), from
/// the longest mount point above it in `/proc/self/mounts`.
pub fn device_of(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (src, at, fs) = (f.first()?, f.get(1)?, f.get(2)?);
            dir.starts_with(at)
                .then(|| (at.len(), format!("{src} {fs}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "device unknown".into(), |(_, d)| d)
}
