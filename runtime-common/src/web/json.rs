//! The API's JSON: the state (`GET /api/state`) and an action's answer.
//! Pure functions of what the client and the watcher know.

use p2p_proto::{FileSummary, GroupSummary, Reply};
use p2p_state::client::node::{CommandOk, DownloadLine, DownloadMark, Rates};
use p2p_state::download::DownloadState;
use serde_json::{Value, json};

use super::watch::View;
use crate::client::Snapshot;
use crate::present;

/// `GET /api/state`: the local snapshot and the tracker view together.
pub fn state(s: &Snapshot, v: &View, seeder: std::net::SocketAddr, last_event: u64) -> Value {
    let groups: Vec<Value> = v
        .groups
        .iter()
        .map(|g| {
            let mut o = group(g);
            let owner = s.user.as_ref() == Some(&g.owner);
            o["owned"] = json!(owner);
            if let Some(us) = v.requests.get(&g.name) {
                o["requests"] = json!(us.iter().map(|u| u.as_str()).collect::<Vec<_>>());
            }
            if let Some(us) = v.members.get(&g.name) {
                o["member_list"] = json!(us.iter().map(|u| u.as_str()).collect::<Vec<_>>());
            }
            if let Some(fs) = v.files.get(&g.name) {
                o["files"] = Value::Array(fs.iter().map(file).collect());
            }
            o
        })
        .collect();
    json!({
        "user": s.user.as_ref().map(|u| u.as_str()),
        "tracker": s.tracker.to_string(),
        "tracker_up": s.tracker_up,
        "trackers": s.trackers.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "seeder": seeder.to_string(),
        "groups": groups,
        "view_error": v.error,
        "tracker_status": v.status.as_ref().map(|t| json!({
            "id": t.id.to_string(),
            "epoch": t.epoch,
            "primary": t.primary.map(|p| p.to_string()),
            "in_sync": t.in_sync,
        })),
        "downloads": s.downloads.iter().map(|l| {
            let mut o = download(l);
            if let Some(sv) = s.download_served.get(&l.dl) {
                o["served"] = json!({ "pieces": sv.pieces, "bytes": sv.bytes });
            }
            o
        }).collect::<Vec<_>>(),
        "shares": s.shares.iter().map(|l| json!({
            "group": l.group.as_str(),
            "file": l.file.as_str(),
            "size": l.size,
            "path": l.path.as_ref().map(|p| p.display().to_string()),
            "served": { "pieces": l.served_pieces, "bytes": l.served_bytes },
        })).collect::<Vec<_>>(),
        "served": {
            "pieces": s.served_pieces,
            "bytes": s.served_bytes,
            "by_user": s.served_by_user.iter().map(|(u, p, b)| json!({
                "user": u.as_str(), "pieces": p, "bytes": b,
            })).collect::<Vec<_>>(),
        },
        "rates": rates(&s.rates),
        "last_event": last_event,
    })
}

/// The rate limits, bytes per second (`null`: no limit).
pub fn rates(r: &Rates) -> Value {
    json!({
        "up": r.up,
        "down": r.down,
        "up_per_peer": r.up_per_peer,
        "down_per_peer": r.down_per_peer,
    })
}

fn group(g: &GroupSummary) -> Value {
    json!({
        "name": g.name.as_str(),
        "owner": g.owner.as_str(),
        "members": g.members,
        "member": g.member,
        "pending": g.pending,
    })
}

fn file(f: &FileSummary) -> Value {
    json!({
        "name": f.name.as_str(),
        "size": f.size,
        "seeders": f.seeders,
        "partial": f.partial,
        "file_hash": f.file_hash.to_string(),
    })
}

/// One download: progress, rate, ETA, per-peer figures and the piece
/// map (`"1"` for a piece held, `"0"` for one missing).
pub fn download(l: &DownloadLine) -> Value {
    let state = match l.state() {
        DownloadMark::Complete => "complete",
        DownloadMark::Failed => "failed",
        DownloadMark::Downloading if l.progress.is_none() => "starting",
        DownloadMark::Downloading => "downloading",
    };
    let mut o = json!({
        "dl": l.dl,
        "group": l.group.as_str(),
        "file": l.file.as_str(),
        "state": state,
        "line": present::format_download(l),
    });
    if let Some(e) = &l.error {
        o["error"] = json!(e.to_string());
    }
    if let Some(p) = &l.progress {
        if let DownloadState::Failed(e) = &p.state {
            o["error"] = json!(e.to_string());
        }
        o["pieces_done"] = json!(p.pieces_done);
        o["pieces_total"] = json!(p.pieces_total);
        o["bytes_done"] = json!(p.bytes_done);
        o["bytes_total"] = json!(p.bytes_total);
        o["rate_bps"] = json!(p.rate_bps);
        o["eta_secs"] = json!(present::eta_secs(p));
        o["waiting"] = json!(p.waiting_reason.as_ref().map(|w| w.to_string()));
        o["pieces"] = json!(
            (0..p.have.len())
                .map(|i| if p.have.contains(i) { '1' } else { '0' })
                .collect::<String>()
        );
        o["peers"] = Value::Array(
            p.peers
                .iter()
                .map(|q| {
                    json!({
                        "user": q.user.as_str(),
                        "addr": q.addr.to_string(),
                        "pieces": q.pieces_received,
                        "in_flight": q.in_flight,
                        "rate_bps": q.rate_bps,
                        "connected": q.connected,
                    })
                })
                .collect(),
        );
    }
    o
}

/// An action's answer: `ok`, the REPL's text, and the structured result.
pub fn action_ok(text: &str, ok: &CommandOk) -> Value {
    let result = match ok {
        CommandOk::Reply(Reply::Groups(gs)) => Value::Array(gs.iter().map(group).collect()),
        CommandOk::Reply(Reply::Requests(us)) => {
            json!(us.iter().map(|u| u.as_str()).collect::<Vec<_>>())
        }
        CommandOk::Reply(Reply::Files(fs)) => Value::Array(fs.iter().map(file).collect()),
        CommandOk::Reply(Reply::Members(us)) => {
            json!(us.iter().map(|u| u.as_str()).collect::<Vec<_>>())
        }
        CommandOk::Reply(Reply::LoggedIn { user, .. }) => json!({ "user": user.as_str() }),
        CommandOk::Reply(Reply::Left { new_owner, deleted }) => json!({
            "new_owner": new_owner.as_ref().map(|u| u.as_str()),
            "deleted": deleted,
        }),
        CommandOk::Reply(Reply::Shared { new_file }) => json!({ "new_file": new_file }),
        CommandOk::Reply(_) => Value::Null,
        CommandOk::Started { dl } => json!({ "dl": dl }),
        CommandOk::Downloads(lines) => Value::Array(lines.iter().map(download).collect()),
        CommandOk::Rates(r) => rates(r),
    };
    json!({ "ok": true, "text": text, "result": result })
}
