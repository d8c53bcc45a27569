//! `rulehost run` through the one pipeline: its output does not depend on `--jobs`, a
//! file gives what the same bytes give on a stream, and a stream gives the alerts that
//! `eval` gives over the same records.

use crate::util::{read_data, rulehost, rulehost_with_stdin, test_rule, write_rule};

/// Defender rows many times over, a malformed line in the middle and Sysmon events whose
/// grandparents only the lineage table knows.
fn mixed_stream() -> String {
    crate::util::defender_rows_with_windows(400, 50, 201)
}

/// A rules directory: Soft Cell, a rule that matches everything and one that fails every
/// call (quarantined after its third batch, while the workers may be evaluating later
/// ones).
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path(), "soft-cell.wasm", rulehost::rules::BUNDLED_SOFT_CELL);
    for name in ["match-all", "panic"] {
        std::fs::copy(test_rule(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// stderr without each log line's time stamp, and with `path` written `-`.
fn log_text(stderr: &str, path: &str) -> String {
    stderr
        .lines()
        .map(|line| match line.split_once(' ') {
            Some((stamp, rest)) if stamp.ends_with('Z') && stamp.contains('T') => rest.trim_start(),
            _ => line,
        })
        .map(|line| line.replace(path, "-") + "\n")
        .collect()
}

/// `run` arguments that make batches only by their size: the delay never ends one, so the
/// batches (and windows closed after each) are the same in every run.
fn run_args<'a>(rules: &'a str, jobs: &'a str, extra: &[&'a str], input: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--rules",
        rules,
        "--jobs",
        jobs,
        "--batch-size",
        "100",
        "--max-batch-delay-ms",
        "600000",
    ];
    args.extend(extra);
    args.extend(["--input-format", "jsonl", input]);
    args
}

#[test]
fn run_gives_the_same_output_whatever_the_number_of_jobs() {
    let text = mixed_stream();
    let dir = rules_dir();
    let rules = dir.path().display().to_string();
    for extra in [&["--window", "1m", "--allowed-lateness", "1s"][..], &["--matches"][..]] {
        let run = |jobs| rulehost_with_stdin(&run_args(&rules, jobs, extra, "-"), text.as_bytes());
        let one = run("1");
        assert_eq!(one.code, 0, "{}", one.stderr);
        assert!(one.stdout.lines().count() > 100, "{extra:?}: {}", one.stdout);
        assert!(one.stderr.contains("quarantined"), "{}", one.stderr);
        for jobs in ["2", "3"] {
            let many = run(jobs);
            assert_eq!(many.code, 0, "{}", many.stderr);
            assert!(many.stdout == one.stdout, "{extra:?}: --jobs {jobs} differs from --jobs 1");
            assert_eq!(log_text(&many.stderr, "-"), log_text(&one.stderr, "-"), "{extra:?} --jobs {jobs}");
        }
    }
}

#[test]
fn run_over_a_file_gives_what_the_same_bytes_give_on_a_stream() {
    let text = mixed_stream();
    let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let path = file.path().display().to_string();
    let dir = rules_dir();
    let rules = dir.path().display().to_string();
    for extra in [&["--window", "1m"][..], &["--matches"][..]] {
        for jobs in ["1", "2"] {
            let from_file = rulehost(&run_args(&rules, jobs, extra, &path));
            let from_stream = rulehost_with_stdin(&run_args(&rules, jobs, extra, "-"), text.as_bytes());
            assert_eq!(from_file.code, 0, "{}", from_file.stderr);
            assert!(from_file.stdout.lines().count() > 100, "{extra:?}: {}", from_file.stdout);
            assert!(
                from_file.stdout.replace(&path, "-") == from_stream.stdout,
                "{extra:?} --jobs {jobs}: the file's output differs from the stream's"
            );
            assert_eq!(log_text(&from_file.stderr, &path), log_text(&from_stream.stderr, "-"), "{extra:?}");
        }
    }
}

#[test]
fn a_stream_gives_the_alerts_that_eval_gives_over_the_same_records() {
    // In time order, so that no window closes before all of its events are read: then the
    // watermark changes when alerts are written, not which.
    let text = read_data("windows/scenario.evtx-dump.jsonl") + &read_data("defender-rows.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let soft_cell = write_rule(dir.path(), "soft-cell.wasm", rulehost::rules::BUNDLED_SOFT_CELL);
    let match_all = test_rule("match-all");
    std::fs::copy(&match_all, dir.path().join("match-all.wasm")).unwrap();
    let rules = dir.path().display().to_string();
    for jobs in ["1", "2"] {
        let live = rulehost_with_stdin(&run_args(&rules, jobs, &["--window", "1d"], "-"), text.as_bytes());
        let eval = rulehost_with_stdin(
            &["eval", "--jobs", jobs, "--rules", &soft_cell, "--rules", &match_all, "--window", "1d", "-"],
            text.as_bytes(),
        );
        assert_eq!(live.code, 0, "{}", live.stderr);
        assert_eq!(eval.code, 0, "{}", eval.stderr);
        let sorted = |text: &str| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert!(eval.stdout.lines().count() >= 3, "{}", eval.stdout);
        assert_eq!(sorted(&live.stdout), sorted(&eval.stdout), "--jobs {jobs}");
    }
}
