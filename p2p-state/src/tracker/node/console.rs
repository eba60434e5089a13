//! The operator's console: `status` (this tracker's replication status)
//! and `conflicts` (the replicated conflict log), answered as a typed
//! [`ConsoleAnswer`] for the driver to present.

use super::*;

impl Tracker {
    pub(super) fn on_console(&mut self, cmd: ConsoleCmd) {
        let answer = match cmd {
            ConsoleCmd::Status => ConsoleAnswer::Status {
                status: self.repl.get().status(),
                primary: self.is_primary(),
                trackers: self.tracker_conns.keys().copied().collect(),
            },
            ConsoleCmd::Conflicts => {
                ConsoleAnswer::Conflicts(self.repl.get().state().conflicts().cloned().collect())
            }
        };
        self.event(TrackerEvent::Console(answer));
    }
}
