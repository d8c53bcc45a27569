//! Sigma rules: the compiler over the public catalog, packs over real logs, and packs as
//! artifacts (compiled, signed, verified, loaded under a policy).

use rulehost::rules::BUNDLED_SOFT_CELL;

use crate::util::{data, inspected_unsigned, rulehost, shared, write_rule};

/// The SigmaHQ process-creation catalog beside the repository.
fn catalog() -> String {
    shared("sigma-catalog")
}

#[test]
fn the_catalog_compiles_but_for_what_the_event_cannot_express() {
    let run = rulehost(&["sigma", "check", &catalog()]);
    // A refused rule makes `check` fail, as a linter does.
    assert_eq!(run.code, 1, "{}", run.stderr);
    let coverage = run.stdout.lines().find(|l| l.contains(" rules compile (")).expect(&run.stdout);
    let numbers: Vec<u64> = coverage.split(' ').take(3).filter_map(|w| w.parse().ok()).collect();
    let [compiled, total] = numbers[..] else { panic!("{coverage}") };
    assert_eq!(total, 1415, "{coverage}");
    assert!(compiled * 1000 >= total * 998, "coverage under 99.8%: {coverage}");
    // Each refusal names the file, the rule, the construct and the reason.
    let refused: Vec<&str> = run.stdout.lines().filter(|l| l.contains(".yml: rule ")).collect();
    assert_eq!(refused.len() as u64, total - compiled, "{}", run.stdout);
    assert!(
        refused.iter().any(|l| l.contains("proc_creation_win_conhost_susp_child_process.yml")
            && l.contains("field: field \"Provider_Name\" is not in the process event")),
        "{}",
        run.stdout
    );
}

