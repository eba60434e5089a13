//! `--runtime std|smol`: which driver runs the machines. Both drivers take
//! the same options and return the same handles (from `runtime-common`),
//! so a binary only picks the `start` function.

use clap::ValueEnum;
use runtime_common::client::{ClientHandle, ClientOptions};
use runtime_common::tracker::{DriverError, EventSink, TrackerHandle, TrackerOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// std::net and threads: one reader and one writer thread per connection.
    Std,
    /// smol / async-io: tasks on a few executor threads.
    Smol,
}

impl Runtime {
    pub fn start_tracker(
        self,
        opts: TrackerOptions,
        sink: EventSink,
    ) -> Result<TrackerHandle, DriverError> {
        match self {
            Runtime::Std => runtime_std::tracker::start(opts, sink),
            Runtime::Smol => runtime_smol::tracker::start(opts, sink),
        }
    }

    pub fn start_client(self, opts: ClientOptions) -> std::io::Result<ClientHandle> {
        match self {
            Runtime::Std => runtime_std::client::start(opts),
            Runtime::Smol => runtime_smol::client::start(opts),
        }
    }
}
