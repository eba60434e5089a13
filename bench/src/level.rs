//! The runtimes level: the std and smol downloads timed in alternated
//! rounds, after the runtime sections ([`run`]).
//!
//! The runtime sections run minutes apart, and on a shared 2-core VM
//! minutes are enough for the machine to change (the same build measured
//! smol / std at 0.82x in one full run and 1.53x in another). A
//! comparison of two contenders is only fair in the same conditions, so
//! here both runtimes' swarms run side by side and each round downloads
//! the file once with each, the order alternating (std first in odd
//! rounds), every download on warm memory, into the download section's
//! destination directory. The figure and its rows are
//! `report::Level`.

use super::*;
use crate::figures::file_name;
use crate::report::{Level, RuntimeReport, level_ready};

/// The contenders; [`order`] gives indices into it.
const RUNTIMES: [&str; 2] = ["std", "smol"];

/// The order of round `k` (counted from 0) as indices into [`RUNTIMES`]:
/// std first in the first, third, ... round, smol first in the others.
fn order(k: usize) -> [usize; 2] {
    if k.is_multiple_of(2) { [0, 1] } else { [1, 0] }
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
    let [std, smol] = alternate(args, dirs, file, size, rounds.max(1)).map_err(|e| {
        errors.push(format!("runtimes level: {e}"));
        e
    })?;
    Ok(Level {
        size,
        std,
        smol,
        load_before,
        load_after: loadavg(),
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Starts both swarms, then times `rounds` rounds: each runtime's
/// download seconds, round by round.
fn alternate(
    args: &Args,
    dirs: &Dirs,
    file: &Path,
    size: u64,
    rounds: usize,
) -> Res<[Vec<f64>; 2]> {
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
    let mut secs = [Vec::new(), Vec::new()];
    for k in 0..rounds {
        for i in order(k) {
            let rt = RUNTIMES[i];
            eprintln!("p2p-bench: [level] round {}, {rt} download", k + 1);
            baseline::set_memory(Memory::Warm, dir.path(), size)?;
            let r = swarms[i].download(&name, size, &dest, None);
            let _ = std::fs::remove_file(&dest);
            let run = r.map_err(|e| format!("round {}, {rt} download: {e}", k + 1))?;
            secs[i].push(run.secs);
        }
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// std downloads first in odd rounds (1, 3, ...), smol in even ones,
    /// and each round has both.
    #[test]
    fn the_order_alternates() {
        let firsts: Vec<&str> = (0..4).map(|k| RUNTIMES[order(k)[0]]).collect();
        assert_eq!(firsts, ["std", "smol", "std", "smol"]);
        for k in 0..4 {
            let mut o = order(k);
            o.sort();
            assert_eq!(o, [0, 1]);
        }
    }
}