#[test]
fn rules_that_summarize_other_fields_give_together_the_alerts_each_gives_alone() {
    // Soft Cell's alerts are made of Defender's columns, a Sigma pack's of its own: the
    // windows of rules run together share each event's projection only among rules that
    // summarize the same fields.
    let dir = tempfile::tempdir().unwrap();
    let soft_cell = write_rule(dir.path(), "soft-cell.wasm", BUNDLED_SOFT_CELL);
    let sigma = shared("sigma");
    // Defender rows on which both alert.
    let log = data("defender-rows.jsonl");
    let alerts = |rules: &[&str]| {
        let mut args = vec!["eval"];
        for rule in rules {
            args.extend(["--rules", rule]);
        }
        args.push(&log);
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut lines: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let (soft_cell_alone, sigma_alone) = (alerts(&[&soft_cell]), alerts(&[&sigma]));
    assert!(!soft_cell_alone.is_empty() && !sigma_alone.is_empty(), "{soft_cell_alone:?} {sigma_alone:?}");
    let mut each_alone = [soft_cell_alone, sigma_alone].concat();
    each_alone.sort();
    assert_eq!(alerts(&[&soft_cell, &sigma]), each_alone);
}

#[test]
fn a_web_server_spawning_a_shell_is_found_by_the_sigma_rules_as_by_hand() {
    // w3wp.exe -> cmd.exe /c net user (then net -> net1, whose parent is cmd.exe): of the ten
    // Sigma rules closest to Soft Cell, "Suspicious Process By Web Server Process" matches the
    // one event whose parent is the web server, and nothing else does.
    let log = shared("evtx/LM_typical_IIS_webshell_sysmon_1_10_traces.evtx");
    let run = rulehost(&["eval", "--rules", &shared("sigma"), "--matches", &log]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let matches = run.json_lines();
    assert_eq!(matches.len(), 1, "{}", run.stdout);
    assert_eq!(matches[0]["rule"], "8202070f-edeb-4d31-a010-a26c72ac5600");
    assert_eq!(matches[0]["event"]["FolderPath"], "C:\\Windows\\System32\\cmd.exe");
    assert_eq!(
        matches[0]["event"]["InitiatingProcessFolderPath"],
        "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
    );

    // Alerts: one per rule, device and window, with the Sigma level as severity.
    let run = rulehost(&["eval", "--rules", &shared("sigma"), &log]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 1, "{}", run.stdout);
    assert_eq!(alerts[0]["RuleTitle"], "Suspicious Process By Web Server Process");
    assert_eq!(alerts[0]["Severity"], "high");
    assert_eq!(alerts[0]["set_ParentImage"], serde_json::json!(["C:\\Windows\\System32\\inetsrv\\w3wp.exe"]));
    assert_eq!(alerts[0]["MatchCount"], 1);
}

#[test]
fn a_compiled_pack_is_an_artifact_that_signs_verifies_and_gives_the_same_matches() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("webshell.wasm").display().to_string();
    let run = rulehost(&["sigma", "compile", &shared("sigma"), "-o", &pack]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("10 rules"), "{}", run.stderr);

    // The same rule texts give the same bytes.
    let again = dir.path().join("again.wasm").display().to_string();
    assert_eq!(rulehost(&["sigma", "compile", &shared("sigma"), "-o", &again]).code, 0);
    assert_eq!(std::fs::read(&pack).unwrap(), std::fs::read(&again).unwrap());

    let inspect = rulehost(&["inspect", "--json", &pack]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(inspect.stdout.contains("detect:rule@0.4.0"), "{}", inspect.stdout);
    // Every rule of the pack is listed, with its own metadata.
    let described: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let listed = described["rules"].as_array().expect(&inspect.stdout);
    assert_eq!(listed.len(), 10, "{}", inspect.stdout);
    assert!(
        listed.iter().any(|r| r["id"] == "8202070f-edeb-4d31-a010-a26c72ac5600" && r["severity"] == "high")
    );
    let text = rulehost(&["inspect", &pack]);
    assert!(text.stdout.contains("rules:         10"), "{}", text.stdout);
    assert_eq!(text.stdout.lines().filter(|l| l.starts_with("  ")).count(), 10, "{}", text.stdout);

    let logs = [
        shared("evtx/discovery_sysmon_1_iis_pwd_and_config_discovery_appcmd.evtx"),
        shared("otrf/sysmon_log4shell_cve2021_44228_java_serialized_object.zip"),
        shared("otrf/securityauditing_log4shell_cve2021_44228_java_serialized_object.zip"),
    ];
    let rule_ids = |rules: &str| {
        let mut args = vec!["eval", "--rules", rules, "--matches"];
        args.extend(logs.iter().map(String::as_str));
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json_lines().iter().map(|m| m["rule"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let from_yaml = rule_ids(&shared("sigma"));
    assert!(from_yaml.len() >= 3, "{from_yaml:?}");
    assert_eq!(rule_ids(&pack), from_yaml);

    // Signed, the pack loads under the policy; the YAML itself, unsigned, does not.
    let keys = dir.path().display().to_string();
    assert_eq!(rulehost(&["key", "generate", "--name", "platform", "--dir", &keys]).code, 0);
    let (key, public) = (format!("{keys}/platform.key"), format!("{keys}/platform.pub"));
    assert_eq!(rulehost(&["sign", "--key", &key, &pack]).code, 0);
    let verify = rulehost(&["verify", "--trust", &public, &pack]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    let signed = rulehost(&["eval", "--trust", &public, "--rules", &pack, "--matches", &logs[0]]);
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    assert!(!signed.json_lines().is_empty());
    let yaml = rulehost(&["eval", "--trust", &public, "--rules", &shared("sigma"), &logs[0]]);
    assert_eq!(yaml.code, 2);
    assert!(yaml.stderr.contains("refused by the trust policy"), "{}", yaml.stderr);
}

#[test]
fn the_whole_catalog_runs_over_every_shared_log() {
    let mut args = vec!["eval".to_owned(), "--rules".to_owned(), catalog(), "--matches".to_owned()];
    for entry in std::fs::read_dir(shared("evtx")).unwrap().chain(std::fs::read_dir(shared("otrf")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "evtx" || e == "zip") {
            args.push(path.display().to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = rulehost(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("1 Sigma rule left out (field: 1;"), "{}", run.stderr);
    let matches = run.json_lines();
    // Checked by hand against the rules: the web server spawning cmd.exe.
    assert!(
        matches.iter().any(|m| m["rule"] == "8202070f-edeb-4d31-a010-a26c72ac5600"
            && m["event"]["ProcessCommandLine"] == "\"c:\\windows\\system32\\cmd.exe\" /c net user"),
        "{}",
        run.stdout
    );
    // Impacket's wmiexec: `cmd.exe /Q /c ... 1> \\127.0.0.1\ADMIN$\__... 2>&1` under
    // WmiPrvSE.exe is "HackTool - Potential Impacket Lateral Movement Activity" (parent
    // WmiPrvSE.exe, command line containing all of cmd.exe, /Q, /c, \\127.0.0.1\ and &1).
    let wmiexec: Vec<_> =
        matches.iter().filter(|m| m["rule"] == "10c14723-61c7-4c75-92ca-9af245723ad2").collect();
    assert!(!wmiexec.is_empty(), "{}", run.stdout);
    for m in wmiexec {
        let command_line = m["event"]["ProcessCommandLine"].as_str().unwrap();
        assert!(command_line.contains("\\\\127.0.0.1\\ADMIN$") && command_line.ends_with("2>&1"), "{m}");
        assert!(
            m["event"]["InitiatingProcessFolderPath"].as_str().unwrap().ends_with("\\WmiPrvSE.exe"),
            "{m}"
        );
    }
}

#[test]
fn sigma_files_compiled_once_are_read_from_the_cache_and_a_changed_file_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for entry in std::fs::read_dir(shared("sigma")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            std::fs::copy(&path, rules.join(path.file_name().unwrap())).unwrap();
        }
    }
    let cache = dir.path().join("cache").display().to_string();
    let log = shared("evtx/LM_typical_IIS_webshell_sysmon_1_10_traces.evtx");
    let rules_arg = rules.display().to_string();
    let eval = || rulehost(&["eval", "--cache-dir", &cache, "--rules", &rules_arg, "--matches", &log]);
    let first = eval();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json_lines().len(), 1, "{}", first.stdout);
    let packs = || -> usize {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "pack"))
            .count()
    };
    assert_eq!(packs(), 1);
    let second = eval();
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(packs(), 1, "the same texts are one entry");

    // The rule that matched, edited so that it cannot: the cache must not answer for it.
    let file = rules.join("proc_creation_win_webshell_susp_process_spawned_from_webserver.yml");
    let text = std::fs::read_to_string(&file).unwrap().replace("'\\w3wp.exe'", "'\\not-w3wp.exe'");
    std::fs::write(&file, text).unwrap();
    let edited = eval();
    assert_eq!(edited.code, 0, "{}", edited.stderr);
    assert_eq!(edited.json_lines().len(), 0, "{}", edited.stdout);
    assert_eq!(packs(), 2);
}

/// A Sigma rule for process creations in `dir`: `id`, and the one line of its selection.
fn process_creation_rule(dir: &std::path::Path, id: &str, selection: &str) -> String {
    let rule = dir.join(format!("{id}.yml"));
    std::fs::write(
        &rule,
        format!(
            "title: Rule {id}\nid: {id}\ndate: 2026-12-03\n\
             logsource:\n    category: process_creation\n    product: windows\n\
             detection:\n    selection:\n        {selection}\n    condition: selection\nlevel: low\n"
        ),
    )
    .unwrap();
    rule.to_str().unwrap().to_owned()
}

/// A file in `dir` of Defender rows of `cmd.exe` on one device, the `i`-th at `times(i)` with
/// `command_lines[i]`; its path.
fn cmd_rows(dir: &std::path::Path, command_lines: &[String], times: impl Fn(usize) -> String) -> String {
    let mut rows = String::new();
    for (i, command_line) in command_lines.iter().enumerate() {
        let row = serde_json::json!({
            "Timestamp": times(i), "DeviceId": "d1", "DeviceName": "host1", "ActionType": "ProcessCreated",
            "FileName": "cmd.exe", "FolderPath": "C:\\Windows\\System32\\cmd.exe", "ProcessId": i,
            "ProcessCommandLine": command_line, "InitiatingProcessFolderPath": "C:\\x.exe", "ReportId": i,
        });
        rows.push_str(&row.to_string());
        rows.push('\n');
    }
    let input = dir.join("rows.jsonl");
    std::fs::write(&input, rows).unwrap();
    input.to_str().unwrap().to_owned()
}

#[test]
fn a_window_whose_matches_outgrow_the_memory_limit_still_gives_its_alert() {
    // 30,000 matches of one rule on one device in one hour, 12 MB of command lines: more
    // than the 8 MiB a rule may take. The summarize call is handed them all, and the input
    // the host hands it is granted on top of the limit; before, the call trapped and the
    // window gave no alert ("30000 matches not summarized"). The window is one part (a
    // device's 30,000 matches are past the 10,000 a part holds by default).
    let dir = tempfile::tempdir().unwrap();
    let rule = process_creation_rule(
        dir.path(),
        "0b7e2a4c-1111-4222-8333-944455556666",
        "Image|endswith: '\\cmd.exe'",
    );
    let command_lines: Vec<String> =
        (0..30_000).map(|i| format!("cmd.exe /c echo {i} {}", "A".repeat(400))).collect();
    let input = cmd_rows(dir.path(), &command_lines, |i| {
        format!("2024-06-12T02:{:02}:{:02}.000Z", i / 600, i / 10 % 60)
    });
    let run = rulehost(&[
        "eval",
        "--no-cache",
        "--max-memory-mib",
        "8",
        "--max-window-matches",
        "30000",
        "--rules",
        &rule,
        &input,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(alerts[0]["MatchCount"], 30_000);
    assert_eq!(alerts[0]["set_CommandLine"].as_array().unwrap().len(), 100, "at most 100 values a set");
    assert_eq!(alerts[0]["set_Image"], serde_json::json!(["C:\\Windows\\System32\\cmd.exe"]));
    assert!(!run.stderr.contains("not summarized"), "{}", run.stderr);
}

#[test]
fn a_command_line_of_megabytes_that_holds_a_text_everywhere_is_evaluated() {
    // 13.8 MB of `abc`: the text at every third byte. Listed at each occurrence (eight bytes
    // each, 37 MB), the texts found outgrew the pack's 64 MiB beside the value and its folded
    // copy, and the event was not evaluated; a text's entries are now merged.
    let dir = tempfile::tempdir().unwrap();
    let rule = process_creation_rule(
        dir.path(),
        "0b7e2a4c-2222-4222-8333-944455556666",
        "CommandLine|contains: 'abc'",
    );
    let command_lines =
        [format!("x {}", "abc".repeat(4_600_000)), "cmd /c echo abc".into(), "cmd /c echo nothing".into()];
    let input = cmd_rows(dir.path(), &command_lines, |i| format!("2024-06-12T02:00:0{i}.000Z"));
    let run = rulehost(&["eval", "--no-cache", "--matches", "--rules", &rule, &input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("not evaluated"), "{}", run.stderr);
    let matched: Vec<String> = run
        .json_lines()
        .iter()
        .map(|m| m["event"]["ReportId"].as_str().expect("a report id").to_owned())
        .collect();
    assert_eq!(matched, ["0", "1"], "{}", run.stderr);
}

#[test]
fn forged_command_lines_of_megabytes_still_give_their_alert_with_each_value_cut_and_marked() {
    // Ten matches of 2 MB each (Windows holds a command line to 32,767 UTF-16 units: these
    // are forged). Handed whole, the alert's set of command lines was 20 MB, over the 16 MiB
    // an alert may take, and the window gave no alert ("10 matches not summarized").
    let dir = tempfile::tempdir().unwrap();
    let rule = process_creation_rule(
        dir.path(),
        "0b7e2a4c-3333-4222-8333-944455556666",
        "CommandLine|contains: 'echo'",
    );
    let command_lines: Vec<String> =
        (0..10).map(|i| format!("cmd /c echo {i} {}", "QUJD".repeat(500_000))).collect();
    let input = cmd_rows(dir.path(), &command_lines, |i| format!("2024-06-12T02:00:0{i}.000Z"));
    let run = rulehost(&["eval", "--rules", &rule, &input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("not summarized"), "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 1, "{}", run.stderr);
    assert_eq!(alerts[0]["MatchCount"], 10);
    let kept: Vec<&str> =
        alerts[0]["set_CommandLine"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(kept.len(), 10, "each command line is distinct, and stays so cut");
    for line in kept {
        let whole = &command_lines[line.split(' ').nth(3).unwrap().parse::<usize>().unwrap()];
        assert!(whole.starts_with(&line[..line.find('…').expect("a mark")]), "the value's start is kept");
        assert!(line.len() <= rulehost::events::SUMMARY_VALUE_BYTES, "{} bytes", line.len());
        assert!(line.contains(&format!("…[{} bytes, sha256:", whole.len())), "{}", &line[line.len() - 60..]);
    }
}

#[test]
fn a_window_of_more_devices_than_one_call_may_alert_on_gives_an_alert_for_each() {
    // 12,001 matches on 12,000 devices in one window: one call may return 10,000 alerts, and
    // the window gave none ("12001 matches not summarized").
    let dir = tempfile::tempdir().unwrap();
    let rule = process_creation_rule(
        dir.path(),
        "0b7e2a4c-4444-4222-8333-944455556666",
        "CommandLine|contains: 'echo'",
    );
    let devices = 12_000;
    let mut rows = String::new();
    for i in 0..=devices {
        let device = i % devices;
        let row = serde_json::json!({
            "Timestamp": format!("2024-06-12T02:{:02}:{:02}.000Z", i / 600 % 60, i / 10 % 60),
            "DeviceId": format!("id-{device}"), "DeviceName": format!("host{device}"),
            "ActionType": "ProcessCreated", "FileName": "cmd.exe",
            "FolderPath": "C:\\Windows\\System32\\cmd.exe", "ProcessId": i,
            "ProcessCommandLine": format!("cmd /c echo {i}"), "InitiatingProcessFolderPath": "C:\\x.exe",
            "ReportId": i,
        });
        rows.push_str(&row.to_string());
        rows.push('\n');
    }
    let input = dir.path().join("fleet.jsonl");
    std::fs::write(&input, rows).unwrap();
    let run = rulehost(&["eval", "--rules", &rule, input.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("not summarized"), "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), devices, "{}", run.stderr);
    let mut by_device = std::collections::BTreeMap::new();
    for alert in &alerts {
        let device = alert["DeviceName"].as_str().unwrap().to_owned();
        assert!(
            by_device.insert(device, alert["MatchCount"].as_u64().unwrap()).is_none(),
            "an alert per device"
        );
    }
    assert_eq!(by_device["host0"], 2, "both matches of the device that has two, in one alert");
    assert_eq!(by_device.values().sum::<u64>(), devices as u64 + 1);
}

#[test]
fn a_pack_that_fails_its_calls_is_quarantined_in_one_warning() {
    // A pack's failed call is the failure of each of its rules, and they are quarantined
    // together: a warning for each was 1,414 lines for the catalog.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    process_creation_rule(&rules, "0b7e2a4c-5555-4222-8333-944455556661", "CommandLine|contains: 'echo'");
    process_creation_rule(&rules, "0b7e2a4c-5555-4222-8333-944455556662", "Image|endswith: '\\cmd.exe'");
    // Slow on a long command line: its regular expression has 5,000 optional parts.
    let slow = format!("CommandLine|re: '{}{}'", "a?".repeat(5_000), "a".repeat(5_000));
    process_creation_rule(&rules, "0b7e2a4c-5555-4222-8333-944455556663", &slow);
    let command_lines: Vec<String> =
        (0..6).map(|i| format!("cmd /c echo {i} {}", "a".repeat(200_000))).collect();
    let input = cmd_rows(dir.path(), &command_lines, |i| format!("2024-06-12T02:00:0{i}.000Z"));
    let args =
        ["eval", "--batch-size", "1", "--deadline-ms", "20", "--rules", rules.to_str().unwrap(), &input];
    let run = rulehost(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let quarantined: Vec<&str> =
        run.stderr.lines().filter(|l| l.contains("quarantined for the rest")).collect();
    assert!(
        matches!(&quarantined[..], [line] if line.contains(" and the 2 other rules of its pack quarantined")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(3 rules): 3 failed calls"), "{}", run.stderr);
}

/// The shared Sigma rules compiled against contract 0.3.0, kept from before 0.4.0 (see
/// tests/data/contract-0.3.0/README.md).
const SIGMA_0_3: &str = "tests/data/contract-0.3.0/shared-sigma.wasm";

#[test]
fn a_pack_built_against_contract_0_3_gives_the_alerts_of_the_same_rules_compiled_now() {
    assert_eq!(inspected_unsigned(SIGMA_0_3)["contract"], "detect:rule@0.3.0");

    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("now.wasm").display().to_string();
    assert_eq!(rulehost(&["sigma", "compile", &shared("sigma"), "-o", &pack]).code, 0);
    assert_eq!(inspected_unsigned(&pack)["contract"], "detect:rule@0.4.0");

    // Six copies of every shared EVTX file: each match is there six times, in the same
    // window and on the same device, so that a window's values repeat (as a noisy rule's
    // do), and the packs are sent them one after another (0.3.0) or each once (0.4.0).
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for entry in std::fs::read_dir(shared("evtx")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "evtx") {
            for copy in 0..6 {
                let name = format!("{copy:02}-{}", path.file_name().unwrap().to_string_lossy());
                std::fs::copy(&path, logs.join(name)).unwrap();
            }
        }
    }
    // And a web server's children on two devices, interleaved, whose images, command lines
    // and users are drawn from small sets (empty and non-ASCII values among them), so that
    // a window's values repeat out of order and differ from one event to the next.
    let (mut rows, mut state) = (String::new(), 7u64);
    let mut draw = |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let lines = ["cmd.exe /c whoami", "", "net user /domain", "cmd.exe /c echo façade", "cmd.exe /c whoami "];
    for i in 0..600 {
        let device = draw(2);
        let image = ["cmd.exe", "net.exe", "hostname.exe"][draw(3) as usize];
        let line = lines[draw(lines.len() as u64) as usize];
        let domain = ["IIS APPPOOL", ""][draw(2) as usize];
        let name = ["DefaultAppPool", "svc-web"][draw(2) as usize];
        let row = serde_json::json!({
            "Timestamp": format!("2024-06-12T02:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
            "DeviceId": format!("d{device}"), "DeviceName": format!("web{device}.example.org"),
            "ActionType": "ProcessCreated", "FileName": image,
            "FolderPath": format!("C:\\Windows\\System32\\{image}"), "ProcessId": 4000 + i,
            "ProcessCommandLine": line, "AccountDomain": domain, "AccountName": name,
            "InitiatingProcessFolderPath": "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
            "InitiatingProcessFileName": "w3wp.exe", "ReportId": i,
        });
        rows.push_str(&row.to_string());
        rows.push('\n');
    }
    std::fs::write(logs.join("web-children.jsonl"), rows).unwrap();
    let logs = logs.display().to_string();
    let outputs = |rules: &str, matches: bool| {
        let mut args = vec!["eval", "--allow-unsigned", "--rules", rules];
        if matches {
            args.push("--matches");
        }
        args.push(&logs);
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        (crate::util::mask_digests(&run.stdout), run.json_lines())
    };
    let (then, alerts) = outputs(SIGMA_0_3, false);
    assert_eq!(outputs(&pack, false).0, then);
    assert_eq!(outputs(&pack, true).0, outputs(SIGMA_0_3, true).0);
    // The windows compared hold repeated values: alerts of the EVTX copies (six matches of
    // one command line), and of both web servers, each with its own repeated values.
    let count = |a: &serde_json::Value, set: &str| a[set].as_array().map_or(0, Vec::len);
    assert!(alerts.iter().any(|a| a["MatchCount"] == 6 && count(a, "set_CommandLine") == 1), "{then}");
    for device in ["web0.example.org", "web1.example.org"] {
        let alert = alerts.iter().find(|a| a["DeviceName"] == device).expect(&then);
        assert!(alert["MatchCount"].as_u64().unwrap() > 250, "{alert}");
        // Four command lines (the empty one is left out of a set), three images, and the
        // users with and without a domain.
        assert_eq!(count(alert, "set_CommandLine"), 4, "{alert}");
        assert_eq!(count(alert, "set_Image"), 3, "{alert}");
        assert_eq!(count(alert, "set_User"), 4, "{alert}");
    }
}

/// Rule files that each took the host down, and the reason each is now refused for: 657
/// bytes whose aliases expand to a billion YAML nodes (memory); 744 KB of aliases nested in
/// aliases 60,000 deep, 400 KB of block sequences nested 200,000 deep, 600 KB of a condition
/// in 300,000 parentheses (each the stack).
fn hostile_rules(dir: &std::path::Path) -> Vec<(std::path::PathBuf, &'static str)> {
    let header = "title: hostile\nid: 0f7a7c9e-0000-4000-8000-00000000b0b0\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n";
    let mut laughs = format!("{header}  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        laughs += &format!("  a{level}: &a{level} [{}]\n", vec![format!("*a{}", level - 1); 10].join(", "));
    }
    laughs += "  selection:\n    CommandLine|contains: *a8\n  condition: selection\n";
    let mut chain = format!("{header}  chain: [&l0 x");
    for link in 1..60_000 {
        chain += &format!(", &l{link:x} [*l{:x}]", link - 1);
    }
    chain += "]\n  selection:\n    CommandLine|contains: whoami\n  condition: selection\n";
    let blocks = format!(
        "{header}  selection:\n    CommandLine|contains:\n      {}x\n  condition: selection\n",
        "- ".repeat(200_000)
    );
    let parens = format!(
        "{header}  selection:\n    CommandLine|contains: whoami\n  condition: {}selection{}\n",
        "(".repeat(300_000),
        ")".repeat(300_000)
    );
    // Words over the contract's bounds: the pack that held them was refused whole when
    // loaded, and every rule with it. The title is within pySigma's 256 characters, not
    // within the contract's 512 bytes.
    let long_title = format!(
        "title: {}\nid: 0f7a7c9e-0000-4000-8000-00000000b0b1\nlogsource:\n  category: process_creation\n  product: windows\n\
         detection:\n  selection:\n    CommandLine|contains: whoami\n  condition: selection\n",
        "€".repeat(256)
    );
    let tags = (0..100).map(|n| format!("  - attack.t{}\n", 1000 + n)).collect::<String>();
    let many_tags = format!(
        "title: tags\nid: 0f7a7c9e-0000-4000-8000-00000000b0b2\ntags:\n{tags}logsource:\n  category: process_creation\n\
         \x20 product: windows\ndetection:\n  selection:\n    CommandLine|contains: whoami\n  condition: selection\n"
    );
    let mut files = Vec::new();
    for (name, text, reason) in [
        ("long-title.yml", long_title, "metadata: title of 768 bytes, more than the limit of 512"),
        ("many-tags.yml", many_tags, "metadata: 100 techniques, more than the limit of 64"),
        (
            "laughs.yml",
            laughs,
            "not a Sigma rule: its YAML expands to more than 524288 nodes through aliases",
        ),
        ("chain.yml", chain, "not a Sigma rule: its YAML nests deeper than 64 levels"),
        ("blocks.yml", blocks, "not a Sigma rule: its YAML nests deeper than 64 levels"),
        ("parens.yml", parens, "condition: parentheses and `not` nest deeper than 64 levels"),
    ] {
        assert!(text.len() < 1 << 20, "{name} is under the size limit");
        std::fs::write(dir.join(name), text).unwrap();
        files.push((dir.join(name), reason));
    }
    files
}

#[test]
fn hostile_rule_files_are_left_out_with_the_reason_and_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = hostile_rules(dir.path());
    std::fs::copy(
        shared("sigma/proc_creation_win_webshell_susp_process_spawned_from_webserver.yml"),
        dir.path().join("webserver.yml"),
    )
    .unwrap();
    let mut args = vec!["sigma".to_owned(), "check".to_owned()];
    args.extend(hostile.iter().map(|(path, _)| path.display().to_string()));
    let check = rulehost(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(check.code, 1, "{}", check.stderr);
    let log = shared("evtx/LM_typical_IIS_webshell_sysmon_1_10_traces.evtx");
    let run = rulehost(&["eval", "--rules", &dir.path().display().to_string(), "--matches", &log]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (path, reason) in &hostile {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            check.stdout.lines().any(|l| l.contains(&*name) && l.contains(reason)),
            "{name}: {}",
            check.stdout
        );
        assert!(
            run.stderr.lines().any(|l| l.contains(&*name) && l.contains(reason)),
            "{name}: {}",
            run.stderr
        );
    }
    let matches = run.json_lines();
    assert_eq!(matches.len(), 1, "{}", run.stdout);
    assert_eq!(matches[0]["rule"], "8202070f-edeb-4d31-a010-a26c72ac5600");
}

/// A folder of every Sigma rule (all log sources) holds about 1,600 that are not process
/// creation: `eval` names the first few it leaves out and counts the rest by construct,
/// instead of a warning each.
#[test]
fn rules_of_other_log_sources_are_counted_not_listed_one_by_one() {
    let dir = folder_of_every_log_source(60);
    let log = shared("evtx/LM_wmiexec_impacket_sysmon_whoami.evtx");
    let summary = dir.path().join("summary.json");
    let run = rulehost(&[
        "eval",
        "--rules",
        &dir.path().display().to_string(),
        "--matches",
        "--summary-json",
        summary.to_str().unwrap(),
        &log,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The summary lists every one.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let left_out = &summary["sigma_rules_left_out"];
    assert_eq!(left_out["count"], 62, "{left_out}");
    assert_eq!(left_out["by_construct"], serde_json::json!({"logsource": 60, "status": 1, "|lt": 1}));
    let files: std::collections::BTreeSet<&str> =
        left_out["rules"].as_array().unwrap().iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 62, "{left_out}");
    assert!(
        left_out["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["construct"] == "|lt" && r["error"].as_str().unwrap().contains("f001.yml"))
    );
    let named = run.stderr.lines().filter(|l| l.contains("Sigma rule left out: ")).count();
    assert_eq!(named, 20, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "62 Sigma rules left out (logsource: 60, status: 1, |lt: 1; the first 20 named above; `rulehost sigma check` lists them all)"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.json_lines().is_empty(), "the rule that compiles runs: {}", run.stdout);
    let check = rulehost(&["sigma", "check", &dir.path().display().to_string()]);
    assert_eq!(
        check.stdout.lines().filter(|l| l.contains(": rule 0f7a7c9e-")).count(),
        62,
        "{}",
        check.stdout
    );
    let pack = dir.path().join("pack.wasm").display().to_string();
    let compile = rulehost(&["sigma", "compile", &dir.path().display().to_string(), "-o", &pack]);
    assert_eq!(compile.code, 0, "{}", compile.stderr);
    assert_eq!(compile.stderr.lines().filter(|l| l.contains("Sigma rule left out: ")).count(), 20);
    assert!(
        compile.stderr.contains("62 Sigma rules left out (logsource: 60, status: 1, |lt: 1;"),
        "{}",
        compile.stderr
    );
}

/// A folder like one of every Sigma rule: `network` rules of the `network_connection` log
/// source, a process-creation rule that compiles (`...f000`), one that does not (`...f001`,
/// `|lt`), and one that its status leaves out (`...f002`, deprecated).
fn folder_of_every_log_source(network: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    network_connection_rules(dir.path(), 0..network);
    process_creation_rule(dir.path(), "0f7a7c9e-0000-4000-8000-00000000f000", "CommandLine|contains: whoami");
    process_creation_rule(dir.path(), "0f7a7c9e-0000-4000-8000-00000000f001", "CommandLine|lt: 5");
    let deprecated = process_creation_rule(
        dir.path(),
        "0f7a7c9e-0000-4000-8000-00000000f002",
        "CommandLine|contains: whoami",
    );
    let text = std::fs::read_to_string(&deprecated).unwrap();
    std::fs::write(&deprecated, text.replace("level: low\n", "level: low\nstatus: deprecated\n")).unwrap();
    dir
}

/// Rules of the `network_connection` log source in `dir`, one for each port of `ports`.
fn network_connection_rules(dir: &std::path::Path, ports: std::ops::Range<u32>) {
    for port in ports {
        std::fs::write(
            dir.join(format!("net_connection_{port}.yml")),
            format!(
                "title: Port {port}\nid: 0f7a7c9e-0000-4000-8000-{port:012}\n\
                 logsource:\n  category: network_connection\n  product: windows\n\
                 detection:\n  selection:\n    DestinationPort: {port}\n  condition: selection\n"
            ),
        )
        .unwrap();
    }
}

/// `run` over a folder of every Sigma rule: the files out of scope in one line, a
/// rule that cannot be compiled on its own, and the others run.
#[test]
fn a_live_run_says_in_one_line_which_rules_are_of_other_log_sources() {
    let dir = folder_of_every_log_source(40);
    let rules = dir.path().to_str().unwrap();
    let live = rulehost(&[
        "run",
        "--rules",
        rules,
        "--matches",
        &shared("evtx/LM_wmiexec_impacket_sysmon_whoami.evtx"),
    ]);
    assert_eq!(live.code, 0, "{}", live.stderr);
    assert!(!live.json_lines().is_empty(), "the rule that compiles runs: {}", live.stdout);
    // The rule that cannot be compiled is an error; the others are a warning, in one line.
    let refusals: Vec<&str> = live.stderr.lines().filter(|l| l.contains("refused")).collect();
    assert!(
        matches!(&refusals[..], [line] if line.contains("ERROR") && line.contains("f001.yml") && line.contains("|lt")),
        "{}",
        live.stderr
    );
    let left_out: Vec<&str> = live.stderr.lines().filter(|l| l.contains("left out")).collect();
    assert!(
        matches!(&left_out[..], [line] if line.contains("WARN")
            && line.contains("41 Sigma files left out (of other log sources: 40, deprecated or unsupported: 1;")
            && line.contains("status stable, test or experimental")
            && line.contains("net_connection_0.yml")
            && line.contains("and 36 more")),
        "{}",
        live.stderr
    );
}

#[test]
fn a_live_run_counts_a_pack_in_one_line_of_its_totals_without_its_libraries_log() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let selections = [
        "CommandLine|contains: 'whoami'",
        "Image|endswith: '\\cmd.exe'",
        "CommandLine|contains: 'no such text'",
    ];
    for (n, selection) in selections.iter().enumerate() {
        process_creation_rule(&rules, &format!("5e1ec7ed-0000-4000-8000-00000000000{n}"), selection);
    }
    let rules = rules.to_str().unwrap();
    let input = shared("evtx/LM_wmiexec_impacket_sysmon_whoami.evtx");
    let live = rulehost(&["run", "--rules", rules, &input]);
    assert_eq!(live.code, 0, "{}", live.stderr);
    // `eval` over the same records with the same rules: the matches and alerts to count.
    let matches = rulehost(&["eval", "--matches", "--rules", rules, &input]);
    let alerts = rulehost(&["eval", "--rules", rules, &input]);
    assert_eq!((matches.code, alerts.code), (0, 0), "{}{}", matches.stderr, alerts.stderr);
    let matched_rules: std::collections::BTreeSet<String> =
        matches.json_lines().iter().map(|m| m["rule"].as_str().unwrap().to_owned()).collect();
    assert_eq!(matched_rules.len(), 2, "{}", matches.stdout);
    assert_eq!(live.json_lines(), alerts.json_lines());
    let stats: Vec<&str> = live.stderr.lines().filter(|l| l.contains("stats at exit")).collect();
    let totals = format!(
        "(3 rules): 4 events, {} matches (by 2 rules), {} alerts, 0 failures, 0 swaps",
        matches.json_lines().len(),
        alerts.json_lines().len()
    );
    assert!(matches!(&stats[..], [line] if line.ends_with(&totals)), "{totals}\n{}", live.stderr);
    // The EVTX reader logs a line at `info` for every chunk it parses.
    assert!(!live.stderr.contains("evtx::"), "{}", live.stderr);
}
