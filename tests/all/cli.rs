//! The command line: inspect, loading rules from files, refusals, exit codes.

use rulehost::rules::BUNDLED_SOFT_CELL;

use crate::util::{assert_golden, data, inspected_unsigned, mask_digests, rulehost, write_rule};

/// `bytes` written as `name` in `dir`; returns the path.
/// The bundled rule with its contract-version section changed by `edit`.
fn with_contract_section(edit: impl Fn(&mut [u8], usize)) -> Vec<u8> {
    let mut bytes = BUNDLED_SOFT_CELL.to_vec();
    let name = b"detect:contract-version";
    let at = bytes.windows(name.len()).position(|w| w == name).expect("the section is there");
    edit(&mut bytes, at + name.len());
    bytes
}

#[test]
fn inspect_shows_metadata_contract_and_digest() {
    let run = rulehost(&["inspect", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(info["id"], "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7");
    assert_eq!(info["severity"], "high");
    assert_eq!(info["contract"], "detect:rule@0.2.0");
    assert_eq!(info["exports"], serde_json::json!(["metadata", "evaluate", "summarize"]));
    assert_eq!(info["imports"], serde_json::json!(["detect:rule/types@0.2.0"]));
    assert_eq!(info["techniques"], serde_json::json!(["T1059", "T1574", "T1082", "T1087"]));
    assert_eq!(
        info["reads"],
        serde_json::json!([
            "InitiatingProcessParentFileName",
            "InitiatingProcessFileName",
            "FileName",
            "ProcessCommandLine"
        ])
    );
    assert_eq!(info["query_period_seconds"], 3600);
    assert_eq!(info["size"], BUNDLED_SOFT_CELL.len());

    let text = rulehost(&["inspect"]);
    assert!(
        text.stdout
            .contains("ProcessCommandLine has (wget, whoami, certutil, systeminfo, ping, ipconfig, timeout)")
    );
    assert!(text.stdout.contains(&format!("digest:        {}", info["digest"].as_str().unwrap())));
}

#[test]
fn rules_load_from_a_file_or_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_rule(dir.path(), "soft-cell.wasm", BUNDLED_SOFT_CELL);
    std::fs::write(dir.path().join("README.txt"), "not a rule").unwrap();
    let digest = serde_json::from_str::<serde_json::Value>(&rulehost(&["inspect", "--json", &file]).stdout)
        .unwrap()["digest"]
        .clone();
    for rules in [file.as_str(), &dir.path().display().to_string()] {
        let run = rulehost(&["eval", "--rules", rules, &data("defender-rows.jsonl")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_golden("defender.alerts.jsonl", &run.stdout);
        assert_eq!(run.json_lines()[0]["RuleDigest"], digest, "alerts name the artifact's digest");
    }
}

#[test]
fn a_rule_path_that_is_not_a_regular_file_is_refused_not_read_forever() {
    // A link to a device is read forever, a pipe waited on, unless refused first.
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let pipe = dir.path().join("pipe.wasm");
    let made = std::process::Command::new("mkfifo").arg(&pipe).status().unwrap();
    assert!(made.success());
    for rule in [&zero, &pipe] {
        let rule = rule.display().to_string();
        let run = rulehost(&["eval", "--allow-unsigned", "--rules", &rule, &data("defender-rows.jsonl")]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{rule}: not a regular file (a device, a pipe or a socket)")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn two_rules_with_one_id_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_rule(dir.path(), "a.wasm", BUNDLED_SOFT_CELL);
    let b = write_rule(dir.path(), "b.wasm", BUNDLED_SOFT_CELL);
    let run = rulehost(&["eval", "--rules", &dir.path().display().to_string(), &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!(
            "rule id \"fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7\" is declared by both {a} and {b}"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn an_incompatible_contract_is_refused_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let newer = with_contract_section(|bytes, data| bytes[data..data + 5].copy_from_slice(b"0.5.0"));
    let path = write_rule(dir.path(), "newer.wasm", &newer);
    let run = rulehost(&["eval", "--rules", &path, &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!(
            "{path}: built against contract detect:rule@0.5.0, this host implements detect:rule@0.4.0, detect:rule@0.3.0, detect:rule@0.2.0 and detect:rule@0.1.0"
        )),
        "{}",
        run.stderr
    );

    let unnamed = with_contract_section(|bytes, data| bytes[data - 1] = b'N');
    let path = write_rule(dir.path(), "unnamed.wasm", &unnamed);
    let run = rulehost(&["inspect", &path]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("{path}: no contract version")), "{}", run.stderr);
}

/// A Soft Cell component built against contract 0.1.0 (where a column's values travel as
/// `list<u8>`), kept from before 0.2.0 (see tests/data/contract-0.1.0/README.md).
const SOFT_CELL_0_1: &str = "tests/data/contract-0.1.0/soft-cell.wasm";

#[test]
fn a_rule_built_against_contract_0_1_still_runs_and_gives_the_same_alerts() {
    let info = inspected_unsigned(SOFT_CELL_0_1);
    assert_eq!(info["contract"], "detect:rule@0.1.0");
    assert_eq!(info["imports"], serde_json::json!(["detect:rule/types@0.1.0"]));

    let old = rulehost(&["eval", "--allow-unsigned", "--rules", SOFT_CELL_0_1, &data("defender-rows.jsonl")]);
    assert_eq!(old.code, 0, "{}", old.stderr);
    assert_golden("defender.alerts.jsonl", &old.stdout);
    assert_eq!(old.json_lines()[0]["RuleDigest"], info["digest"]);
    // The same matched events, field for field, from both builds of the rule.
    let scenario = data("windows/scenario.xml");
    let matched = |rules: Option<&str>| {
        let mut args = vec!["eval", "--matches", "--allow-unsigned"];
        args.extend(rules.map(|r| ["--rules", r]).into_iter().flatten());
        args.push(&scenario);
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        mask_digests(&run.stdout)
    };
    let bundled = matched(None);
    assert_eq!(bundled.lines().count(), 4, "{bundled}");
    assert_eq!(matched(Some(SOFT_CELL_0_1)), bundled);
}

#[test]
fn a_rule_whose_exports_do_not_match_its_contract_version_is_refused() {
    // The bundled rule (0.2.0 types) with its section saying 0.1.0.
    let dir = tempfile::tempdir().unwrap();
    let mislabelled = with_contract_section(|bytes, data| bytes[data..data + 5].copy_from_slice(b"0.1.0"));
    let path = write_rule(dir.path(), "mislabelled.wasm", &mislabelled);
    let run = rulehost(&["eval", "--allow-unsigned", "--rules", &path, &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("{path}: ")), "{}", run.stderr);
    assert!(run.stderr.contains("checking the exports"), "{}", run.stderr);
}

#[test]
fn what_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = write_rule(dir.path(), "module.wasm", b"\0asm\x01\0\0\0");
    let run = rulehost(&["inspect", &module]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!("{module}: not a WebAssembly component: a core module")),
        "{}",
        run.stderr
    );

    let text = write_rule(dir.path(), "text.wasm", b"hello");
    let run = rulehost(&["eval", "--rules", &text, &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("{text}: not a WebAssembly component")), "{}", run.stderr);

    let run = rulehost(&["eval", "--rules", "/nonexistent/rule.wasm"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent/rule.wasm: No such file"), "{}", run.stderr);
}

#[test]
fn fail_on_detection_sets_the_exit_code() {
    let run = rulehost(&["eval", "--fail-on-detection", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json_lines().len(), 2, "alerts are still written");

    let quiet = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    let rows = crate::util::read_data("defender-rows.jsonl");
    let benign: String = rows.lines().filter(|l| l.contains("net user")).map(|l| format!("{l}\n")).collect();
    std::fs::write(quiet.path(), benign).unwrap();
    let run = rulehost(&["eval", "--fail-on-detection", &quiet.path().display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    let run = rulehost(&["eval", "--fail-on-detection", "--matches", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 1);
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [
        &["eval", "--window", "0h"][..],
        &["eval", "--format", "xml"][..],
        &["eval", "--input-format", "evtx2"][..],
        &["eval", "--batch-size", "0"][..],
        &["frobnicate"][..],
    ] {
        let run = rulehost(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
}

#[test]
fn the_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path(), "soft-cell.wasm", BUNDLED_SOFT_CELL);
    let config = dir.path().join("config.toml");
    let keys = dir.path().display().to_string();
    assert_eq!(rulehost(&["key", "generate", "--name", "platform", "--dir", &keys]).code, 0);
    std::fs::write(
        &config,
        "rules = [\"soft-cell.wasm\"]\n[trust]\nkeys = [\"platform.pub\"]\n[limits]\ndeadline_ms = 250\n",
    )
    .unwrap();
    let config = config.display().to_string();

    let shown = rulehost(&["--config", &config, "config", "show", "--max-alerts", "5"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains(&format!("deadline_ms       250  ({config})")), "{}", shown.stdout);
    assert!(shown.stdout.contains("max_alerts        5  (command line)"), "{}", shown.stdout);
    assert!(shown.stdout.contains("max_memory_mib    64  (default)"), "{}", shown.stdout);
    assert!(shown.stdout.contains(&format!("rules             {rule}  ({config})")), "{}", shown.stdout);

    // The policy in the file is in force: the unsigned rule it names is refused.
    let run = rulehost(&["--config", &config, "eval", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("{rule}: refused by the trust policy")), "{}", run.stderr);
    let key = dir.path().join("platform.key").display().to_string();
    assert_eq!(rulehost(&["sign", "--key", &key, &rule]).code, 0);
    let run = rulehost(&["--config", &config, "eval", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_golden("defender.alerts.jsonl", &run.stdout);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\ndeadline = 1\n").unwrap();
    let run = rulehost(&["--config", &bad.display().to_string(), "eval", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unknown field `deadline`"), "{}", run.stderr);
}

#[test]
fn compiled_components_are_cached_and_a_bad_entry_is_a_miss() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().display().to_string();
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.path())
            .map_or_else(|_| Vec::new(), |d| d.map(|e| e.unwrap().path()).collect())
    };
    let run = rulehost(&["eval", "--no-cache", "--cache-dir", &dir, &data("defender-rows.jsonl")]);
    assert_golden("defender.alerts.jsonl", &run.stdout);
    assert!(entries().is_empty(), "--no-cache writes nothing");

    let cold = rulehost(&["eval", "--cache-dir", &dir, &data("defender-rows.jsonl")]);
    assert_golden("defender.alerts.jsonl", &cold.stdout);
    let written = entries();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].extension().is_some_and(|e| e == "cwasm"));
    let original = std::fs::read(&written[0]).unwrap();
    let warm = rulehost(&["eval", "--cache-dir", &dir, &data("defender-rows.jsonl")]);
    assert_eq!(warm.stdout, cold.stdout, "the cached component gives the same output");

    // Truncated, then with one byte changed: each a miss, compiled again and rewritten.
    for damage in [0u8, 1] {
        let mut bytes = std::fs::read(&written[0]).unwrap();
        if damage == 0 {
            bytes.truncate(bytes.len() / 2);
        } else {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
        }
        std::fs::write(&written[0], bytes).unwrap();
        let run = rulehost(&["eval", "--cache-dir", &dir, &data("defender-rows.jsonl")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, cold.stdout);
        assert!(std::fs::read(&written[0]).unwrap() == original, "the entry is written anew, whole");
    }
}
