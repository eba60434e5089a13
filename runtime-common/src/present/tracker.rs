//! The tracker's console lines: the seed's `Connected to peer tracker`
//! line and the answers to the operator's `status` and `conflicts`
//! (typed by the machine as a [`ConsoleAnswer`]).

use p2p_proto::TrackerId;
use p2p_state::tracker::node::ConsoleAnswer;

/// The seed's line when a peer tracker connects.
pub fn connected_to_tracker(tracker: TrackerId) -> String {
    format!("Connected to peer tracker {tracker}")
}

/// A console line that is no command.
pub fn unknown_console_command(line: &str) -> String {
    format!("unknown command {line:?} (commands: status, conflicts, quit)")
}

/// A console answer, one line each.
pub fn console_lines(answer: &ConsoleAnswer) -> Vec<String> {
    match answer {
        ConsoleAnswer::Status {
            status: s,
            primary,
            trackers,
        } => {
            let role = if *primary { "primary" } else { "backup" };
            vec![
                format!(
                    "tracker {} ({role}), epoch {} (primary {}), log {}:{}, applied {}, {}",
                    s.id,
                    s.epoch,
                    s.primary
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "none".into()),
                    s.last.epoch,
                    s.last.index,
                    s.applied,
                    if s.in_sync { "in sync" } else { "not in sync" }
                ),
                format!("state digest {}", s.digest),
                format!(
                    "trackers connected: {:?}",
                    trackers.iter().map(|t| t.0).collect::<Vec<_>>()
                ),
            ]
        }
        ConsoleAnswer::Conflicts(cs) if cs.is_empty() => vec!["no conflicts recorded".into()],
        ConsoleAnswer::Conflicts(cs) => cs
            .iter()
            .map(|c| {
                format!(
                    "conflict: {:?} at {} ms: {}",
                    c.op.kind, c.op.at_ms, c.reason
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::{LogPos, Op, OpKind, Sha1Hash, TrackerError, TrackerStatus};
    use p2p_state::tracker::state::Conflict;

    #[test]
    fn status_and_conflicts_read_as_before() {
        let status = TrackerStatus {
            id: TrackerId(2),
            epoch: 3,
            primary: Some(TrackerId(1)),
            last: LogPos {
                epoch: 3,
                index: 17,
            },
            applied: 16,
            digest: Sha1Hash([0xab; 20]),
            in_sync: false,
        };
        let lines = console_lines(&ConsoleAnswer::Status {
            status,
            primary: false,
            trackers: vec![TrackerId(1), TrackerId(3)],
        });
        assert_eq!(
            lines,
            [
                "tracker 2 (backup), epoch 3 (primary 1), log 3:17, applied 16, not in sync",
                &format!("state digest {}", Sha1Hash([0xab; 20])),
                "trackers connected: [1, 3]",
            ]
        );
        assert_eq!(
            console_lines(&ConsoleAnswer::Conflicts(vec![])),
            ["no conflicts recorded"]
        );
        let c = Conflict {
            op: Op {
                at_ms: 5,
                origin: None,
                kind: OpKind::Noop,
            },
            reason: TrackerError::NotLoggedIn,
            at_ms: 6,
        };
        assert_eq!(
            console_lines(&ConsoleAnswer::Conflicts(vec![c])),
            ["conflict: Noop at 5 ms: not logged in (login first)"]
        );
        assert_eq!(
            connected_to_tracker(TrackerId(3)),
            "Connected to peer tracker 3"
        );
    }
}
