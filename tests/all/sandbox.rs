//! The sandbox: misbehaving rules fail alone, are named, and never take the host down.

use rulehost::rules::BUNDLED_SOFT_CELL;

use crate::util::{Run, assert_golden, data, rulehost, test_rule};

/// The default deadline, said so that the endless rules' failures name it. The rule that
/// returns 100,000 alerts needs 50-100 ms alone, and a suite running its tests beside it on
/// two cores took it past 300 ms once.
const DEADLINE_MS: &str = "1000";

/// The bundled Soft Cell rule as a file, to load beside a test rule.
fn soft_cell_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("soft-cell.wasm");
    std::fs::write(&path, BUNDLED_SOFT_CELL).unwrap();
    path.display().to_string()
}

fn eval_with(rules: &[&str], extra: &[&str]) -> Run {
    let mut args = vec!["eval", "--deadline-ms", DEADLINE_MS];
    for rule in rules {
        args.extend(["--rules", rule]);
    }
    args.extend(extra);
    args.push("tests/data/defender-rows.jsonl");
    rulehost(&args)
}

/// (test rule, the failure the operator is told of, calls that fail on the nine events)
const MISBEHAVING: &[(&str, &str, &str)] = &[
    (
        "infinite-loop",
        "evaluate: deadline exceeded: the call ran past its deadline of 1000 ms",
        "9 events not evaluated",
    ),
    ("memory-bomb", "evaluate: out of memory: forcing trap when growing memory to", "9 events not evaluated"),
    ("deep-recursion", "evaluate: stack overflow: wasm trap: call stack exhausted", "9 events not evaluated"),
    ("panic", "evaluate: unreachable executed (a panic in the rule)", "9 events not evaluated"),
    ("unreachable", "evaluate: unreachable executed (a panic in the rule)", "9 events not evaluated"),
    (
        "giant-output",
        "summarize: too much output: returned 100000 alerts, more than the limit of 10000",
        "9 matches not summarized",
    ),
    (
        "bad-indices",
        "evaluate: bad output: returned match index 9 for a batch of 9 events (indices must be ascending, unique, in range)",
        "9 events not evaluated",
    ),
];

#[test]
fn each_misbehaving_rule_fails_alone_and_is_named() {
    for &(name, failure, lost) in MISBEHAVING {
        let rule = test_rule(name);
        let run = eval_with(&[&rule], &[]);
        assert_eq!(run.code, 0, "{name}: the host goes on: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
        let id = format!("rule test-{name} 0.1.0 (sha256:");
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("rulehost: {id}")))
            .unwrap_or_else(|| panic!("{name}: no summary line for the rule:\n{}", run.stderr));
        assert!(line.contains(failure), "{name}: {line}\nwanted: {failure}");
        assert!(line.contains(lost), "{name}: {line}\nwanted: {lost}");
        assert!(
            run.stderr.contains(&format!("rulehost: warning: {id}")),
            "{name}: a warning when it happens"
        );
    }
}

