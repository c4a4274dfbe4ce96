//! Work nobody waits on as it is made runs at a lower CPU priority than the threads serving
//! requests: reports decoded and folded as probes send them, views rendered again behind the
//! render a reader is given, the timeline's view counts, history's batches. When the cores are
//! busy (every probe of an instance reporting at once, a costly view rendered again), a read
//! served from a kept render then takes the core at once instead of waiting for its turn behind
//! that work — the tail of every read under live load (docs/benchmarks.md, "Collector under live
//! load"). Work a reader waits for (a render it asked for, a past moment) stays at the serving
//! threads' priority.
//!
//! The threads are a blocking pool of their own (tokio's, of a runtime that schedules nothing
//! else), each lowered once as it starts: a thread can lower its priority but not raise it
//! again without privileges, so the two kinds of work never share a thread. Threads a background
//! job starts (a merge on every core) inherit its priority. There are at most as many as cores:
//! more work than that waits its turn rather than holding its memory at once (each thread also
//! keeps its own allocator heap), and no background job waits for another.

use std::sync::LazyLock;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// How much lower than the serving threads, in steps of Linux's per-thread `nice`: against a
/// thread at 0 that wants the core, one at 10 gets about a tenth of it — so background work is put
/// behind reads, not starved by them.
pub const NICE: i32 = 10;

/// The background threads' name (as `ps -L` and profiles show them).
pub const THREAD_NAME: &str = "background";

static POOL: LazyLock<Runtime> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Builder::new_current_thread()
        .thread_name(THREAD_NAME)
        .max_blocking_threads(cores)
        .on_thread_start(lower_priority)
        .build()
        .expect("the background threads' runtime")
});

fn lower_priority() {
    // On Linux `setpriority` of the calling "process" is the calling thread's alone.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::getpriority_process(None)
        .and_then(|serving| rustix::process::setpriority_process(None, (serving + NICE).min(19)))
    {
        tracing::debug!(error = %e, "a background thread runs at the serving threads' priority");
    }
}

/// Runs `f` on a background thread; the handle answers as `tokio::task::spawn_blocking`'s does
/// (an error if `f` panicked).
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    POOL.spawn_blocking(f)
}

/// Frees `value` on a background thread: a big window, part or view is thousands of allocations
/// and takes milliseconds to free.
pub fn free<T: Send + 'static>(value: T) {
    drop(spawn(move || drop(value)));
}

/// The calling thread's own CPU time so far, in seconds (what its work cost, whatever else the
/// cores ran meanwhile).
pub fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's `nice`, as the kernel reports it.
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (in parentheses, which may hold spaces); nice is the
        // 19th field of the line, the 17th after the name.
        let rest = stat.rsplit_once(") ").unwrap().1;
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn background_work_runs_below_the_serving_threads_and_only_there() {
        let serving = tokio::task::spawn_blocking(own_nice).await.unwrap();
        let background = spawn(own_nice).await.unwrap();
        assert_eq!(background, (serving + NICE).min(19));
        // Lowering a background thread left the serving threads (and this one) alone.
        assert_eq!(
            tokio::task::spawn_blocking(own_nice).await.unwrap(),
            serving
        );
        assert_eq!(own_nice(), serving);
        let name = spawn(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name.await.unwrap().as_deref(), Some(THREAD_NAME));
    }

    #[tokio::test]
    async fn a_panic_in_background_work_is_an_error_and_the_threads_go_on() {
        let failed = spawn(|| panic!("a bad job")).await;
        assert!(failed.unwrap_err().is_panic());
        assert_eq!(spawn(|| 2 + 2).await.unwrap(), 4);
    }
}
