//! A tracker's data directory: the op log (`DATA_DIR/log`) and the latest
//! snapshot (`DATA_DIR/snapshot`), in the formats of
//! [`p2p_state::tracker::storage`], plus the storage thread that executes
//! the machine's `Persist` outputs (log, snapshot, re-submission queue).
//!
//! - **Appends** go to the end of `log`; a `Persist::Log` whose `from_index` is
//!   not past the last record first truncates the file there (a divergent
//!   suffix being replaced). The thread drains every queued command before
//!   one `fsync`, then reports the highest durable index once (group commit).
//! - **Snapshots** are written to `snapshot.tmp`, fsynced and renamed over
//!   `snapshot`; then the log is rewritten (to `log.tmp`, fsynced, renamed)
//!   to hold only the records after the snapshot (none with `reset_log`);
//!   the directory is fsynced after each rename. A crash between the two
//!   renames leaves a new snapshot and an old log: [`DataDir::open`] skips
//!   the records the snapshot already covers.
//! - **Re-submission queue** (`DATA_DIR/resubmit`): replaced whole (to
//!   `resubmit.tmp`, fsynced, renamed, directory fsynced) in order with the
//!   other commands, so it is durable before the log truncation the machine
//!   asks for next.
//! - **Recovery** reads the snapshot (a bad one is set aside as
//!   `snapshot.bad` with a warning) and the log, cuts a torn tail off the
//!   file, and keeps the records that follow the snapshot without a gap;
//!   then the re-submission queue (what of it reads, with a warning if a
//!   record is bad).
//! - **Modes**: the directory is 0700 and every file in it, temporary
//!   files included, 0600 (they hold password hashes, session tokens and
//!   seeder keys); looser ones found at start are tightened with a warning
//!   ([`crate::private`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};

use crate::private;
use bytes::{Bytes, BytesMut};
use p2p_proto::{Entry, LogPos};
use p2p_state::tracker::storage::{
    Persist, RECORD_HEADER_LEN, SNAPSHOT_HEADER_LEN, SnapshotError, TornTail, decode_log,
    decode_resubmit_file, decode_snapshot_file, encode_record, encode_resubmit_file,
    encode_snapshot_file,
};

const LOG: &str = "log";
const LOG_TMP: &str = "log.tmp";
const LOG_BAD: &str = "log.bad";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SNAPSHOT_BAD: &str = "snapshot.bad";
const RESUBMIT: &str = "resubmit";
const RESUBMIT_TMP: &str = "resubmit.tmp";

/// What was on disk, ready for `Tracker::recover`.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The snapshot's position and state bytes (`TrackerState` encoding).
    pub snapshot: Option<(LogPos, Bytes)>,
    /// The log records after the snapshot, in order, without gaps.
    pub entries: Vec<Entry>,
    /// Divergent entries waiting for re-submission.
    pub resubmit: Vec<Entry>,
    /// A torn tail that was cut off the log file.
    pub torn: Option<TornTail>,
    /// A snapshot file that was refused (and renamed `snapshot.bad`).
    pub bad_snapshot: Option<SnapshotError>,
    /// Whole records dropped because they did not follow on (already in the
    /// snapshot, or after a gap); the original log is kept as `log.bad`.
    pub dropped: usize,
}

/// One record in the log file.
#[derive(Debug, Clone, Copy)]
struct Record {
    index: u64,
    offset: u64,
}

/// The open data directory.
#[derive(Debug)]
pub struct DataDir {
    dir: PathBuf,
    log: File,
    log_len: u64,
    /// Index the log follows on from (the snapshot's, or 0).
    base: u64,
    records: Vec<Record>,
    dirty: bool,
}

