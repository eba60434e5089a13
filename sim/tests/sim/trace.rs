//! The run's trace: every event as one line, hashed as it is written (the
//! determinism check compares the hashes of two runs), the last lines kept
//! in a ring for failure reports, and everything printed with `SIM_TRACE=1`.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};

/// Lines kept for a failure report.
pub const TAIL_LINES: usize = 50;

pub struct Trace {
    /// Print every line as it is written.
    pub print: bool,
    ring: VecDeque<String>,
    /// FNV-1a over every line so far.
    hash: u64,
    pub lines: u64,
    /// The hash after each line (determinism check only).
    pub record: Option<Vec<u64>>,
    /// Lines numbered in this range are kept whole (determinism report).
    pub keep: Option<(u64, u64)>,
    pub kept: Vec<String>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    pub fn new(print: bool) -> Self {
        Trace {
            print,
            ring: VecDeque::with_capacity(TAIL_LINES + 1),
            hash: FNV_OFFSET,
            lines: 0,
            record: None,
            keep: None,
            kept: Vec::new(),
        }
    }

    /// Writes one line (`at`: the world's clock in ms; shown from its start).
    pub fn line(&mut self, at: u64, args: fmt::Arguments<'_>) {
        let at = at.saturating_sub(crate::world::T0.0);
        let mut s = if self.ring.len() >= TAIL_LINES {
            let mut s = self.ring.pop_front().expect("ring is full");
            s.clear();
            s
        } else {
            String::with_capacity(96)
        };
        let _ = write!(s, "{:>7}.{:03} ", at / 1000, at % 1000);
        let _ = s.write_fmt(args);
        for b in s.as_bytes() {
            self.hash = (self.hash ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
        self.hash = (self.hash ^ 0x0a).wrapping_mul(FNV_PRIME);
        self.lines += 1;
        if let Some(r) = self.record.as_mut() {
            r.push(self.hash);
        }
        if self.print {
            println!("{s}");
        }
        if let Some((lo, hi)) = self.keep
            && (lo..=hi).contains(&self.lines)
        {
            self.kept.push(format!("#{} {s}", self.lines));
        }
        self.ring.push_back(s);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The last lines, oldest first.
    pub fn tail(&self) -> String {
        self.ring
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `trace!(world.trace, now_ms, "fmt", args..)`
macro_rules! trace {
    ($t:expr, $at:expr, $($arg:tt)*) => {
        $t.line($at, format_args!($($arg)*))
    };
}
