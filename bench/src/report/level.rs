//! The runtimes level's figure (`level.rs` measures it): the std and
//! smol downloads of alternated rounds, their ratios and their rows in
//! the table. It replaces the ratio of the two runtime sections' times,
//! which were measured minutes apart and moved with the machine.

use super::*;

/// The row's name, kept from when it compared the two sections.
const ROW: &str = "p2p download, smol / std";

/// Both runtimes' downloads of the file, round by round.
#[derive(Clone, Debug)]
pub struct Level {
    pub size: u64,
    /// Seconds of each round's std download.
    pub std: Vec<f64>,
    /// Seconds of each round's smol download.
    pub smol: Vec<f64>,
    /// CPU seconds of each round's std download, leecher and seeders
    /// together (where `/proc` had them).
    pub std_cpu: Vec<f64>,
    /// The same for smol.
    pub smol_cpu: Vec<f64>,
    pub load_before: String,
    pub load_after: String,
    /// The whole section, swarms' start included.
    pub secs: f64,
}

impl Level {
    /// smol's median time over std's.
    pub fn median_ratio(&self) -> Option<f64> {
        ratio(median(&self.smol), median(&self.std))
    }

    /// smol's median CPU seconds over std's.
    pub fn cpu_ratio(&self) -> Option<f64> {
        ratio(median(&self.smol_cpu), median(&self.std_cpu))
    }

    /// Each round's smol time over its std time.
    pub fn round_ratios(&self) -> Vec<f64> {
        self.std
            .iter()
            .zip(&self.smol)
            .map(|(s, m)| m / s)
            .collect()
    }
}

