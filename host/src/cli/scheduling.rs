//! How the kernel schedules the binary's threads: a bounded command runs as batch work.
//!
//! `eval` hands work between threads all the time: the reading threads give the main thread
//! each file's records, the main thread gives the workers batches and takes their results.
//! Under the default policy a thread woken by such a hand-off preempts the one that woke
//! it, so each hand-off cost two context switches on a busy core: Soft Cell over the
//! 5,000-file EVTX folder switched 18,800 times in about a second. `SCHED_BATCH` is the
//! kernel's policy for non-interactive, CPU-bound work: a woken thread waits for the running
//! one's turn to end instead, and takes what accumulated meanwhile in one go. The same run
//! switched 720 times, in 0.91 of the time (BENCHMARKS.md, seventeenth stop). Priorities
//! (nice values) are unchanged, and so is the share of the CPU each thread gets.
//!
//! `run` keeps the default policy: it waits for events and should answer them as they
//! come. A policy the operator chose (`chrt`, systemd's `CPUSchedulingPolicy`) is kept.

use crate::Command;

/// Whether `command` runs as batch work: every command but `run`, which waits for events.
pub(crate) fn runs_as_batch(command: &Command) -> bool {
    !matches!(command, Command::Run(_))
}

/// Makes the calling thread, and the threads it starts from now on, batch work, if it runs
/// under the default policy; whether it changed. Called first thing in `main`, before any
/// other thread exists, so that all of the binary's threads inherit it.
#[cfg(target_os = "linux")]
pub(crate) fn run_as_batch() -> std::io::Result<bool> {
    // SAFETY: `sched_getscheduler(0)` and `sched_setscheduler(0, ..)` read and set the
    // calling thread's policy; `param` lives across the call that reads it.
    #[allow(unsafe_code)]
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if policy != libc::SCHED_OTHER {
        return Ok(false);
    }
    let param = libc::sched_param { sched_priority: 0 };
    #[allow(unsafe_code)]
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if set == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Elsewhere the default policy is kept.
#[cfg(not(target_os = "linux"))]
pub(crate) fn run_as_batch() -> std::io::Result<bool> {
    Ok(false)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[allow(unsafe_code)]
    fn policy() -> i32 {
        // SAFETY: reads the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn bounded_commands_run_as_batch_and_run_does_not() {
        let command = |args: &[&str]| crate::Cli::parse_from(args).command;
        assert!(runs_as_batch(&command(&["rulehost", "eval", "x.jsonl"])));
        assert!(runs_as_batch(&command(&["rulehost", "sigma", "compile", "rules", "-o", "p.wasm"])));
        assert!(!runs_as_batch(&command(&["rulehost", "run", "--rules", "rules", "x.jsonl"])));
    }

    #[test]
    fn a_thread_made_batch_work_starts_threads_that_are_too_and_another_policy_is_kept() {
        // On threads of their own: the policy is a thread's, and the test harness's stay as
        // they are.
        std::thread::spawn(|| {
            assert_eq!(policy(), libc::SCHED_OTHER, "a new thread of the test runs under the default");
            assert!(run_as_batch().unwrap(), "changed from the default");
            assert_eq!(policy(), libc::SCHED_BATCH);
            let started = std::thread::spawn(policy).join().unwrap();
            assert_eq!(started, libc::SCHED_BATCH, "a thread started afterwards inherits it");
            assert!(!run_as_batch().unwrap(), "already batch work: nothing to change");
        })
        .join()
        .unwrap();
        std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets the calling thread's policy; `param` lives across the call.
            #[allow(unsafe_code)]
            let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(set, 0);
            assert!(!run_as_batch().unwrap(), "the operator's policy is kept");
            assert_eq!(policy(), libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}
