//! Downloads as text: the marks (`[D]`, `[C]`, `[F]`), the
//! `show_downloads` lines (percent, rate, ETA, what each peer gave), when
//! plain progress lines are due ([`TenPercent`]), and what
//! `wait_downloads` says when they end.

use p2p_proto::{FileName, GroupName};
use p2p_state::client::node::{DownloadLine, DownloadMark};
use p2p_state::download::{DownloadState, Progress};

use super::units::{bytes, duration};

/// `[D]` (downloading), `[C]` (complete) or `[F]` (failed).
pub fn mark(m: DownloadMark) -> &'static str {
    match m {
        DownloadMark::Downloading => "[D]",
        DownloadMark::Complete => "[C]",
        DownloadMark::Failed => "[F]",
    }
}

/// A download as every line names it: `[group] file`.
pub fn download_name(group: &GroupName, file: &FileName) -> String {
    format!("[{group}] {file}")
}

/// The failed downloads, `[g] a, [g] b`.
pub fn download_names(failed: &[(GroupName, FileName)]) -> String {
    failed
        .iter()
        .map(|(g, f)| download_name(g, f))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `wait_downloads` answers: `Ok` (every download complete) or the
/// error naming the failed ones.
pub fn downloads_ended(failed: &[(GroupName, FileName)]) -> Result<String, String> {
    match failed.is_empty() {
        true => Ok("all downloads ended".into()),
        false => Err(format!("downloads failed: {}", download_names(failed))),
    }
}

/// `wait_downloads <seconds>` gave up.
pub fn downloads_still_running(seconds: u64) -> String {
    format!("downloads still running after {seconds} s")
}

/// `show_downloads`: one line per download.
pub fn format_downloads(lines: &[DownloadLine]) -> String {
    if lines.is_empty() {
        return "no downloads".into();
    }
    lines
        .iter()
        .map(format_download)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn format_download(l: &DownloadLine) -> String {
    let head = format!("{} {}", mark(l.state()), download_name(&l.group, &l.file));
    if let Some(e) = &l.error {
        return format!("{head}  failed: {e}");
    }
    let Some(p) = &l.progress else {
        return format!("{head}  starting");
    };
    let pct = if p.bytes_total == 0 {
        100.0
    } else {
        p.bytes_done as f64 * 100.0 / p.bytes_total as f64
    };
    let body = format!("{pct:.0}%  {}/{} pieces", p.pieces_done, p.pieces_total);
    match &p.state {
        DownloadState::Complete => format!("{head}  {body}  complete"),
        DownloadState::Failed(e) => format!("{head}  {body}  failed: {e}"),
        DownloadState::Downloading => {
            let why = p
                .waiting_reason
                .as_ref()
                .map(|w| format!("  ({w})"))
                .unwrap_or_default();
            let eta = eta_secs(p)
                .map(|s| format!("  ETA {}", duration(s)))
                .unwrap_or_default();
            format!(
                "{head}  {body}  {}/s{eta}  {} peer(s){}{why}",
                bytes(p.rate_bps),
                p.peers_in_use,
                per_peer(p)
            )
        }
    }
}

/// The template of a download's progress bar on a terminal (indicatif's
/// syntax): the bar, then the download's [`format_download`] line.
pub const DOWNLOAD_BAR_TEMPLATE: &str = "{bar:30} {msg}";

/// When plain progress lines are printed (output that is not a
/// terminal): each time a download crosses another tenth, and once at its
/// end. Pure; the caller prints what [`TenPercent::step`] returns.
#[derive(Debug, Default)]
pub struct TenPercent {
    /// Per download: the last tenth printed, and whether its end was.
    seen: std::collections::BTreeMap<u64, (u64, bool)>,
}

impl TenPercent {
    /// The line to print for this state of `l`, if any.
    pub fn step(&mut self, l: &DownloadLine) -> Option<String> {
        let ended = l.state() != DownloadMark::Downloading;
        let tenth = match &l.progress {
            Some(p) if p.bytes_total > 0 => p.bytes_done * 10 / p.bytes_total,
            Some(_) => 10,
            None => 0,
        };
        let seen = self.seen.entry(l.dl).or_insert((0, false));
        if seen.1 || (!ended && tenth <= seen.0) {
            return None;
        }
        *seen = (tenth, ended);
        Some(format_download(l))
    }
}

/// Seconds left at the current rate (`None` while nothing arrives).
pub fn eta_secs(p: &Progress) -> Option<u64> {
    if p.rate_bps == 0 || p.state != DownloadState::Downloading {
        return None;
    }
    Some(
        p.bytes_total
            .saturating_sub(p.bytes_done)
            .div_ceil(p.rate_bps),
    )
}

/// What each peer gave: `[alice 12, bob 30]` (pieces), peers that gave
/// nothing yet left out.
fn per_peer(p: &Progress) -> String {
    let gave: Vec<String> = p
        .peers
        .iter()
        .filter(|q| q.pieces_received > 0)
        .map(|q| format!("{} {}", q.user, q.pieces_received))
        .collect();
    match gave.is_empty() {
        true => String::new(),
        false => format!(" [{}]", gave.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::UserName;

    /// `show_downloads` shows the ETA and what each peer gave.
    #[test]
    fn a_download_line_has_eta_and_per_peer_figures() {
        use p2p_proto::PieceSet;
        use p2p_state::download::PeerProgress;
        let peer = |u: &str, n| PeerProgress {
            user: UserName::new(u).unwrap(),
            addr: "127.0.0.1:1".parse().unwrap(),
            pieces_received: n,
            in_flight: 1,
            rate_bps: None,
            connected: true,
        };
        let p = Progress {
            state: DownloadState::Downloading,
            pieces_done: 3,
            pieces_total: 10,
            bytes_done: 3 << 20,
            bytes_total: 10 << 20,
            rate_bps: 1 << 20,
            peers_in_use: 2,
            peers_connected: 2,
            peers_known: 3,
            requests_in_flight: 2,
            waiting_reason: None,
            have: PieceSet::empty(10),
            peers: vec![peer("alice", 2), peer("bob", 1), peer("carol", 0)],
        };
        assert_eq!(eta_secs(&p), Some(7));
        let l = DownloadLine {
            dl: 1,
            group: GroupName::new("g").unwrap(),
            file: FileName::new("f.bin").unwrap(),
            progress: Some(p.clone()),
            error: None,
        };
        assert_eq!(
            format_download(&l),
            "[D] [g] f.bin  30%  3/10 pieces  1.0 MiB/s  ETA 7s  2 peer(s) [alice 2, bob 1]"
        );
        let idle = Progress { rate_bps: 0, ..p };
        assert_eq!(eta_secs(&idle), None);
    }

    /// Plain progress: a line per tenth crossed and one at the end, none
    /// in between or after.
    #[test]
    fn plain_progress_prints_every_tenth_and_the_end() {
        let line = |done: u64, state: DownloadState| DownloadLine {
            dl: 7,
            group: GroupName::new("g").unwrap(),
            file: FileName::new("f").unwrap(),
            progress: Some(Progress {
                state,
                pieces_done: done as u32,
                pieces_total: 100,
                bytes_done: done,
                bytes_total: 100,
                rate_bps: 0,
                peers_in_use: 0,
                peers_connected: 0,
                peers_known: 0,
                requests_in_flight: 0,
                waiting_reason: None,
                have: p2p_proto::PieceSet::empty(100),
                peers: vec![],
            }),
            error: None,
        };
        let mut t = TenPercent::default();
        let printed: Vec<u64> = [0, 5, 9, 10, 15, 19, 20, 45, 99]
            .into_iter()
            .filter(|&d| t.step(&line(d, DownloadState::Downloading)).is_some())
            .collect();
        assert_eq!(printed, [10, 20, 45, 99]);
        assert!(t.step(&line(100, DownloadState::Complete)).is_some());
        assert!(t.step(&line(100, DownloadState::Complete)).is_none());
    }

    /// The marks and what `wait_downloads` says at the end.
    #[test]
    fn marks_and_the_end_of_downloads() {
        assert_eq!(mark(DownloadMark::Downloading), "[D]");
        assert_eq!(mark(DownloadMark::Complete), "[C]");
        assert_eq!(mark(DownloadMark::Failed), "[F]");
        assert_eq!(downloads_ended(&[]), Ok("all downloads ended".into()));
        let g = GroupName::new("g").unwrap();
        let failed = [
            (g.clone(), FileName::new("a").unwrap()),
            (g, FileName::new("b c").unwrap()),
        ];
        assert_eq!(
            downloads_ended(&failed),
            Err("downloads failed: [g] a, [g] b c".into())
        );
        assert_eq!(
            downloads_still_running(5),
            "downloads still running after 5 s"
        );
    }
}