/// Whether the section can run: each of `runtimes` was benchmarked, is
/// available and its download figure ran; else why not.
pub fn level_ready(reports: &[RuntimeReport], runtimes: &[&str]) -> Result<(), String> {
    for rt in runtimes {
        let r = reports
            .iter()
            .find(|r| r.runtime == *rt)
            .ok_or_else(|| format!("skipped: runtime {rt} was not benchmarked"))?;
        if r.unavailable.is_some() {
            return Err(format!("skipped: runtime {rt} is not available"));
        }
        match &r.download {
            None => return Err(format!("skipped: the {rt} download figure did not run")),
            Some(d) if d.p2p.is_err() => {
                return Err(format!("skipped: the {rt} download failed"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The section's heading and rows.
pub(super) fn level_rows(t: &mut Table, l: &Fig<Level>) {
    let _ = write!(t.out, "Runtimes level: alternated downloads");
    let l = match l {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(t.out);
            return t.skip(ROW, e);
        }
    };
    let _ = writeln!(
        t.out,
        "  ({:.0} s; load average before {}, after {})",
        l.secs, l.load_before, l.load_after
    );
    let n = l.std.len();
    t.head(&format!(
        "{n} round{} of one {} download per runtime, both swarms running, every download on warm memory",
        if n == 1 { "" } else { "s" },
        mib(l.size)
    ));
    t.row("", "std median", "smol median", "");
    let cell = |v: &[f64]| {
        let m = median(v);
        format!("{} {}", secs(m), rate(l.size, m))
    };
    t.row("p2p download", &cell(&l.std), &cell(&l.smol), "");
    t.row(
        ROW,
        &fmt_ratio(l.median_ratio()),
        "",
        "target 0.90x-1.10x (alternated runs, same machine state)",
    );
    t.row(
        "CPU: leecher + seeders",
        &cpu_cell(&l.std_cpu),
        &cpu_cell(&l.smol_cpu),
        &format!(
            "smol / std {} (CPU seconds: little moved by the machine's state)",
            fmt_ratio(l.cpu_ratio())
        ),
    );
    let rounds: Vec<String> = l
        .round_ratios()
        .into_iter()
        .map(|r| fmt_ratio(Some(r)))
        .collect();
    let _ = writeln!(
        t.out,
        "      rounds: {}  (smol / std of each round; std then smol, each after the other runtime)",
        rounds.join(" ")
    );
}

fn cpu_cell(v: &[f64]) -> String {
    median(v).map_or_else(|| "n/a".into(), |m| format!("{m:.2} s"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{report, runtime};
    use super::*;

    fn level(std: &[f64], smol: &[f64]) -> Level {
        Level {
            size: 1024 * 1024 * 1024,
            std: std.to_vec(),
            smol: smol.to_vec(),
            std_cpu: std.iter().map(|s| 2.0 * s).collect(),
            smol_cpu: smol.iter().map(|s| 1.5 * s).collect(),
            load_before: "1.00 0.90 0.80".into(),
            load_after: "1.10 0.95 0.81".into(),
            secs: 20.0,
        }
    }

    /// The ratio is of the medians (not the median of the rounds'
    /// ratios); each round's ratio is its own smol over its own std.
    #[test]
    fn the_ratios_are_of_medians_and_of_rounds() {
        let l = level(&[1.0, 2.0, 1.2], &[1.1, 1.8, 1.2]);
        assert!((l.median_ratio().unwrap() - 1.2 / 1.2).abs() < 1e-9);
        let r = l.round_ratios();
        assert_eq!(r.len(), 3);
        assert!((r[0] - 1.1).abs() < 1e-9 && (r[1] - 0.9).abs() < 1e-9);
        let even = level(&[1.0, 2.0], &[1.5, 1.5]);
        assert!((even.median_ratio().unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(level(&[], &[]).median_ratio(), None);
    }

    /// The table keeps the row's name and shows each runtime's median,
    /// the ratio with its target, and the rounds; a section that could
    /// not run says why; no section, no row.
    #[test]
    fn the_section_is_in_the_table() {
        let mut t = Table { out: String::new() };
        level_rows(&mut t, &Ok(level(&[1.0, 1.2, 1.1], &[1.05, 1.14, 1.21])));
        let line = |key: &str| {
            let l = t.out.lines().find(|l| l.contains(key)).unwrap_or_default();
            l.split_whitespace().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(line("p2p download ")[2..6], ["1.100", "s", "976", "MB/s"]);
        assert_eq!(line("p2p download ")[6..8], ["1.140", "s"]);
        let ratio = line(ROW);
        assert_eq!(ratio[5..7], ["1.04x", "target"], "{}", t.out);
        assert_eq!(line("rounds:")[1..4], ["1.05x", "0.95x", "1.10x"]);
        let cpu = line("CPU: leecher + seeders");
        assert_eq!(cpu[4..11], ["2.20", "s", "1.71", "s", "smol", "/", "std"]);
        assert_eq!(cpu[11], "0.78x", "{}", t.out);
        let mut t = Table { out: String::new() };
        level_rows(
            &mut t,
            &Err("skipped: runtime smol is not available".into()),
        );
        assert!(
            t.out
                .contains(&format!("{ROW:<32} n/a: skipped: runtime smol"))
        );
        let mut rep = report(vec![]);
        assert!(!rep.table().contains(ROW));
        rep.level = Some(Ok(level(&[1.0], &[1.0])));
        assert!(rep.table().contains(ROW));
    }

    /// `smol_over_std` in the JSON: null without the section, the runs
    /// and ratios with it, the reason when it could not run.
    #[test]
    fn the_section_is_in_the_json() {
        let mut rep = report(vec![]);
        assert!(rep.json().contains(r#""smol_over_std":null"#));
        rep.level = Some(Ok(level(&[1.0, 2.0], &[1.1, 1.5])));
        let want = r#""smol_over_std":{"alternated":{"std_secs":[1,2],"smol_secs":[1.1,1.5],"#;
        assert!(rep.json().contains(want), "{}", rep.json());
        assert!(rep.json().contains(r#""median_ratio":0.8666"#));
        assert!(rep.json().contains(r#""round_ratios":[1.1,0.75]"#));
        assert!(rep.json().contains(r#""std_cpu_secs":[2,4]"#));
        assert!(rep.json().contains(r#""cpu_ratio":0.65"#), "{}", rep.json());
        rep.level = Some(Err("skipped: x".into()));
        let want = r#""smol_over_std":{"alternated":{"error":"skipped: x"}}"#;
        assert!(rep.json().contains(want), "{}", rep.json());
    }

    /// The section runs only when both runtimes ran their download.
    #[test]
    fn the_section_needs_both_downloads() {
        let both = ["std", "smol"];
        let std_r = runtime("std", Ok(vec![]));
        let smol = runtime("smol", Ok(vec![]));
        assert_eq!(level_ready(&[std_r.clone(), smol.clone()], &both), Ok(()));
        let why = level_ready(std::slice::from_ref(&std_r), &both).unwrap_err();
        assert!(why.contains("smol was not benchmarked"), "{why}");
        let mut off = smol.clone();
        off.unavailable = Some("refused".into());
        let why = level_ready(&[std_r.clone(), off], &both).unwrap_err();
        assert!(why.contains("smol is not available"), "{why}");
        let failed = runtime("smol", Err("x".into()));
        let why = level_ready(&[std_r.clone(), failed], &both).unwrap_err();
        assert!(why.contains("smol download failed"), "{why}");
        let mut none = smol;
        none.download = None;
        let why = level_ready(&[std_r, none], &both).unwrap_err();
        assert!(why.contains("smol download figure did not run"), "{why}");
    }
}
