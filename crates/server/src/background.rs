//! Background computation: trainings and evaluations run on a thread of their own at a lower
//! scheduling priority (nice 10 on Linux, which the threads they start inherit), so that on
//! busy cores the answers and the writes go first and the model waits: a training started by
//! a stream of interactions once took a third of the server's CPU from the requests.

use std::panic::AssertUnwindSafe;

/// The nice value of background threads: the scheduler gives a runnable thread of nice 10
/// about a tenth of the share of one of nice 0.
const NICE: i32 = 10;

/// Runs `work` on a new thread named `name` at the background priority and waits for it; a
/// panic in `work` goes on in the caller.
///
/// # Panics
/// When no thread can be started.
pub async fn run<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        })
        .expect("a thread for background work");
    match result.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => unreachable!("the background thread sends before it ends"),
    }
}

/// Lowers the calling thread's priority: on Linux the nice value belongs to the thread, not
/// to the process (setpriority(2)), and threads it starts inherit it. A system that refuses
/// leaves the priority as it was.
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, NICE) {
        tracing::debug!(error = %e, "background work runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, from `/proc` (field 19 of its `stat`).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn work_runs_niced_and_so_do_the_threads_it_starts() {
        let before = own_nice();
        let niced = (before + NICE).min(19);
        let (outer, inner) = run("reco-test-bg", || {
            let inner = std::thread::spawn(own_nice).join().unwrap();
            (own_nice(), inner)
        })
        .await;
        assert_eq!(outer, niced);
        assert_eq!(inner, niced, "started threads inherit the priority");
        assert_eq!(own_nice(), before, "the caller's thread is untouched");
    }

    #[tokio::test]
    #[should_panic(expected = "boom")]
    async fn a_panic_goes_on_in_the_caller() {
        run("reco-test-bg", || panic!("boom")).await;
    }
}