#[test]
fn soft_cell_beside_a_misbehaving_rule_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let soft_cell = soft_cell_file(&dir);
    for &(name, failure, _) in MISBEHAVING {
        let rule = test_rule(name);
        // Both orders: a rule's failure must not leak into the rule loaded after it.
        for rules in [[soft_cell.as_str(), rule.as_str()], [rule.as_str(), soft_cell.as_str()]] {
            let run = eval_with(&rules, &[]);
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
            assert_golden("defender.alerts.jsonl", &run.stdout);
            assert!(run.stderr.contains(failure), "{name}: {}", run.stderr);
            assert!(
                !run.stderr.contains("rule fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7"),
                "{name}: the Soft Cell rule is not blamed: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn a_slow_rule_within_its_deadline_succeeds_and_fails_past_it() {
    let slow = test_rule("slow");
    let run = rulehost(&["eval", "--rules", &slow, "--deadline-ms", "5000", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(
        run.summary(),
        "rulehost: 9 records read: 9 evaluated, 0 skipped, 0 rejected; 0 matches, 0 alerts"
    );

    let run = rulehost(&["eval", "--rules", &slow, "--deadline-ms", "2", &data("defender-rows.jsonl")]);
    assert!(
        run.stderr.contains("deadline exceeded: the call ran past its deadline of 2 ms"),
        "{}",
        run.stderr
    );
}

#[test]
fn fuel_bounds_a_call_when_asked() {
    let slow = test_rule("slow");
    let run = rulehost(&["eval", "--rules", &slow, "--fuel", "1000000", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("evaluate: out of fuel"), "{}", run.stderr);
    let soft_cell = rulehost(&["eval", "--fuel", "1000000", &data("defender-rows.jsonl")]);
    assert_golden("defender.alerts.jsonl", &soft_cell.stdout);
}

#[test]
fn duplicated_and_out_of_range_indices_are_both_refused() {
    let rule = test_rule("bad-indices");
    // Batches of 2, 2, 2, 2 and 1 events: duplicates four times, then out of range.
    let run = eval_with(&[&rule], &["--batch-size", "2", "--max-failures", "10"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("returned match index 0 for a batch of 2 events"),
        "duplicated: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("returned match index 1 for a batch of 1 events"),
        "out of range: {}",
        run.stderr
    );
    assert!(run.stderr.contains("5 failed calls, 9 events not evaluated"), "{}", run.stderr);
}

#[test]
fn a_rule_that_keeps_failing_is_quarantined() {
    let rule = test_rule("panic");
    // Nine events in batches of one: nine calls, of which three fail and quarantine it.
    let run = eval_with(&[&rule], &["--batch-size", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings = run.stderr.lines().filter(|l| l.contains("evaluate: unreachable")).count();
    assert_eq!(warnings, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("quarantined for the rest of the run: 3 consecutive failures"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("3 failed calls, 9 events not evaluated"), "{}", run.stderr);

    let run = eval_with(&[&rule], &["--batch-size", "1", "--max-failures", "5"]);
    assert_eq!(run.stderr.lines().filter(|l| l.contains("evaluate: unreachable")).count(), 5);
}

#[test]
fn a_rule_importing_wasi_is_refused_at_load_time() {
    let rule = test_rule("wasi-import");
    let run = rulehost(&["inspect", &rule]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("{rule}: imports `wasi:")), "{}", run.stderr);
    assert!(run.stderr.contains("`wasi:filesystem/types@"), "names the filesystem import: {}", run.stderr);
    assert!(run.stderr.contains("but a rule may import nothing but the contract's types"), "{}", run.stderr);
    let run = eval_with(&[&rule], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
}

#[test]
fn a_rule_whose_metadata_lists_a_field_a_million_times_is_refused_at_load() {
    // Before the check, the host packed one column per entry and grew past 20 GB.
    let rule = test_rule("metadata-bomb");
    let run = eval_with(&[&rule], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains(&format!(
            "{rule}: rule \"test-metadata-bomb\": invalid metadata: reads lists ProcessCommandLine more than once (1000000 entries)"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_component_with_an_empty_initializer_loads_and_runs() {
    let rule = test_rule("initializer");
    let run = eval_with(&[&rule], &["--matches"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let matches: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(matches.len(), 3, "the three whoami rows: {}", run.stdout);
    assert!(
        matches.iter().all(|m| m.contains("\"test-initializer\"") && m.contains("whoami")),
        "{}",
        run.stdout
    );
}

#[test]
fn a_component_whose_initializer_never_returns_is_refused_when_the_deadline_runs_out() {
    let rule = test_rule("initializer-loop");
    for command in [&["inspect"][..], &["eval", "--deadline-ms", DEADLINE_MS, "--rules"][..]] {
        let mut args = command.to_vec();
        args.push(&rule);
        if args[0] == "eval" {
            args.push("tests/data/defender-rows.jsonl");
        }
        let run = rulehost(&args);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "{rule}: instantiating (running its initializers): the deadline of 1000 ms ran out"
            )),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn limits_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let soft_cell = soft_cell_file(&dir);
    let run =
        rulehost(&["eval", "--rules", &soft_cell, "--max-artifact-mib", "0", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!(
            "{soft_cell}: {} bytes, more than the limit of 0 bytes",
            BUNDLED_SOFT_CELL.len()
        )),
        "{}",
        run.stderr
    );
    let run = rulehost(&["eval", "--max-memory-mib", "0", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid limits: memory limit 0 bytes is below one Wasm page"),
        "{}",
        run.stderr
    );
    // The Soft Cell rule needs little: a 2 MiB memory is enough.
    let run = rulehost(&["eval", "--max-memory-mib", "2", &data("defender-rows.jsonl")]);
    assert_golden("defender.alerts.jsonl", &run.stdout);
}

#[test]
fn an_event_a_rule_fails_on_loses_that_event_only() {
    // The nine Defender rows a hundred times over (one batch), three of them marked.
    let rows: Vec<String> =
        crate::util::read_data("defender-rows.jsonl").lines().map(str::to_owned).collect();
    let poisoned = [3, 450, 899];
    let lines: Vec<String> = (1..=900)
        .map(|line| {
            let row = rows[(line - 1) % rows.len()].clone();
            if poisoned.contains(&line) {
                row.replace("\"ProcessCommandLine\": \"", "\"ProcessCommandLine\": \"POISON ")
            } else {
                row
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("poisoned.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let input = input.display().to_string();
    let rule = test_rule("poison");
    let mut outputs = Vec::new();
    for jobs in ["1", "2"] {
        let run = rulehost(&[
            "eval",
            "--rules",
            &rule,
            "--jobs",
            jobs,
            "--matches",
            "--max-failures",
            "10",
            &input,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        // Every event but the three is evaluated, and matches.
        let matched: Vec<u64> =
            run.json_lines().iter().map(|m| m["source"]["line"].as_u64().expect("a line")).collect();
        let expected: Vec<u64> = (1..=900).filter(|line| !poisoned.contains(&(*line as usize))).collect();
        assert_eq!(matched, expected, "jobs {jobs}");
        assert!(
            run.stderr.contains(&format!("3 events not evaluated by this rule, the first read at {input}:3")),
            "jobs {jobs}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("1 failed call, 3 events not evaluated"), "jobs {jobs}: {}", run.stderr);
        outputs.push(run.stdout);
    }
    assert_eq!(outputs[0], outputs[1]);
}
