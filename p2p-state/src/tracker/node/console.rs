//! The operator's console: `status` (this tracker's replication status)
//! and `conflicts` (the replicated conflict log), as lines for the driver
//! to print.

use super::*;

impl Tracker {
    pub(super) fn on_console(&mut self, cmd: ConsoleCmd) {
        let lines = match cmd {
            ConsoleCmd::Status => {
                let s = self.repl.get().status();
                let role = if self.is_primary() {
                    "primary"
                } else {
                    "backup"
                };
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
                        self.tracker_conns.keys().map(|t| t.0).collect::<Vec<_>>()
                    ),
                ]
            }
            ConsoleCmd::Conflicts => {
                let mut v: Vec<String> = self
                    .repl
                    .get()
                    .state()
                    .conflicts()
                    .map(|c| {
                        format!(
                            "conflict: {:?} at {} ms: {}",
                            c.op.kind, c.op.at_ms, c.reason
                        )
                    })
                    .collect();
                if v.is_empty() {
                    v.push("no conflicts recorded".into());
                }
                v
            }
        };
        self.event(TrackerEvent::Console(lines));
    }
}
