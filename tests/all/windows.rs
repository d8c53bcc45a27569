//! Windows event logs: Sysmon 1 and Security 4688 in every shape, normalized, with lineage.

use crate::util::{assert_golden, data, rulehost, shared, test_rule};

/// One scenario in every shape (see `tests/data/windows/generate.py`): four process
/// creations logged by Sysmon and by 4688, two of them matches (one through the parent,
/// one through the grandparent), one Sysmon 3 and one 4624 to skip.
const SCENARIO: &[&str] = &[
    "windows/scenario.xml",
    "windows/scenario.evtx-dump.jsonl",
    "windows/scenario.evtx-dump.json",
    "windows/scenario.winlogbeat.jsonl",
    "windows/scenario.winlogbeat.jsonl.gz",
    "windows/scenario.helk.jsonl",
    "windows/scenario.sentinel.jsonl",
];

const SCENARIO_SUMMARY: &str = "rulehost: 10 records read: 8 evaluated, 2 skipped (Security 4624: 1, Sysmon 3: 1), 0 rejected; 4 matches, 1 alert";

#[test]
fn every_shape_matches_through_parent_and_grandparent_in_both_sources() {
    for file in SCENARIO {
        let run = rulehost(&["eval", "--matches", &data(file)]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        assert_eq!(run.summary(), SCENARIO_SUMMARY.replace("1 alert", "0 alerts"), "{file}");
        let matches = run.json_lines();
        let seen: Vec<(String, String, String)> = matches
            .iter()
            .map(|m| {
                let e = &m["event"];
                let text = |f: &str| e[f].as_str().unwrap().to_owned();
                (text("ReportId"), text("InitiatingProcessParentFileName"), text("ProcessCommandLine"))
            })
            .collect();
        let expected = [
            ("5002", "svchost.exe", "cmd.exe /c whoami"),
            ("9002", "svchost.exe", "cmd.exe /c whoami"),
            ("5005", "w3wp.exe", "cmd.exe /c ipconfig /all"),
            ("9004", "w3wp.exe", "cmd.exe /c ipconfig /all"),
        ]
        // Sentinel's exports carry no record id.
        .map(|(r, g, c)| {
            (if file.contains("sentinel") { "" } else { r }.to_owned(), g.to_owned(), c.to_owned())
        });
        assert_eq!(seen, expected, "{file}");
    }
}

#[test]
fn both_sources_of_one_host_make_one_alert() {
    for file in SCENARIO {
        let run = rulehost(&["eval", &data(file)]);
        assert_eq!(run.summary(), SCENARIO_SUMMARY, "{file}");
        // Sentinel's exports carry no record id, so its alert has empty ReportIds.
        let golden = if file.contains("sentinel") {
            "windows-scenario-sentinel.alerts.jsonl"
        } else {
            "windows-scenario.alerts.jsonl"
        };
        assert_golden(golden, &run.stdout);
    }
}

#[test]
fn normalized_events_are_golden_for_every_shape() {
    let rule = test_rule("match-all");
    for file in SCENARIO {
        let run = rulehost(&["eval", "--rules", &rule, "--matches", &data(file)]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        // Within one scenario the events differ only in where they were read.
        let events: Vec<serde_json::Value> =
            run.json_lines().into_iter().map(|m| m["event"].clone()).collect();
        let text = serde_json::to_string_pretty(&events).unwrap() + "\n";
        let name = file.trim_start_matches("windows/").replace(".jsonl.gz", ".jsonl");
        let golden = if name.contains("winlogbeat") || name.contains("sentinel") || name.contains("helk") {
            format!("windows-{name}.events.json")
        } else {
            "windows-evtx.events.json".to_owned()
        };
        assert_golden(&golden, &text);
    }
}

#[test]
fn a_zip_is_read_entry_by_entry() {
    let run = rulehost(&["eval", "--matches", &data("windows/scenario.zip")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let files: Vec<String> =
        run.json_lines().iter().map(|m| m["source"]["file"].as_str().unwrap().to_owned()).collect();
    let zip = data("windows/scenario.zip");
    assert_eq!(files.len(), 8);
    assert!(files[..4].iter().all(|f| *f == format!("{zip}:scenario.xml")), "{files:?}");
    assert!(files[4..].iter().all(|f| *f == format!("{zip}:scenario.helk.jsonl")), "{files:?}");
}

#[test]
fn the_grandparent_is_found_across_files_in_any_order() {
    let child = data("windows/lineage-child.xml");
    let parents = data("windows/lineage-parents.xml");
    let one_match_through_the_grandparent = |run: crate::util::Run, what: &str| {
        let matches = run.json_lines();
        assert_eq!(matches.len(), 1, "{what}: {}", run.stderr);
        assert_eq!(matches[0]["event"]["InitiatingProcessParentFileName"], "w3wp.exe", "{what}");
        assert_eq!(matches[0]["event"]["InitiatingProcessParentId"], "4096", "{what}");
    };
    // Files in either order; a file given no memory for held events is read again at
    // their records: the same.
    for memory in [&[][..], &["--kept-events-mib", "0"][..]] {
        for args in [[&child, &parents], [&parents, &child]] {
            let run = rulehost(&[&["eval", "--matches"][..], memory, &[args[0], args[1]]].concat());
            one_match_through_the_grandparent(run, &format!("{memory:?} {args:?}"));
        }
    }
    // Standard input is read once: a child whose parent has not come yet is held back in
    // memory until the end, so a parent that comes after its child is still found, and
    // one that comes before it of course...
    let stdin = |first: &str, second: &str, memory: &[&str]| {
        let text = crate::util::read_data(first) + &crate::util::read_data(second);
        crate::util::rulehost_with_stdin(
            &[&["eval", "--matches"][..], memory, &["-"]].concat(),
            text.as_bytes(),
        )
    };
    let (child, parents) = ("windows/lineage-child.xml", "windows/lineage-parents.xml");
    one_match_through_the_grandparent(stdin(child, parents, &[]), "stdin, child first");
    one_match_through_the_grandparent(stdin(parents, child, &[]), "stdin, parents first");
    // ...unless no memory is given to held events: a stream cannot be read again, so its
    // events are evaluated as they come, and the parent is too late.
    let run = stdin(child, parents, &["--kept-events-mib", "0"]);
    assert_eq!(run.json_lines().len(), 0, "{}", run.stderr);
}

#[test]
fn a_lineage_table_of_one_process_forgets_the_grandparent() {
    let run = rulehost(&["eval", "--matches", "--lineage-capacity", "1", &data("windows/scenario.xml")]);
    let report_ids: Vec<String> =
        run.json_lines().iter().map(|m| m["event"]["ReportId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(report_ids, ["5002", "9002"], "only the matches through the parent remain");
}

/// Real logs: the process creations and matches that `../shared/data/README.md` gives.
#[test]
fn the_shared_logs_give_their_documented_counts() {
    let cases: &[(&str, u64, u64)] = &[
        // (file, records read, process-creation events)
        ("evtx/LM_typical_IIS_webshell_sysmon_1_10_traces.evtx", 4, 3),
        ("evtx/discovery_sysmon_1_iis_pwd_and_config_discovery_appcmd.evtx", 40, 40),
        ("evtx/privesc_rotten_potato_from_webshell_metasploit_sysmon_1_8_3.evtx", 13, 2),
        ("evtx/Runas_4624_4648_Webshell_CreateProcessAsUserA.evtx", 3, 0),
        ("evtx/tunna_iis_rdp_smb_tunneling_sysmon_3.evtx", 12, 0),
        ("evtx/LM_winrm_exec_sysmon_1_winrshost.evtx", 3, 3),
        ("evtx/LM_wmiexec_impacket_sysmon_whoami.evtx", 7, 4),
        ("evtx/ID4688-SQL_Server_payload_injection_reverse_shell_MSF.evtx", 140, 140),
        ("evtx/ID4688-4698-4699-5145-4624-ATexec_remote_task_creation.evtx", 12, 3),
        ("evtx/271de298-cc0e-4842-acd8-079a0a99ea65.evtx", 1, 1),
        ("evtx/271de298-cc0e-4842-acd8-079a0a99ea65.json", 1, 1),
        ("otrf/sysmon_log4shell_cve2021_44228_java_serialized_object.zip", 487, 2),
        ("otrf/securityauditing_log4shell_cve2021_44228_java_serialized_object.zip", 39, 2),
        ("otrf/empire_shell_net_local_users.zip", 1907, 10),
        ("otrf/cmd_seatbelt_group_user.zip", 451, 4),
    ];
    for &(file, read, evaluated) in cases {
        let run = rulehost(&["eval", &shared(file)]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        let summary = run.summary();
        let expected = format!(
            "rulehost: {read} record{} read: {evaluated} evaluated,",
            if read == 1 { "" } else { "s" }
        );
        assert!(summary.starts_with(&expected), "{file}: {summary}\nwanted: {expected}");
        assert!(summary.contains(" 0 rejected"), "{file}: {summary}");
        assert!(summary.ends_with("; 0 matches, 0 alerts"), "{file}: {summary}");
        assert!(run.stdout.is_empty());
    }
}

/// The normalized events of a few real records per format.
#[test]
fn real_records_normalize_to_the_golden_events() {
    let rule = test_rule("match-all");
    for (file, golden) in [
        ("evtx/LM_typical_IIS_webshell_sysmon_1_10_traces.evtx", "shared-iis-webshell-sysmon.events.json"),
        (
            "evtx/ID4688-4698-4699-5145-4624-ATexec_remote_task_creation.evtx",
            "shared-atexec-4688.events.json",
        ),
        ("evtx/271de298-cc0e-4842-acd8-079a0a99ea65.json", "shared-271de298-evtx-dump.events.json"),
        (
            "otrf/sysmon_log4shell_cve2021_44228_java_serialized_object.zip",
            "shared-log4shell-windowsevent.events.json",
        ),
        (
            "otrf/securityauditing_log4shell_cve2021_44228_java_serialized_object.zip",
            "shared-log4shell-securityevent.events.json",
        ),
        ("otrf/empire_shell_net_local_users.zip", "shared-empire-helk.events.json"),
    ] {
        let run = rulehost(&["eval", "--rules", &rule, "--matches", &shared(file)]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        let events: Vec<serde_json::Value> = run
            .json_lines()
            .into_iter()
            .map(|m| {
                let mut e = m["event"].clone();
                e["SourceFormat"] = m["source"]["format"].clone();
                e
            })
            .collect();
        assert_golden(golden, &(serde_json::to_string_pretty(&events).unwrap() + "\n"));
    }
}

/// Every shared EVTX file rendered as evtx_dump's JSON lines (`evtx_dump -o jsonl`), in a
/// scratch directory.
fn shared_evtx_as_jsonl(dir: &std::path::Path) -> Vec<(String, String)> {
    shared_evtx_rendered(dir, false)
}

/// [`shared_evtx_as_jsonl`], with attributes beside their elements when `separate`
/// (`evtx_dump --separate-json-attributes -o jsonl`).
pub(crate) fn shared_evtx_rendered(dir: &std::path::Path, separate: bool) -> Vec<(String, String)> {
    let settings = evtx::ParserSettings::default().separate_json_attributes(separate);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(shared("evtx")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "evtx") {
            continue;
        }
        let mut lines = String::new();
        let mut parser = evtx::EvtxParser::from_path(&path).unwrap().with_configuration(settings.clone());
        for record in parser.records_json_value() {
            lines.push_str(&serde_json::to_string(&record.unwrap().data).unwrap());
            lines.push('\n');
        }
        let jsonl = dir.join(path.file_name().unwrap()).with_extension("jsonl");
        std::fs::write(&jsonl, lines).unwrap();
        files.push((path.display().to_string(), jsonl.display().to_string()));
    }
    assert!(files.len() >= 10, "{files:?}");
    files
}

/// Both of evtx_dump's JSON shapes (attributes under `#attributes`, or beside their element
/// as `<element>_attributes`) read as the binary file does: every shared EVTX file gives
/// the same normalized events and the same summary, skipped kinds by name, in each.
#[test]
fn both_evtx_dump_shapes_read_as_the_binary_file() {
    let dir = tempfile::tempdir().unwrap();
    let rule = test_rule("match-all");
    let events = |run: &crate::util::Run| -> Vec<serde_json::Value> {
        run.json_lines()
            .into_iter()
            .map(|m| {
                let mut event = m["event"].clone();
                let object = event.as_object_mut().expect("an event object");
                object.retain(|name, _| !name.starts_with("Source"));
                event
            })
            .collect()
    };
    let mut compared = 0;
    for separate in [false, true] {
        let shape = dir.path().join(if separate { "separate" } else { "attributes" });
        std::fs::create_dir(&shape).unwrap();
        for (evtx, jsonl) in shared_evtx_rendered(&shape, separate) {
            let original = rulehost(&["eval", "--matches", "--rules", &rule, &evtx]);
            let rendered = rulehost(&["eval", "--matches", "--rules", &rule, &jsonl]);
            assert_eq!(rendered.code, 0, "{jsonl}: {}", rendered.stderr);
            assert!(!rendered.stderr.contains("rejected:"), "{jsonl}: {}", rendered.stderr);
            assert_eq!(rendered.summary(), original.summary(), "{jsonl} (separate attributes: {separate})");
            assert_eq!(events(&rendered), events(&original), "{jsonl} (separate attributes: {separate})");
            compared += events(&original).len();
        }
    }
    assert!(compared >= 2 * 190, "process creations compared: {compared}");
}

/// Lines dismissed by a scan of their EventID and Channel are counted exactly as the full
/// parse counts them: the same summary, the same normalized events, with and without
/// `--parse-all`, and the same counts as the EVTX file itself.
#[test]
fn dismissed_lines_count_as_the_full_parse_does() {
    let dir = tempfile::tempdir().unwrap();
    let rule = test_rule("match-all");
    let mut inputs = shared_evtx_as_jsonl(dir.path());
    inputs.push((data("windows/scenario.evtx-dump.jsonl"), data("windows/scenario.evtx-dump.jsonl")));
    let mut skipped = 0;
    for (evtx, jsonl) in &inputs {
        let scanned = rulehost(&["eval", "--matches", "--rules", &rule, jsonl]);
        let parsed = rulehost(&["eval", "--matches", "--rules", &rule, "--parse-all", jsonl]);
        assert_eq!(scanned.code, 0, "{jsonl}: {}", scanned.stderr);
        assert_eq!(scanned.stdout, parsed.stdout, "{jsonl}");
        assert_eq!(scanned.summary(), parsed.summary(), "{jsonl}");
        let original = rulehost(&["eval", "--matches", "--rules", &rule, evtx]);
        assert_eq!(scanned.counts(), original.counts(), "{jsonl}: {}", scanned.summary());
        skipped += scanned.counts().2;
    }
    assert!(skipped >= 30, "the files hold records of other kinds: {skipped}");
}

/// A line shaped as an evtx_dump record of a skipped kind that carries Defender records beside
/// its `Event`: the full parse reads those records, so the scan must not count the line as
/// skipped (it did, and the matching row in it was never evaluated).
#[test]
fn records_beside_an_event_of_a_skipped_kind_are_evaluated() {
    let sample =
        std::fs::read_to_string(crate::util::workspace().join("examples/soft-cell-sample.jsonl")).unwrap();
    let row = sample.lines().next().unwrap();
    let line =
        format!(r#"{{"Event":{{"System":{{"EventID":4624,"Channel":"Security"}}}},"records":[{row}]}}"#);
    let run = crate::util::rulehost_with_stdin(&["eval", "--matches", "-"], format!("{line}\n").as_bytes());
    assert_eq!(run.counts(), (1, 1, 0, 0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "the sample's first row matches Soft Cell: {}", run.stdout);
}

/// What `--parse-all` changes: a damaged line of a skipped kind is rejected, not skipped.
#[test]
fn parse_all_checks_the_syntax_of_lines_of_skipped_kinds() {
    let good = r##"{"Event":{"System":{"EventID":4624,"Channel":"Security","TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T00:00:00Z"}}}}}"##;
    // The scan walks the line's objects and strings, not its scalars.
    let damaged =
        r#"{"Event":{"System":{"EventID":4624,"Channel":"Security"},"EventData":{"Computer":nul}}}"#;
    let stdin = format!("{good}\n{damaged}\n");
    let scanned = crate::util::rulehost_with_stdin(&["eval", "-"], stdin.as_bytes());
    assert_eq!(scanned.counts(), (2, 0, 2, 0), "{}", scanned.stderr);
    let parsed = crate::util::rulehost_with_stdin(&["eval", "--parse-all", "-"], stdin.as_bytes());
    assert_eq!(parsed.counts(), (2, 0, 1, 1), "{}", parsed.stderr);
    assert!(parsed.stderr.contains("-:2: malformed JSON"), "{}", parsed.stderr);
}

/// A named pipe (or `<(zcat log.gz)`) is a path but not a file: it is read once, in
/// arrival order, and every record counts.
#[test]
fn a_named_pipe_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["windows/scenario.evtx-dump.jsonl", "windows/scenario.xml"] {
        let fifo = dir.path().join(std::path::Path::new(file).file_name().unwrap());
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let bytes = std::fs::read(crate::util::workspace().join(data(file))).unwrap();
        let writer = {
            let fifo = fifo.clone();
            // Blocks until the reader opens the pipe; a second open would find no writer.
            std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
        };
        let run = rulehost(&["eval", "--matches", &fifo.display().to_string()]);
        writer.join().unwrap();
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        assert_eq!(run.summary(), SCENARIO_SUMMARY.replace("1 alert", "0 alerts"), "{file}");
    }
}

/// The second pass over a Windows log evaluates the process creations that the first
/// pass kept, or, with `--kept-events-mib 0` (as past the limit), reads them again by
/// their lines' offsets or in a whole second read: the matches and the summary are the
/// same either way, lineage across files included.
#[test]
fn kept_and_read_again_process_creations_give_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let rule = test_rule("match-all");
    let mut runs: Vec<Vec<String>> = SCENARIO.iter().map(|file| vec![data(file)]).collect();
    let (child, parents) = (data("windows/lineage-child.xml"), data("windows/lineage-parents.xml"));
    runs.push(vec![child.clone(), parents.clone()]);
    runs.push(vec![parents, child]);
    // evtx_dump JSON lines (offsets), and the EVTX files and zips themselves (read again).
    for (evtx, jsonl) in shared_evtx_as_jsonl(dir.path()) {
        runs.push(vec![jsonl]);
        runs.push(vec![evtx]);
    }
    runs.push(vec![shared("otrf/empire_shell_net_local_users.zip")]);
    for inputs in &runs {
        let eval = |extra: &[&str]| {
            let mut args = vec!["eval", "--rules", &rule];
            args.extend_from_slice(extra);
            args.extend(inputs.iter().map(String::as_str));
            let run = rulehost(&args);
            assert_eq!(run.code, 0, "{inputs:?} {extra:?}: {}", run.stderr);
            run
        };
        let kept = eval(&["--matches"]);
        let read_again = eval(&["--matches", "--kept-events-mib", "0"]);
        assert!(!kept.stdout.is_empty() || kept.counts().1 == 0, "{inputs:?}: {}", kept.stderr);
        assert_eq!(kept.stdout, read_again.stdout, "{inputs:?}");
        assert_eq!(kept.summary(), read_again.summary(), "{inputs:?}");
        // Alerts: events whose parent is known are evaluated at once, the others held;
        // the alerts are those of evaluating all of them against the whole table.
        let alerts = eval(&["--window", "1d"]);
        let alerts_read_again = eval(&["--window", "1d", "--kept-events-mib", "0"]);
        assert_eq!(alerts.stdout, alerts_read_again.stdout, "{inputs:?}");
    }
}

/// Several EVTX files whose held events are read again (`--kept-events-mib 0`) are read
/// again several at once with two jobs, and taken in order: the matches, alerts and summary
/// are those of keeping every event, and of reading them again one file at a time.
#[test]
fn several_evtx_files_read_again_at_once_give_the_output_of_keeping_their_events() {
    let rule = test_rule("match-all");
    let mut files: Vec<String> = std::fs::read_dir(shared("evtx"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".evtx"))
        .collect();
    files.sort();
    // Twice over: the second copies' parents are known, their children's lineage too.
    let files: Vec<&str> = files.iter().chain(&files).map(String::as_str).collect();
    assert!(files.len() >= 20);
    for mode in [&["--matches"][..], &["--window", "1d"]] {
        let eval = |extra: &[&str]| {
            let args = [&["eval", "--rules", &rule][..], mode, extra, &files].concat();
            let run = rulehost(&args);
            assert_eq!(run.code, 0, "{mode:?} {extra:?}: {}", run.stderr);
            run
        };
        let kept = eval(&["--jobs", "2"]);
        let at_once = eval(&["--jobs", "2", "--kept-events-mib", "0"]);
        let one_by_one = eval(&["--jobs", "1", "--kept-events-mib", "0"]);
        assert!(kept.counts().0 > 100, "{}", kept.stderr);
        assert_eq!(at_once.stdout, kept.stdout, "{mode:?}");
        assert_eq!(at_once.summary(), kept.summary(), "{mode:?}");
        assert_eq!(one_by_one.stdout, kept.stdout, "{mode:?}");
    }
}

/// Held events past the budget are read again at their lines, after the kept ones: a small
/// event kept after a larger one went past the budget came out of reading order. Every
/// budget gives the matches of keeping every event.
#[test]
fn every_budget_for_held_events_gives_the_matches_in_reading_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for (_, jsonl) in shared_evtx_as_jsonl(dir.path()) {
        lines.push_str(&std::fs::read_to_string(jsonl).unwrap());
    }
    // Eight times over: about 1,600 process creations, most held (their parents are not in
    // the log), some 2.7 MiB of them.
    let log = dir.path().join("eight-times.jsonl");
    std::fs::write(&log, lines.repeat(8)).unwrap();
    let (log, rule) = (log.display().to_string(), test_rule("match-all"));
    for jobs in ["1", "2"] {
        let eval = |kept: &str| {
            let run = rulehost(&[
                "eval",
                "--jobs",
                jobs,
                "--matches",
                "--rules",
                &rule,
                "--kept-events-mib",
                kept,
                &log,
            ]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            run
        };
        let all_kept = eval("96");
        assert!(all_kept.stdout.lines().count() > 1500, "{}", all_kept.stderr);
        for kept in ["0", "1", "2"] {
            let run = eval(kept);
            assert!(
                run.stdout == all_kept.stdout,
                "--jobs {jobs} --kept-events-mib {kept}: other matches or order"
            );
            assert_eq!(run.summary(), all_kept.summary(), "--jobs {jobs} --kept-events-mib {kept}");
        }
    }
}

/// A Windows log whose children come before their parents (the parents' file read second,
/// or each line's records reversed): evaluated in one read, held children and all, a file
/// gives the alerts and the summary that its bytes give on standard input, and those of
/// the log in order.
#[test]
fn a_windows_file_gives_the_alerts_of_its_bytes_on_a_stream_and_of_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    let mut inputs: Vec<String> =
        shared_evtx_as_jsonl(dir.path()).into_iter().map(|(_, jsonl)| jsonl).collect();
    inputs.push(data("windows/scenario.evtx-dump.jsonl"));
    for jsonl in inputs {
        let text = std::fs::read_to_string(crate::util::workspace().join(&jsonl)).unwrap();
        let reversed: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
        let backwards = dir.path().join("backwards.jsonl");
        std::fs::write(&backwards, &reversed).unwrap();
        let backwards = backwards.display().to_string();
        let eval = ["eval", "--window", "all"];
        let in_order = rulehost(&[&eval[..], &[&jsonl]].concat());
        let from_file = rulehost(&[&eval[..], &[&backwards]].concat());
        let from_stream =
            crate::util::rulehost_with_stdin(&[&eval[..], &["-"]].concat(), reversed.as_bytes());
        assert_eq!(from_file.code, 0, "{jsonl}: {}", from_file.stderr);
        assert_eq!(from_file.stdout.replace(&backwards, "-"), from_stream.stdout, "{jsonl}");
        assert_eq!(from_file.summary(), from_stream.summary(), "{jsonl}");
        let without_sources = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| {
                    let mut alert: serde_json::Value = serde_json::from_str(l).unwrap();
                    alert.as_object_mut().unwrap().retain(|k, _| !k.starts_with("Source"));
                    alert
                })
                .collect()
        };
        assert_eq!(without_sources(&from_file.stdout), without_sources(&in_order.stdout), "{jsonl}");
        // Soft Cell's alert needs the grandparent: in the scenario, of processes logged
        // after their children once the lines are reversed.
        compared += from_file.stdout.lines().count();
    }
    assert!(compared >= 1, "alerts compared: {compared}");
}

/// Many skipped kinds: the summary line names the largest and counts the rest, and
/// `--summary-json` gives every count to machines.
#[test]
fn the_summary_shows_the_largest_kinds_and_the_json_has_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let mut args = vec!["eval".to_owned(), "--summary-json".to_owned(), json.display().to_string()];
    for folder in ["evtx", "otrf"] {
        let mut files: Vec<String> = std::fs::read_dir(shared(folder))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.ends_with(".evtx") || p.ends_with(".zip"))
            .collect();
        files.sort();
        args.extend(files);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = rulehost(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let kinds = summary["skipped"].as_object().expect("skipped kinds");
    assert!(kinds.len() > 20, "the shared logs hold many kinds: {}", kinds.len());
    let skipped: u64 = kinds.values().map(|n| n.as_u64().unwrap()).sum();
    let (read, evaluated, shown_skipped, rejected) = run.counts();
    assert_eq!(skipped, shown_skipped);
    assert_eq!(summary["read"].as_u64(), Some(read));
    assert_eq!(summary["evaluated"].as_u64(), Some(evaluated));
    assert_eq!(read, evaluated + skipped + rejected);
    // The line names the 8 largest kinds, then the rest in one count.
    let mut largest: Vec<(&String, u64)> = kinds.iter().map(|(k, n)| (k, n.as_u64().unwrap())).collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let line = run.summary();
    for (kind, n) in &largest[..8] {
        assert!(line.contains(&format!("{kind}: {n}")), "{kind}: {n} in {line}");
    }
    let rest: u64 = largest[8..].iter().map(|(_, n)| n).sum();
    let more = format!("{} more kinds: {rest}; --summary-json lists all)", largest.len() - 8);
    assert!(line.contains(&more), "{line}\nwanted: {more}");
    assert!(!line.contains(&format!("{}: {}", largest[8].0, largest[8].1)), "{line}");
}

#[test]
fn many_evtx_files_read_at_once_give_what_reading_them_one_by_one_gives() {
    // Three copies of every shared EVTX file, named so that each copy's files are read
    // together: with more than one job they are read several at a time, and the records must
    // still be taken in input order (matches, alerts, held children, the summary's counts).
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for copy in 0..3 {
        for entry in std::fs::read_dir(shared("evtx")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "evtx") {
                let name = format!("{copy}-{}", path.file_name().unwrap().to_string_lossy());
                std::fs::copy(&path, dir.path().join(&name)).unwrap();
                files.push(dir.path().join(name).to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    let rule = test_rule("match-all");
    // Without room to keep held events, their files are read again at the end: several at
    // once with more than one job.
    let again = ["--window", "1d", "--kept-events-mib", "0"];
    for extra in [&["--matches"][..], &["--window", "1d"], &["--matches", "--kept-events-mib", "0"], &again] {
        let eval = |jobs: &str| {
            let mut args = vec!["eval", "--jobs", jobs, "--rules", &rule];
            args.extend_from_slice(extra);
            args.extend(files.iter().map(String::as_str));
            let run = rulehost(&args);
            assert_eq!(run.code, 0, "{extra:?} --jobs {jobs}: {}", run.stderr);
            run
        };
        let one = eval("1");
        assert!(one.counts().0 > 0 && !one.stdout.is_empty(), "{}", one.stderr);
        for jobs in ["2", "3"] {
            let many = eval(jobs);
            assert_eq!(one.stdout, many.stdout, "{extra:?} --jobs {jobs}");
            assert_eq!(one.summary(), many.summary(), "{extra:?} --jobs {jobs}");
        }
    }
    // The directory itself: its log files in path order (a note beside them is named in a
    // warning and not read); a directory without logs is an error.
    std::fs::write(dir.path().join("notes.txt"), "collected by hand\n").unwrap();
    let named = rulehost(
        &[
            &["eval", "--matches", "--rules", &rule][..],
            &files.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    // The folder gives what naming its files gives.
    let eval_folder = || {
        let run = rulehost(&["eval", "--matches", "--rules", &rule, dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, named.stdout);
        assert_eq!(run.summary(), named.summary());
        run
    };
    let folder = eval_folder();
    assert!(
        folder.stderr.contains("left out 1 file(s) whose names tell no log format")
            && folder.stderr.contains("notes.txt"),
        "{}",
        folder.stderr
    );
    // A link back to the folder inside it: the folder is searched once, the link named in a
    // warning (followed, it led on until the system refused the path, and the run failed).
    std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
    let looped = eval_folder();
    assert!(
        looped.stderr.contains("lead through a link to a directory searched already")
            && looped.stderr.contains(&format!(
                "{} (searched as {})",
                dir.path().join("loop").display(),
                dir.path().display()
            )),
        "{}",
        looped.stderr
    );
    let empty = tempfile::tempdir().unwrap();
    let none = rulehost(&["eval", empty.path().to_str().unwrap()]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("no log file under this directory"), "{}", none.stderr);
}

/// A binary EVTX file made of every used chunk of the shared EVTX files, `rounds` times over,
/// after the first file's header (the evtx crate reads every chunk the file's size holds).
fn evtx_of_shared_chunks(rounds: usize) -> Vec<u8> {
    let mut paths: Vec<_> = std::fs::read_dir(shared("evtx"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "evtx"))
        .collect();
    paths.sort();
    let (mut header, mut chunks) = (Vec::new(), Vec::new());
    for path in paths {
        let bytes = std::fs::read(path).unwrap();
        if header.is_empty() {
            header = bytes[..4096].to_vec();
        }
        for chunk in bytes[4096..].chunks_exact(65536) {
            if chunk.starts_with(b"ElfChnk\0") {
                chunks.push(chunk.to_vec());
            }
        }
    }
    assert!(chunks.len() >= 10, "{} chunks", chunks.len());
    let mut file = header;
    for _ in 0..rounds {
        chunks.iter().for_each(|chunk| file.extend_from_slice(chunk));
    }
    file
}

#[test]
fn the_chunks_of_one_evtx_file_parsed_on_several_threads_give_what_one_thread_gives() {
    // One file of 54 chunks, read with one job (on the reading thread) and with two and
    // three (chunks parsed by workers): the same matches in the same order, the same
    // alerts, the same summary and warnings. Also with a chunk whose checksum fails in the
    // middle, and with the file cut inside its last chunk.
    let dir = tempfile::tempdir().unwrap();
    let whole = evtx_of_shared_chunks(3);
    let mut damaged = whole.clone();
    damaged[4096 + 7 * 65536 + 600..4096 + 7 * 65536 + 4600].fill(0xff);
    let mut cut = whole.clone();
    cut.truncate(whole.len() - 30_000);
    let rule = test_rule("match-all");
    for (name, bytes) in [("whole.evtx", &whole), ("damaged.evtx", &damaged), ("cut.evtx", &cut)] {
        let path = dir.path().join(name).to_string_lossy().into_owned();
        std::fs::write(&path, bytes).unwrap();
        for extra in [&["--matches"][..], &["--window", "1d"]] {
            let eval = |jobs: &str| {
                let mut args = vec!["eval", "--jobs", jobs, "--max-warnings", "0", "--rules", &rule];
                args.extend_from_slice(extra);
                args.push(&path);
                rulehost(&args)
            };
            let one = eval("1");
            assert!(one.counts().1 > 0, "{name}: {}", one.stderr);
            for jobs in ["2", "3"] {
                let many = eval(jobs);
                assert_eq!(
                    (one.code, &one.stdout),
                    (many.code, &many.stdout),
                    "{name} {extra:?} --jobs {jobs}"
                );
                assert_eq!(one.stderr, many.stderr, "{name} {extra:?} --jobs {jobs}");
            }
            if name != "whole.evtx" {
                assert!(one.counts().3 > 0, "{name}: a rejection is reported: {}", one.stderr);
            }
        }
    }
}
