//! The executor the smol drivers share: one per process, run by
//! [`threads`] threads that each block on it (and drive the async-io
//! reactor while idle). Many connections, few threads.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use p2p_state::Instant;
use runtime_common::{Clock, Woke};
use smol::channel::Receiver;
use smol::future::{self, FutureExt};
use smol::{Executor, Task, Timer};

static EXECUTOR: Executor<'static> = Executor::new();
static STARTED: Once = Once::new();

/// Threads that run the executor: one more than the cores, at least 3 and
/// at most 5. Reader tasks hash whole pieces (about 0.3 ms each) and hold
/// their thread meanwhile; the spare thread lets the kernel run writers
/// and the machine task beside them (1 GiB from two seeders on 2 cores:
/// 1.20-1.43 s with 2 threads, 1.10-1.31 s with 3 or 4).
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_add(1)
        .clamp(3, 5)
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

/// The machine loop's wait: the first of a message on `rx` and
/// `Timer::at` the machine's deadline (none: wait for a message only). A
/// ready message wins a tie.
pub async fn recv_until<T>(rx: &Receiver<T>, clock: &Clock, deadline: Option<Instant>) -> Woke<T> {
    let msg = async {
        match rx.recv().await {
            Ok(m) => Woke::Msg(m),
            Err(_) => Woke::Closed,
        }
    };
    match deadline {
        Some(d) => {
            let at = clock.instant(d);
            msg.or(async {
                Timer::at(at).await;
                Woke::Timeout
            })
            .await
        }
        None => msg.await,
    }
}
