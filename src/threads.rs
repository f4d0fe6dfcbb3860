//! A small pool for work that is already cut into jobs: a wide row group's columns (`sink`),
//! the tables `export` writes (`convert`). Both need the same guarantees, so they are kept here
//! once: jobs are taken in order, results come back in order, the first failure in order is the
//! one reported, and a failure or panic stops the other threads at their next job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Result;

/// Does every job of `jobs` with `work` on up to `threads` threads (the caller's one of them),
/// each thread taking the next job in order and keeping a state of its own, made by `state`
/// when the thread starts. Returns the results in the jobs' order.
///
/// Once a thread sees a job fail, or panic, no thread starts another (a job already running
/// finishes). The error of the first failed job in order is returned, the results after it
/// dropped; a panic is raised again on the caller's thread once every thread has stopped.
pub fn on_threads<J: Send, S, T: Send>(
    threads: usize,
    jobs: Vec<J>,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    /// Stops the other threads at their next job when `work` panics.
    struct StopOnPanic<'a>(&'a AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let failed = AtomicBool::new(false);
    let done: Vec<Mutex<Option<Result<T>>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let run = || {
        let _stop = StopOnPanic(&failed);
        let mut own = state();
        while !failed.load(Ordering::Relaxed) {
            // Nothing panics while holding the queue; a poisoned lock still holds a sound queue.
            let next = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .next();
            let Some((index, job)) = next else { return };
            let outcome = work(&mut own, job);
            failed.fetch_or(outcome.is_err(), Ordering::Relaxed);
            *done[index]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outcome);
        }
    };
    let helpers = threads.min(count).saturating_sub(1);
    if helpers == 0 {
        run();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(run);
            }
            run();
        });
    }
    // Jobs are taken in order, so every job before the first failure was taken (`Some`); some
    // after it may not have been (`None`).
    let mut results = Vec::with_capacity(count);
    for outcome in done {
        match outcome
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Some(outcome) => results.push(outcome?),
            None => break,
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_come_back_in_order_and_the_first_error_in_order_wins() {
        let jobs: Vec<u64> = (0..40).collect();
        for threads in [1, 2, 3, 64] {
            // Later jobs finish first: the results are still in the jobs' order.
            let squares = on_threads(
                threads,
                jobs.clone(),
                || (),
                |(), job| {
                    std::thread::sleep(std::time::Duration::from_micros(40 - job));
                    Ok(job * job)
                },
            )
            .unwrap();
            assert_eq!(squares, jobs.iter().map(|job| job * job).collect::<Vec<_>>());
            let failed = on_threads(
                threads,
                jobs.clone(),
                || (),
                |(), job| match job {
                    7 | 30 => Err(anyhow::anyhow!("job {job}")),
                    _ => Ok(()),
                },
            );
            assert_eq!(failed.unwrap_err().to_string(), "job 7", "{threads} threads");
        }
        assert!(on_threads(2, Vec::<u64>::new(), || (), |(), _| Ok(()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_panic_on_one_thread_stops_the_others_and_is_raised_again() {
        let started = AtomicUsize::new(0);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            on_threads(
                2,
                (0..1000u64).collect(),
                || (),
                |(), job| {
                    started.fetch_add(1, Ordering::Relaxed);
                    if job == 3 {
                        panic!("job 3");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    Ok(())
                },
            )
        }));
        assert!(outcome.is_err(), "the panic comes back to the caller");
        // The other thread goes on while the panic is reported (a backtrace takes a while),
        // then stops: without the guard it would start every job, a second's worth.
        let started = started.load(Ordering::Relaxed);
        assert!(started < 500, "{started} jobs started");
    }
}
