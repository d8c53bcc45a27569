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
    // No lateness at all (`0s`) is an option too: every window closes as soon as event time
    // passes its end.
    for extra in [
        &["--window", "1m", "--allowed-lateness", "1s"][..],
        &["--window", "1m", "--allowed-lateness", "0s"][..],
        &["--matches"][..],
    ] {
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

/// `run` of the bundled Soft Cell over `source`: its summary and its alerts (JSON lines).
fn run_bundled(
    source: Box<dyn rulehost::sources::Source>,
    options: &rulehost::run::RunOptions,
) -> (rulehost::pipeline::Summary, String) {
    let runtime = rulehost::runtime::Runtime::new().unwrap();
    let rule = rulehost::rules::load_bundled(&runtime).unwrap();
    let mut alerts = Vec::new();
    let mut output = rulehost::sinks::JsonLines::new(&mut alerts);
    let (_updates, none) = std::sync::mpsc::channel();
    let summary = rulehost::run::run(
        vec![("bundled".into(), vec![rule])],
        source,
        none,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        options,
        &mut output,
        &mut |_, _| {},
    )
    .unwrap();
    drop(output);
    (summary, String::from_utf8(alerts).unwrap())
}

/// A source that delivers its records in three bursts, a pause after each, and notes what
/// it hears back.
struct Bursts {
    bursts: Vec<Vec<rulehost::events::Record>>,
    settled: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

impl rulehost::sources::Source for Bursts {
    fn opener(&mut self) -> rulehost::sources::Opener {
        let bursts = std::mem::take(&mut self.bursts);
        Box::new(move || {
            Ok(Box::new(bursts.into_iter().inspect(|_| {
                std::thread::sleep(std::time::Duration::from_millis(300));
            })))
        })
    }

    fn settled(&mut self, records: u64) {
        self.settled.lock().unwrap().push(records);
    }
}

#[test]
fn a_source_hears_what_is_settled_only_once_its_windows_are_written() {
    use rulehost::events::{Input, InputFormat, Record};
    // The Windows scenario's minutes: a window of one minute stays open while later
    // events of the same minute may come, so its records are not settled until it closes.
    let path = crate::util::workspace().join("tests/data/windows/scenario.evtx-dump.jsonl");
    let records: Vec<Record> = Input::file(&path).open(InputFormat::Auto).unwrap().collect();
    let total = records.len() as u64;
    let third = records.len() / 3;
    let mut rest = records;
    let (a, b) = (rest.drain(..third).collect(), rest.drain(..third).collect());
    let settled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let source = Bursts { bursts: vec![a, b, rest], settled: settled.clone() };
    let options = rulehost::run::RunOptions {
        window: "1m".parse().unwrap(),
        allowed_lateness: std::time::Duration::ZERO,
        max_batch_delay: std::time::Duration::from_millis(20),
        jobs: 2,
        ..Default::default()
    };
    let (summary, alerts) = run_bundled(Box::new(source), &options);
    let heard = settled.lock().unwrap().clone();
    assert_eq!(summary.read, total);
    assert_eq!(heard.last(), Some(&total), "{heard:?}");
    assert!(heard.windows(2).all(|w| w[0] <= w[1]), "never backwards: {heard:?}");
    // After the first burst its matches sit in an open window: not all of it is settled.
    assert!(heard.len() >= 3, "{heard:?}");
    assert!(heard[0] < third as u64, "{heard:?} of {total}, bursts of {third}");
    assert!(!alerts.is_empty());
}

#[test]
fn eval_and_run_write_to_a_file_what_they_write_to_stdout() {
    let text = mixed_stream();
    let dir = rules_dir();
    let rules = dir.path().display().to_string();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("alerts.jsonl").display().to_string();
    let runs: [Vec<&str>; 2] = [
        run_args(&rules, "2", &["--window", "1m"], "-"),
        vec!["eval", "--rules", &rules, "--window", "1m", "--input-format", "jsonl", "-"],
    ];
    for args in runs {
        let to_stdout = rulehost_with_stdin(&args, text.as_bytes());
        let with_file = [&args[..1], &["--output", &file], &args[1..]].concat();
        let to_file = rulehost_with_stdin(&with_file, text.as_bytes());
        assert_eq!(to_file.code, 0, "{}", to_file.stderr);
        assert!(to_file.stdout.is_empty(), "{args:?}: {}", to_file.stdout);
        assert!(to_stdout.stdout.lines().count() > 10, "{args:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), to_stdout.stdout, "{args:?}");
    }
}

/// The scheduling policy of each thread of process `pid` (`policy` in
/// `/proc/PID/task/TID/sched`: 0 the default, 3 batch), once it has `threads` of them.
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32, threads: usize) -> Vec<u32> {
    let started = std::time::Instant::now();
    loop {
        let policies: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|task| std::fs::read_to_string(task.path().join("sched")).ok())
                    .filter_map(|sched| {
                        let line = sched.lines().find(|l| l.starts_with("policy"))?;
                        line.rsplit(':').next()?.trim().parse().ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        if policies.len() >= threads || started.elapsed() > std::time::Duration::from_secs(20) {
            return policies;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn eval_runs_every_thread_as_batch_work_and_run_keeps_the_default() {
    use std::io::Write;
    use std::process::Stdio;
    let rules = rules_dir();
    let rules = rules.path().to_str().unwrap();
    for (args, policy) in [
        (vec!["eval", "--jobs", "2", "-q", "--input-format", "jsonl", "-"], 3),
        (run_args(rules, "2", &[], "-"), 0),
    ] {
        let mut child = crate::util::command()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rulehost");
        // A line read starts the workers; the input stays open while the threads are read.
        let mut input = child.stdin.take().expect("piped");
        input.write_all(mixed_stream().as_bytes()).unwrap();
        let policies = thread_policies(child.id(), 3);
        drop(input);
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status}");
        assert!(policies.len() >= 3, "{args:?}: threads seen: {policies:?}");
        assert!(policies.iter().all(|&p| p == policy), "{args:?}: policies {policies:?}, expected {policy}");
    }
}

/// A source that delivers its records in bursts, a pause after each; with `event_time`, it
/// tracks event time as a topic of one partition does: the latest time of what it read.
struct Paced {
    bursts: Vec<Vec<rulehost::events::Record>>,
    times: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    event_time: bool,
}

impl rulehost::sources::Source for Paced {
    fn opener(&mut self) -> rulehost::sources::Opener {
        let bursts = std::mem::take(&mut self.bursts);
        let times = self.times.clone();
        Box::new(move || {
            Ok(Box::new(bursts.into_iter().inspect(move |burst| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let mut times = times.lock().unwrap();
                for record in burst {
                    if let rulehost::events::Record::Event(event) = record {
                        times.push(event.time_ms());
                    }
                }
            })))
        })
    }

    fn event_time(&mut self, read: u64) -> Option<i64> {
        let times = self.times.lock().unwrap();
        self.event_time
            .then(|| times[..(read as usize).min(times.len())].iter().copied().max().unwrap_or(i64::MIN))
    }
}

/// Soft Cell's matches on one device, a Defender row at each of `times`, their `ReportId`s
/// from `first_id` on, as a file of JSON lines in `dir`.
fn soft_cell_rows_at(dir: &std::path::Path, times: &[String], first_id: usize) -> std::path::PathBuf {
    let base: serde_json::Value =
        serde_json::from_str(read_data("defender-rows.jsonl").lines().next().unwrap()).unwrap();
    let rows: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, time)| {
            let mut row = base.clone();
            row["Timestamp"] = time.as_str().into();
            row["ProcessCreationTime"] = time.as_str().into();
            row["ReportId"] = (first_id + i).into();
            row.to_string()
        })
        .collect();
    let path = dir.join("rows.jsonl");
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

/// `run` with the bundled rule over the records of `path` in bursts, each burst ending
/// before the index `ends` names, the last at the end; with `event_time`, the source tracks
/// event time. Its summary and alerts.
fn run_in_bursts(
    path: &std::path::Path,
    ends: &[usize],
    event_time: bool,
) -> (rulehost::pipeline::Summary, String) {
    use rulehost::events::{Input, InputFormat, Record};
    let mut records: Vec<Record> = Input::file(path).open(InputFormat::Auto).unwrap().collect();
    let mut bursts = Vec::new();
    for &end in ends.iter().rev() {
        bursts.push(records.split_off(end));
    }
    bursts.push(records);
    bursts.reverse();
    let source = Paced { bursts, times: Default::default(), event_time };
    let options = rulehost::run::RunOptions {
        max_batch_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    run_bundled(Box::new(source), &options)
}

#[test]
fn one_event_timestamped_far_ahead_of_the_clock_makes_no_later_event_late() {
    // Twenty of Soft Cell's matches on one device, two minutes apart in one hour of 2024;
    // the fifth forged (or from a device whose clock is wrong) to 2099. Before, it moved
    // the watermark to 2099: the hour's window closed at once, and each of the fifteen
    // events after it was late and made an alert of its own.
    let times: Vec<String> = (0..20)
        .map(|i| match i {
            4 => "2099-01-01T00:00:00Z".to_owned(),
            _ => format!("2024-05-01T10:{:02}:00Z", i * 2),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = soft_cell_rows_at(dir.path(), &times, 2000);
    for event_time in [false, true] {
        // Before the forged one, it alone, and after it.
        let (summary, alerts) = run_in_bursts(&path, &[4, 5], event_time);
        let alerts: Vec<(String, u64, Vec<String>)> = alerts
            .lines()
            .map(|line| {
                let alert: serde_json::Value = serde_json::from_str(line).unwrap();
                let ids =
                    alert["ReportIds"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned());
                (
                    alert["WindowStart"].as_str().unwrap().to_owned(),
                    alert["MatchCount"].as_u64().unwrap(),
                    ids.collect(),
                )
            })
            .collect();
        let hour: Vec<String> = (0..20).filter(|&i| i != 4).map(|i| (2000 + i).to_string()).collect();
        assert_eq!(
            alerts,
            [
                // The window wholly ahead of the clock is closed as soon as its batch is taken
                // in, not held until the end (written first); the hour's stays open.
                ("2099-01-01T00:00:00Z".to_owned(), 1, vec!["2004".to_owned()]),
                ("2024-05-01T10:00:00Z".to_owned(), 19, hour),
            ],
            "source event time: {event_time}"
        );
        assert_eq!(
            (summary.read, summary.late, summary.ahead),
            (20, 0, 1),
            "source event time: {event_time}"
        );
    }
}

#[test]
fn an_alert_of_late_events_says_it_is_late() {
    // Soft Cell's matches on one device: three in the 10:00 hour, one at 11:30 that closes
    // that hour's window (the allowed lateness is a minute), then two more of the 10:00 hour,
    // late. Their alert is the window's second: it says so, and the first does not.
    let times: Vec<String> = ["10:00", "10:02", "10:04", "11:30", "10:20", "10:22"]
        .iter()
        .map(|time| format!("2024-05-01T{time}:00Z"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = soft_cell_rows_at(dir.path(), &times, 3000);
    for event_time in [false, true] {
        // The hour's three, the one that closes it, the two late.
        let (summary, alerts) = run_in_bursts(&path, &[3, 4], event_time);
        let alerts: Vec<(String, u64, Option<bool>)> = alerts
            .lines()
            .map(|line| {
                let alert: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    alert["WindowStart"].as_str().unwrap().to_owned(),
                    alert["MatchCount"].as_u64().unwrap(),
                    alert.get("Late").map(|late| late.as_bool().unwrap()),
                )
            })
            .collect();
        let hour = |h: &str| format!("2024-05-01T{h}:00:00Z");
        assert_eq!(
            alerts,
            [(hour("10"), 3, None), (hour("10"), 2, Some(true)), (hour("11"), 1, None)],
            "source event time: {event_time}"
        );
        assert_eq!(summary.late, 2, "source event time: {event_time}");
    }
}
