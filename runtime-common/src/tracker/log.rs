//! The log lines of the replication's events (a tracker's operator
//! reads them: elections, catch-up, divergence).

use p2p_state::tracker::repl::{ReplEvent, epoch_primary, epoch_round};

fn epoch_name(epoch: u64) -> String {
    match epoch_primary(epoch) {
        Some(p) => format!("{} (round {}, primary {p})", epoch, epoch_round(epoch)),
        None => epoch.to_string(),
    }
}

pub(super) fn log_repl(e: &ReplEvent) {
    match e {
        ReplEvent::BecamePrimary { epoch } => {
            tracing::info!("became primary, epoch {}", epoch_name(*epoch))
        }
        ReplEvent::Following { primary, epoch } => {
            tracing::info!("following primary {primary}, epoch {}", epoch_name(*epoch))
        }
        ReplEvent::InSync { primary } => tracing::info!("caught up with primary {primary}"),
        ReplEvent::PeerInSync { peer } => tracing::info!("tracker {peer} is in sync"),
        ReplEvent::PeerOutOfSync { peer, why } => {
            tracing::warn!("tracker {peer} is out of sync: {why}")
        }
        ReplEvent::PeerSilent { peer, silent_ms } => tracing::warn!(
            "no word from tracker {peer} for {silent_ms} ms: treating it as gone (closing its connection)"
        ),
        ReplEvent::SnapshotInstalled { at } => {
            tracing::info!(
                "installed the primary's snapshot at {}:{}",
                at.epoch,
                at.index
            )
        }
        ReplEvent::Diverged {
            fork,
            resubmitting,
            lost,
        } => tracing::warn!(
            "log diverged from the primary's after index {fork}: re-submitting {resubmitting} op(s), {lost} lost"
        ),
        ReplEvent::Conflict { op, reason } => {
            // Debug of an op shows no password hash and only a prefix of a
            // token or key (p2p_proto::PasswordHash, SessionToken).
            tracing::warn!("divergent op {:?} no longer applies: {reason}", op.kind)
        }
        ReplEvent::PeerError { peer, what } => {
            tracing::warn!("tracker {peer}: {}", what.as_str())
        }
    }
}
