//! The runtimes level: the std and smol downloads timed in alternated
//! rounds, after the runtime sections ([`run`]).
//!
//! The runtime sections run minutes apart, and on a shared 2-core VM
//! minutes are enough for the machine to change (the same build measured
//! smol / std at 0.82x in one full run and 1.53x in another). A
//! comparison of two contenders is only fair in the same conditions, so
//! here both runtimes' swarms run side by side and each round downloads
//! the file once with each, std then smol, every download on warm
//! memory, into the download section's destination directory. A download
//! that follows one of the same runtime is faster than one that follows
//! the other runtime's (4 rounds ordered std-smol, smol-std, ...: smol /
//! std 1.11x, 0.95x, 1.15x, 0.84x, each round favouring the runtime that
//! had just run), so every timed download follows one of the other
//! runtime: the rounds keep one order, and an untimed smol download
//! comes before the first. The figure and its rows are `report::Level`.

use super::*;
use crate::figures::file_name;
use crate::report::{Level, RuntimeReport, level_ready};

/// The rounds by default (`--level-rounds`). One round's smol / std has
/// ranged from 0.79x to 1.28x on this project's 2-core VM with the
/// medians level, so the median of 3 rounds could land outside a 10% band
/// by chance alone; 7 rounds (about 40 s) narrow that spread.
pub(crate) const ROUNDS: usize = 7;

/// The contenders, in the order of every round.
const RUNTIMES: [&str; 2] = ["std", "smol"];

/// The downloads of `rounds` rounds as (round, index into [`RUNTIMES`],
/// timed): an untimed download of the last runtime first, so that every
/// timed one follows a download of the other runtime.
fn schedule(rounds: usize) -> Vec<(usize, usize, bool)> {
    let last = RUNTIMES.len() - 1;
    std::iter::once((0, last, false))
        .chain((0..rounds).flat_map(|k| (0..RUNTIMES.len()).map(move |i| (k, i, true))))
        .collect()
}

/// The section, or why it was not measured. A failure here is also
/// recorded in `errors`; a precondition not met is not (the runtime
/// sections already said why).
pub(crate) fn run(
    args: &Args,
    dirs: &Dirs,
    file: &Path,
    reports: &[RuntimeReport],
    rounds: usize,
    errors: &mut Vec<String>,
) -> Fig<Level> {
    level_ready(reports, &RUNTIMES)?;
    let started = Instant::now();
    let load_before = loadavg();
    let size = args.size * MIB;
    let [(std, std_cpu), (smol, smol_cpu)] = alternate(args, dirs, file, size, rounds.max(1))
        .map_err(|e| {
            errors.push(format!("runtimes level: {e}"));
            e
        })?;
    Ok(Level {
        size,
        std,
        smol,
        std_cpu,
        smol_cpu,
        load_before,
        load_after: loadavg(),
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Starts both swarms, then times `rounds` rounds: each runtime's
/// download seconds and CPU seconds (leecher and seeders), round by
/// round.
fn alternate(
    args: &Args,
    dirs: &Dirs,
    file: &Path,
    size: u64,
    rounds: usize,
) -> Res<[(Vec<f64>, Vec<f64>); 2]> {
    let mut swarms = Vec::new();
    for rt in RUNTIMES {
        eprintln!("p2p-bench: [level] starting the {rt} trackers and seeders");
        let bins = Bins::beside(&dirs.bin, rt);
        let sw = Swarm::start(&bins, &dirs.bench, args.seeders)
            .map_err(|e| format!("starting the {rt} swarm: {e}"))?;
        sw.share_everywhere(file, false)
            .map_err(|e| format!("sharing the file ({rt}): {e}"))?;
        swarms.push(sw);
    }
    let dir = WorkDir::new(args.dest_dir.as_deref().unwrap_or(&dirs.bench), "level")?;
    let name = file_name(file);
    let dest = dir.path().join(&name);
    let mut secs = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for (k, i, timed) in schedule(rounds) {
        let rt = RUNTIMES[i];
        let what = if timed {
            format!("round {}", k + 1)
        } else {
            "warm-up (untimed)".into()
        };
        eprintln!("p2p-bench: [level] {what}, {rt} download");
        baseline::set_memory(Memory::Warm, dir.path(), size)?;
        let r = swarms[i].download(&name, size, &dest, None);
        let _ = std::fs::remove_file(&dest);
        let run = r.map_err(|e| format!("{what}, {rt} download: {e}"))?;
        if timed {
            secs[i].0.push(run.secs);
            if let Some((leecher, seeders)) = run.cpu {
                secs[i].1.push(leecher + seeders);
            }
        }
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every timed download follows one of the other runtime, and each
    /// round times each runtime once.
    #[test]
    fn every_timed_download_follows_the_other_runtime() {
        let s = schedule(3);
        assert_eq!(s.len(), 1 + 3 * RUNTIMES.len());
        assert!(!s[0].2, "the first download is untimed");
        for w in s.windows(2) {
            assert!(w[1].2);
            assert_ne!(w[0].1, w[1].1, "{w:?}");
        }
        for k in 0..3 {
            let mut rts: Vec<usize> = s.iter().filter(|d| d.2 && d.0 == k).map(|d| d.1).collect();
            rts.sort();
            assert_eq!(rts, [0, 1]);
        }
    }
}
