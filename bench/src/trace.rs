//! `p2p-bench --trace FILE`: the leecher of the first download run writes
//! its data-path counters every 10 ms (`client --trace`,
//! [`runtime_common::trace`]); this turns them into an SVG of four
//! stacked plots (MB/s received, requests in flight, pieces hashed per
//! 10 ms, pieces waiting for the disk) and a summary line for the table,
//! so a stall is visible. The CSV is kept beside the SVG.

use std::fmt::Write as _;
use std::path::Path;

use super::proc::Res;

/// One sample: counters since the leecher started.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    ms: f64,
    bytes: u64,
    requests: u64,
    hashed: u64,
    queued: u64,
    written: u64,
    /// Pieces written with `O_DIRECT` (a later column: 0 in older traces).
    direct: u64,
    /// Pieces hashed together with others (later still; two at a time
    /// in older traces).
    batched: u64,
    /// The groups they were hashed in (0 in older traces).
    batches: u64,
}

fn parse(csv: &str) -> Vec<Row> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split(',')
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            let [ms, bytes, requests, hashed, queued, written, ..] = v[..] else {
                return None;
            };
            Some(Row {
                ms: ms as f64,
                bytes,
                requests,
                hashed,
                queued,
                written,
                direct: v.get(8).copied().unwrap_or(0),
                batched: v.get(9).copied().unwrap_or(0),
                batches: v.get(10).copied().unwrap_or(0),
            })
        })
        .collect()
}

/// The series plotted, per interval: (ms, MB/s, in flight, hashed, disk queue).
type Point = (f64, f64, f64, f64, f64);

/// One plot: its name and the series it draws.
type Panel = (&'static str, fn(&Point) -> f64);

/// The samples from the first byte of piece traffic to the last piece
/// written (the download), as points.
fn points(rows: &[Row]) -> Vec<Point> {
    let Some(last) = rows.last() else {
        return Vec::new();
    };
    // The download: from the first request to the last piece written.
    let start = rows
        .iter()
        .position(|r| r.requests > 0)
        .unwrap_or(0)
        .saturating_sub(1);
    let end = rows
        .iter()
        .position(|r| r.written == last.written)
        .unwrap_or(rows.len() - 1);
    rows[start..=end.max(start)]
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let secs = ((b.ms - a.ms) / 1000.0).max(1e-3);
            (
                b.ms - rows[start].ms,
                (b.bytes - a.bytes) as f64 / secs / 1e6,
                b.requests.saturating_sub(b.hashed) as f64,
                (b.hashed - a.hashed) as f64,
                b.queued.saturating_sub(b.written) as f64,
            )
        })
        .collect()
}

/// What the table says about a trace: `p` its points, `last` its last
/// row (how many pieces were written, and how many with `O_DIRECT`).
fn summary(p: &[Point], last: Row) -> String {
    if p.is_empty() {
        return "no download in the trace".into();
    }
    let n = p.len();
    let idle = p.iter().filter(|q| q.1 == 0.0).count();
    let max = |f: fn(&Point) -> f64| p.iter().map(f).fold(0.0, f64::max);
    let mean = |f: fn(&Point) -> f64| p.iter().map(f).sum::<f64>() / n as f64;
    format!(
        "{n} intervals of 10 ms; {idle} received nothing; in flight mean {:.1} max {:.0}; \
         disk queue mean {:.1} max {:.0} pieces; {:.0} MB/s mean; {} of {} pieces written \
         with O_DIRECT; {} of {} hashed with others{}",
        mean(|q| q.2),
        max(|q| q.2),
        mean(|q| q.4),
        max(|q| q.4),
        mean(|q| q.1),
        last.direct,
        last.written,
        last.batched,
        last.hashed,
        if last.batches > 0 {
            format!(
                " ({:.1} at a time)",
                last.batched as f64 / last.batches as f64
            )
        } else {
            String::new()
        },
    )
}

