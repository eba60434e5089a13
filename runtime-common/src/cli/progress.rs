//! Download progress as text: the `show_downloads` lines (percent, rate,
//! ETA, what each peer gave) and when plain progress lines are due
//! ([`TenPercent`]).

use p2p_state::client::node::DownloadLine;
use p2p_state::download::{DownloadState, Progress};

use super::format::bytes;

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
    let head = format!("{} [{}] {}", l.mark(), l.group, l.file);
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
        let ended = l.state() != p2p_state::client::node::DownloadMark::Downloading;
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

/// `1m05s`, `2h03m`, `42s`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
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
    use p2p_proto::{FileName, GroupName, UserName};

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
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(7380), "2h03m");
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
}
