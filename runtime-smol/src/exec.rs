//! The executor the smol drivers share: one per process, run by
//! [`threads`] threads that each block on it (and drive the async-io
//! reactor while idle). Many connections, few threads.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use p2p_state::Instant;
use runtime_common::{Clock, Woke};
use smol::channel::Receiver;
use smol::future;
use smol::{Executor, Task};

use crate::deadline::Deadline;

static EXECUTOR: Executor<'static> = Executor::new();
static STARTED: Once = Once::new();

/// Threads that run the executor: one per core, at least 2 and at most
/// 5. Reader tasks hash whole pieces (about 0.3 ms each) and hold their
/// thread meanwhile, so there are at least two. A spare thread (one more
/// than the cores) used to win; since the loops stopped registering a
/// timer per wait ([`Deadline`]) it only adds context switches: 1 GiB from
/// two seeders on 2 cores, alternated, took 1.34-1.45 s with 2 threads
/// against 1.54-1.63 s with 3, the leecher using 1.50-1.57 CPU s against
/// 1.61-1.72 and switching 7,600-8,400 times against 10,400-12,100.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 5)
}

/// Spawns a task on the shared executor (starting its threads on first use).
pub fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> Task<T> {
    STARTED.call_once(|| {
        for i in 0..threads() {
            std::thread::Builder::new()
                .name(format!("smol-{i}"))
                .spawn(|| {
                    loop {
                        // A panicking task reaches its `Task` handle; keep
                        // the thread even if something else unwinds here.
                        let run = || smol::block_on(EXECUTOR.run(future::pending::<()>()));
                        let _ = catch_unwind(AssertUnwindSafe(run));
                    }
                })
                .expect("cannot start an executor thread");
        }
    });
    EXECUTOR.spawn(f)
}

/// Waits for a task from outside the executor; `None` if it panicked.
pub fn join<T>(task: Task<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(|| smol::block_on(task))).ok()
}

/// The machine loop's wait: the first of a message on `rx` and the
/// machine's deadline (none: wait for a message only), on the loop's one
/// lazily re-armed timer. A ready message wins a tie.
pub async fn recv_until<T>(
    rx: &Receiver<T>,
    clock: &Clock,
    timer: &mut Deadline,
    deadline: Option<Instant>,
) -> Woke<T> {
    let msg = async {
        match rx.recv().await {
            Ok(m) => Woke::Msg(m),
            Err(_) => Woke::Closed,
        }
    };
    let at = deadline.map(|d| clock.instant(d));
    timer.run(at, msg).await.unwrap_or(Woke::Timeout)
}