fn svg(p: &[Point], title: &str) -> String {
    const W: f64 = 1000.0;
    const PANEL: f64 = 140.0;
    const LEFT: f64 = 70.0;
    let panels: [Panel; 4] = [
        ("MB/s received", |q| q.1),
        ("requests in flight", |q| q.2),
        ("pieces hashed per 10 ms", |q| q.3),
        ("pieces waiting for the disk", |q| q.4),
    ];
    let t_max = p.last().map_or(1.0, |q| q.0).max(1.0);
    let h = 30.0 + panels.len() as f64 * (PANEL + 30.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{LEFT}\" y=\"18\">{title}</text>");
    for (k, (name, f)) in panels.iter().enumerate() {
        let top = 30.0 + k as f64 * (PANEL + 30.0) + 16.0;
        let y_max = p.iter().map(f).fold(0.0, f64::max).max(1.0);
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{}\">{name} (max {y_max:.0})</text>",
            top - 4.0
        );
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{}\" height=\"{PANEL}\" fill=\"none\" stroke=\"#999\"/>",
            W - LEFT - 10.0
        );
        let mut pts = String::new();
        for q in p {
            let x = LEFT + q.0 / t_max * (W - LEFT - 10.0);
            let y = top + PANEL - f(q) / y_max * PANEL;
            let _ = write!(pts, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            s,
            "<polyline points=\"{pts}\" fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"1\"/>"
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"{}\">0 .. {:.0} ms</text>",
        h - 4.0,
        t_max
    );
    s.push_str("</svg>\n");
    s
}

/// Reads the leecher's CSV at `csv`, writes the SVG to `out` (and keeps
/// the CSV beside it, `out` with `.csv`): the summary line.
pub fn render(csv: &Path, out: &Path, title: &str) -> Res<String> {
    let text = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let rows = parse(&text);
    let p = points(&rows);
    std::fs::write(out, svg(&p, title)).map_err(|e| format!("{}: {e}", out.display()))?;
    let kept = out.with_extension("csv");
    std::fs::write(&kept, &text).map_err(|e| format!("{}: {e}", kept.display()))?;
    let last = rows.last().copied().unwrap_or_default();
    Ok(format!("{} ({})", summary(&p, last), out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_shows_as_intervals_that_received_nothing() {
        let csv = "h\n0,0,0,0,0,0\n10,100,8,0,0,0\n20,100,8,0,0,0\n30,5000000,8,4,4,1\n40,6000000,8,8,8,8\n";
        let rows = parse(csv);
        let p = points(&rows);
        assert_eq!(p.len(), 4);
        let s = summary(&p, *rows.last().unwrap());
        assert!(
            s.starts_with("4 intervals of 10 ms; 1 received nothing"),
            "{s}"
        );
        assert!(
            s.ends_with("0 of 8 pieces written with O_DIRECT; 0 of 8 hashed with others"),
            "{s}"
        );
        assert!(svg(&p, "t").contains("<polyline"));
    }

    #[test]
    fn the_summary_counts_the_pieces_written_with_o_direct_and_hashed_together() {
        let csv = "h\n0,0,0,0,0,0,0,0,0\n10,100,8,0,0,0,0,0,0\n20,5000000,8,8,8,8,0,0,3\n";
        let rows = parse(csv);
        let s = summary(&points(&rows), *rows.last().unwrap());
        assert!(s.contains("3 of 8 pieces written with O_DIRECT"), "{s}");
        let csv = "h\n0,0,0,0,0,0,0,0,0,0\n20,5000000,8,8,8,8,0,0,8,6\n";
        let rows = parse(csv);
        let s = summary(&points(&rows), *rows.last().unwrap());
        assert!(
            s.ends_with("8 of 8 pieces written with O_DIRECT; 6 of 8 hashed with others"),
            "{s}"
        );
        let csv = "h\n0,0,0,0,0,0,0,0,0,0,0\n20,5000000,8,8,8,8,0,0,8,7,2\n";
        let rows = parse(csv);
        let s = summary(&points(&rows), *rows.last().unwrap());
        assert!(
            s.ends_with("7 of 8 hashed with others (3.5 at a time)"),
            "{s}"
        );
    }
}