impl DataDir {
    /// Opens (creating if needed) `dir` and reads what it holds.
    pub fn open(dir: &Path) -> io::Result<(DataDir, Recovered)> {
        private::open_dir(
            dir,
            "the tracker's state (password hashes, session tokens, seeder keys)",
        )?;
        for tmp in [LOG_TMP, SNAPSHOT_TMP, RESUBMIT_TMP] {
            let _ = fs::remove_file(dir.join(tmp));
        }
        let mut rec = Recovered::default();
        let base = read_snapshot(dir, &mut rec)?;
        let mut log = private::open_rw(&dir.join(LOG))?;
        let mut buf = Vec::new();
        log.read_to_end(&mut buf)?;
        let scan = decode_log(&buf);
        let offsets = record_offsets(&buf[..scan.valid_len]);
        let run = follow_on(base, &scan.entries);
        rec.dropped = scan.entries.len() - run.len();
        rec.torn = scan.torn;
        let mut d = DataDir {
            dir: dir.to_path_buf(),
            log,
            log_len: scan.valid_len as u64,
            base: base.index,
            records: Vec::new(),
            dirty: false,
        };
        if let Some(t) = &rec.torn {
            tracing::warn!(
                "{}: torn tail at byte {} ({}); {} bytes cut off",
                d.path(LOG).display(),
                t.offset,
                t.reason,
                buf.len() - scan.valid_len
            );
            d.log.set_len(scan.valid_len as u64)?;
            d.log.sync_all()?;
        }
        let at = |i: usize| offsets.get(i).copied().unwrap_or(scan.valid_len as u64);
        let (start, end) = (at(run.start), at(run.end));
        if rec.dropped > 0 {
            tracing::warn!(
                "{}: {} record(s) do not follow on from snapshot index {}; original kept as {LOG_BAD}",
                d.path(LOG).display(),
                rec.dropped,
                base.index
            );
            private::write(&d.path(LOG_BAD), &buf[..scan.valid_len])?;
            d.replace_log(&buf[start as usize..end as usize])?;
        }
        d.records = run
            .clone()
            .map(|i| Record {
                index: scan.entries[i].pos.index,
                offset: offsets[i] - start,
            })
            .collect();
        rec.entries = scan.entries[run].to_vec();
        rec.resubmit = read_resubmit(dir)?;
        Ok((d, rec))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Index of the last record (or the snapshot's if the log is empty).
    pub fn last_index(&self) -> u64 {
        self.records.last().map(|r| r.index).unwrap_or(self.base)
    }

    /// Makes the log end at `from_index - 1`, then appends `entries`
    /// (written, not yet synced).
    pub fn append(&mut self, from_index: u64, entries: &[Entry]) -> io::Result<()> {
        let cut = self.records.partition_point(|r| r.index < from_index);
        if cut < self.records.len() {
            let at = self.records[cut].offset;
            tracing::info!(
                "log: replacing {} record(s) from index {from_index}",
                self.records.len() - cut
            );
            self.records.truncate(cut);
            self.log.set_len(at)?;
            self.log_len = at;
        }
        let mut out = BytesMut::new();
        for e in entries {
            self.records.push(Record {
                index: e.pos.index,
                offset: self.log_len + out.len() as u64,
            });
            encode_record(e, &mut out);
        }
        self.log.seek(SeekFrom::Start(self.log_len))?;
        self.log.write_all(&out)?;
        self.log_len += out.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Makes every append so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.log.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Stores a snapshot of the state at `at`, then rewrites the log to the
    /// records after it (`reset_log`: to nothing).
    pub fn write_snapshot(&mut self, at: LogPos, state: &[u8], reset_log: bool) -> io::Result<()> {
        self.sync()?;
        let file = encode_snapshot_file(at, at.epoch, state);
        write_durably(&self.dir, SNAPSHOT_TMP, SNAPSHOT, &file)?;
        let cut = match reset_log {
            true => self.records.len(),
            false => self.records.partition_point(|r| r.index <= at.index),
        };
        let start = self
            .records
            .get(cut)
            .map(|r| r.offset)
            .unwrap_or(self.log_len);
        let mut tail = vec![0u8; (self.log_len - start) as usize];
        self.log.seek(SeekFrom::Start(start))?;
        self.log.read_exact(&mut tail)?;
        self.replace_log(&tail)?;
        self.records.drain(..cut);
        for r in &mut self.records {
            r.offset -= start;
        }
        self.base = at.index;
        tracing::debug!(
            "snapshot at {}:{} stored ({} bytes), log keeps {} record(s)",
            at.epoch,
            at.index,
            file.len(),
            self.records.len()
        );
        Ok(())
    }

    /// Atomically replaces the log file's contents with `bytes`.
    fn replace_log(&mut self, bytes: &[u8]) -> io::Result<()> {
        write_durably(&self.dir, LOG_TMP, LOG, bytes)?;
        self.log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(LOG))?;
        self.log_len = bytes.len() as u64;
        self.dirty = false;
        Ok(())
    }

    /// Replaces the stored re-submission queue with `entries`.
    pub fn write_resubmit(&mut self, entries: &[Entry]) -> io::Result<()> {
        write_durably(
            &self.dir,
            RESUBMIT_TMP,
            RESUBMIT,
            &encode_resubmit_file(entries),
        )
    }
}

/// Reads the re-submission queue (empty when there is none).
fn read_resubmit(dir: &Path) -> io::Result<Vec<Entry>> {
    let buf = match fs::read(dir.join(RESUBMIT)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let scan = decode_resubmit_file(&buf);
    if let Some(t) = scan.torn {
        tracing::warn!(
            "{}: bad record at byte {} ({}); {} queued re-submissions read, the rest dropped",
            dir.join(RESUBMIT).display(),
            t.offset,
            t.reason,
            scan.entries.len()
        );
    }
    Ok(scan.entries)
}

/// Reads `snapshot`; a bad one is renamed away. Returns the position it covers.
fn read_snapshot(dir: &Path, rec: &mut Recovered) -> io::Result<LogPos> {
    let buf = match fs::read(dir.join(SNAPSHOT)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LogPos::default()),
        Err(e) => return Err(e),
    };
    match decode_snapshot_file(&buf) {
        Ok(s) => {
            let state = Bytes::copy_from_slice(&buf[SNAPSHOT_HEADER_LEN..]);
            rec.snapshot = Some((s.at, state));
            Ok(s.at)
        }
        Err(e) => {
            tracing::warn!(
                "{}: {e}; set aside as {SNAPSHOT_BAD}, recovering from the log and the other trackers",
                dir.join(SNAPSHOT).display()
            );
            fs::rename(dir.join(SNAPSHOT), dir.join(SNAPSHOT_BAD))?;
            sync_dir(dir)?;
            rec.bad_snapshot = Some(e);
            Ok(LogPos::default())
        }
    }
}

/// Byte offset of each whole record in `buf` (already checked by `decode_log`).
fn record_offsets(buf: &[u8]) -> Vec<u64> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos + RECORD_HEADER_LEN <= buf.len() {
        v.push(pos as u64);
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
        pos += RECORD_HEADER_LEN + len as usize;
    }
    v
}

/// The entries that follow on from the snapshot at `base`: skipping those it
/// covers, stopping at a gap or an epoch going back (the rule
/// `Tracker::recover` applies, so the file holds exactly what it keeps).
fn follow_on(base: LogPos, entries: &[Entry]) -> Range<usize> {
    let start = entries
        .iter()
        .position(|e| e.pos.index > base.index)
        .unwrap_or(entries.len());
    let mut last = base;
    let mut end = start;
    for e in &entries[start..] {
        if e.pos.index != last.index + 1 || e.pos.epoch < last.epoch {
            break;
        }
        last = e.pos;
        end += 1;
    }
    start..end
}

/// Writes `bytes` to `tmp`, fsyncs it, renames it to `name`, fsyncs `dir`.
fn write_durably(dir: &Path, tmp: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut f = private::create(&dir.join(tmp))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(dir.join(tmp), dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Work for the storage thread.
#[derive(Debug)]
pub enum StorageCmd {
    /// A write the tracker asked for, executed in order.
    Persist(Persist),
    /// Answered once everything queued before it is durable.
    Flush(Sender<()>),
}

/// Runs the storage thread's loop until the command channel closes (then
/// syncs and returns). After each batch: one fsync, then
/// `on_persisted(highest index)` if the batch held appends. An I/O error
/// ends the loop and is returned: a tracker that cannot persist must stop.
pub fn run_storage(
    mut dir: DataDir,
    rx: Receiver<StorageCmd>,
    mut on_persisted: impl FnMut(u64),
) -> io::Result<()> {
    while let Ok(first) = rx.recv() {
        let mut appended = false;
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                StorageCmd::Persist(Persist::Log {
                    from_index,
                    entries,
                }) => {
                    dir.append(from_index, &entries)?;
                    appended = true;
                }
                StorageCmd::Persist(Persist::Snapshot {
                    at,
                    data,
                    reset_log,
                }) => dir.write_snapshot(at, &data, reset_log)?,
                StorageCmd::Persist(Persist::Resubmit { entries }) => {
                    dir.write_resubmit(&entries)?
                }
                StorageCmd::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        dir.sync()?;
        if appended {
            on_persisted(dir.last_index());
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    dir.sync()
}

#[cfg(test)]
mod tests;
