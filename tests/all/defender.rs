//! Defender DeviceProcessEvents in its four export shapes.

use crate::util::{assert_golden, data, rulehost, rulehost_with_stdin};

/// The same nine events in every shape; the streaming file adds one DeviceNetworkEvents
/// record. Five match: four on web01 between 10:00 and 11:00 (one through the grandparent),
/// one on app02 after 11:00.
const SHAPES: &[&str] =
    &["defender-rows.jsonl", "defender-streaming.jsonl", "defender-api.json", "defender-export.csv"];

#[test]
fn every_shape_gives_the_golden_alerts() {
    for shape in SHAPES {
        let run = rulehost(&["eval", &data(shape)]);
        assert_eq!(run.code, 0, "{shape}: {}", run.stderr);
        assert_golden("defender.alerts.jsonl", &run.stdout);
        assert_eq!(run.json_lines()[0]["RuleDigest"], crate::util::bundled_digest().as_str());
        let skipped = if shape.contains("streaming") { 1 } else { 0 };
        assert_eq!(
            run.summary(),
            format!(
                "rulehost: {} records read: 9 evaluated, {skipped} skipped{}, 0 rejected; 5 matches, 2 alerts",
                9 + skipped,
                if skipped == 1 { " (DeviceNetworkEvents: 1)" } else { "" }
            ),
            "{shape}"
        );
    }
}

#[test]
fn matches_are_golden_and_name_their_source() {
    let run = rulehost(&["eval", "--matches", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_golden("defender-rows.matches.jsonl", &run.stdout);

    let rows = run.json_lines();
    let report_ids = |lines: &[serde_json::Value]| -> Vec<String> {
        lines.iter().map(|m| m["event"]["ReportId"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(report_ids(&rows), ["1101", "1102", "1104", "1105", "2201"]);
    for shape in &SHAPES[1..] {
        let run = rulehost(&["eval", "--matches", &data(shape)]);
        let lines = run.json_lines();
        assert_eq!(report_ids(&lines), report_ids(&rows), "{shape}");
        for (line, row) in lines.iter().zip(&rows) {
            assert_eq!(line["event"], row["event"], "{shape}: the normalized event is the same");
            assert_eq!(line["source"]["file"], data(shape).as_str());
        }
    }
    let api = rulehost(&["eval", "--matches", &data("defender-api.json")]).json_lines();
    assert_eq!(api[2]["source"]["record"], 4, "API rows are numbered by record");
    assert_eq!(api[2]["source"]["format"], "defender-api");
    let csv = rulehost(&["eval", "--matches", &data("defender-export.csv")]).json_lines();
    assert_eq!(csv[0]["source"]["line"], 2, "CSV rows by line, after the header");
    let streaming = rulehost(&["eval", "--matches", &data("defender-streaming.jsonl")]).json_lines();
    assert_eq!(streaming[3]["source"]["line"], 6, "records of one `records` line share it");
    assert_eq!(streaming[3]["source"]["format"], "defender-streaming");
}

#[test]
fn stdin_is_read_when_no_input_or_dash() {
    let input = crate::util::read_data("defender-rows.jsonl").into_bytes();
    for args in [&["eval"][..], &["eval", "-"][..]] {
        let run = rulehost_with_stdin(args, &input);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_golden("defender.alerts.jsonl", &run.stdout);
    }
    let run = rulehost_with_stdin(&["eval", "--matches", "-"], &input);
    assert_eq!(run.json_lines()[0]["source"]["file"], "-");
}

#[test]
fn one_window_over_everything() {
    let run = rulehost(&["eval", "--window", "all", &data("defender-rows.jsonl")]);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 2, "one per device: {}", run.stdout);
    assert_eq!(alerts[0]["WindowStart"], "2024-05-01T10:15:02.123Z", "the input's first event");
    assert_eq!(alerts[0]["WindowEnd"], "2024-05-01T11:12:00.001Z", "just past the input's last event");
    assert_eq!(alerts[0]["MatchCount"], 4);
    assert_eq!(alerts[1]["DeviceName"], "app02");

    let run = rulehost(&["eval", "--window", "1d", &data("defender-rows.jsonl")]);
    let alerts = run.json_lines();
    assert_eq!(alerts[0]["WindowStart"], "2024-05-01T00:00:00Z");
    assert_eq!(alerts[0]["WindowEnd"], "2024-05-02T00:00:00Z");
}

#[test]
fn the_table_is_aligned_for_people() {
    let run = rulehost(&["eval", "--format", "table", &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("WindowStart"));
    let rows: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("2024-")).collect();
    assert_eq!(rows.len(), 2, "two alerts:\n{}", run.stdout);
    let column = lines[0].find("DeviceName").unwrap();
    assert_eq!(&rows[0][column..column + 17], "web01.contoso.com");
    assert_eq!(&rows[1][column..column + 5], "app02");
    // A set of command lines is one per line, in the same column.
    let commands = lines[0].find("set_ProcessCommandLine").unwrap();
    assert_eq!(&lines[1][commands..commands + 22], "cmd.exe /c whoami /all");
    assert_eq!(&lines[2][commands..commands + 24], "cmd.exe /c ipconfig /all");
}

#[test]
fn the_bundled_sample_raises_an_alert() {
    let sample = crate::util::workspace().join("examples/soft-cell-sample.jsonl");
    let run = rulehost(&["eval", &sample.display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 1, "{}", run.stdout);
    assert_eq!(alerts[0]["HostName"], "web01");
    assert_eq!(alerts[0]["MatchCount"], 3, "whoami, ipconfig, and certutil through the grandparent");
    assert_eq!(alerts[0]["ReportIds"], serde_json::json!(["3301", "3302", "3304"]));
}

#[test]
fn the_output_is_the_same_whatever_the_number_of_jobs() {
    let mut big = String::new();
    let rows = crate::util::read_data("defender-rows.jsonl");
    for round in 0..500 {
        for line in rows.lines() {
            big.push_str(&line.replace("\"ReportId\": 1", &format!("\"ReportId\": {round}1")));
            big.push('\n');
        }
        if round == 250 {
            big.push_str("{not json\n\n");
        }
    }
    let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    std::fs::write(file.path(), &big).unwrap();
    let path = file.path().display().to_string();
    // Soft Cell beside a rule that matches everything and one that fails every call, in
    // small batches: the failing rule is quarantined after its third batch, while the
    // workers may already be evaluating later ones.
    let dir = tempfile::tempdir().unwrap();
    let soft_cell = crate::util::write_rule(dir.path(), "soft-cell.wasm", rulehost::rules::BUNDLED_SOFT_CELL);
    let (match_all, panic) = (crate::util::test_rule("match-all"), crate::util::test_rule("panic"));
    let three_rules =
        ["--rules", &soft_cell, "--rules", &match_all, "--rules", &panic, "--batch-size", "100", "--matches"];
    // Nine windows of a minute per rule, closed at the end and summarized on several
    // threads: a rule whose every summary fails is quarantined after its third window, while
    // other threads may have summarized its later ones already.
    let giant_output = crate::util::test_rule("giant-output");
    let windows = ["--rules", &soft_cell, "--rules", &match_all, "--rules", &giant_output, "--window", "1m"];
    for (input, extra) in [
        (path.as_str(), &[][..]),
        (path.as_str(), &["--matches"][..]),
        (path.as_str(), &three_rules[..]),
        (path.as_str(), &three_rules[..8]),
        (path.as_str(), &windows[..]),
        ("tests/data/defender-streaming.jsonl", &[][..]),
        ("tests/data/windows/scenario.helk.jsonl", &["--matches"][..]),
    ] {
        let run = |jobs: &str| {
            let mut args = vec!["eval", "--jobs", jobs];
            args.extend(extra);
            args.push(input);
            rulehost(&args)
        };
        let one = run("1");
        assert_eq!(one.code, 0, "{}", one.stderr);
        for jobs in ["2", "3"] {
            let many = run(jobs);
            assert!(many.stdout == one.stdout, "{input} {extra:?}: --jobs {jobs} differs from --jobs 1");
            assert_eq!(many.stderr, one.stderr, "{input} {extra:?}");
        }
    }
}

#[test]
fn a_file_evaluated_in_blocks_gives_what_the_same_lines_read_as_a_stream_give() {
    // A regular file of Defender rows is read in 1 MiB blocks, each evaluated on the thread
    // that parsed it; standard input is read as a stream and evaluated in input order. Both
    // must give the same output. Windows events among the rows (their grandparents known
    // only to the lineage table, in input order), a malformed line, and ~4 MiB in all.
    let text = crate::util::defender_rows_with_windows(480, 60, 301);
    assert!(text.len() > 4 << 20, "{} bytes", text.len());
    let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let path = file.path().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let soft_cell = crate::util::write_rule(dir.path(), "soft-cell.wasm", rulehost::rules::BUNDLED_SOFT_CELL);
    let match_all = crate::util::test_rule("match-all");
    let with_match_all = ["--rules", &soft_cell, "--rules", &match_all, "--matches"];
    for extra in [&[][..], &["--matches"][..], &with_match_all[..]] {
        for jobs in ["1", "2"] {
            let args = |input| [&["eval", "--jobs", jobs][..], extra, &[input]].concat();
            let from_file = rulehost(&args(&path));
            let from_stream = rulehost_with_stdin(&args("-"), text.as_bytes());
            assert_eq!(from_file.code, 0, "{}", from_file.stderr);
            let least = if extra.is_empty() { 3 } else { 2000 };
            assert!(from_file.stdout.lines().count() >= least, "{extra:?}: {}", from_file.stdout);
            assert!(
                from_file.stdout.replace(&path, "-") == from_stream.stdout,
                "{extra:?} --jobs {jobs}: the file's output differs from the stream's"
            );
            assert_eq!(from_file.stderr.replace(&path, "-"), from_stream.stderr, "{extra:?} --jobs {jobs}");
        }
    }
}

/// `count` rows matching Soft Cell on `device`, each with a command line and report id of
/// its own (prefixed `id_prefix`), a millisecond apart from `start_ms` past 03:00.
fn flood(device: &str, count: usize, id_prefix: u64, start_ms: usize) -> Vec<serde_json::Value> {
    soft_cell_rows(count, |_| device.to_owned(), id_prefix, start_ms)
}

/// `count` rows matching Soft Cell, the `i`th on the device `device(i)`, each with a command
/// line and report id of its own (prefixed `id_prefix`), a millisecond apart from
/// `start_ms` past 03:00.
fn soft_cell_rows(
    count: usize,
    device: impl Fn(usize) -> String,
    id_prefix: u64,
    start_ms: usize,
) -> Vec<serde_json::Value> {
    let sample =
        std::fs::read_to_string(crate::util::workspace().join("examples/soft-cell-sample.jsonl")).unwrap();
    let base: serde_json::Value = serde_json::from_str(sample.lines().next().unwrap()).unwrap();
    (0..count)
        .map(|i| {
            let mut row = base.clone();
            let ms = start_ms + i;
            let time = format!("2024-06-12T03:{:02}:{:02}.{:03}Z", ms / 60_000, ms / 1000 % 60, ms % 1000);
            let device = device(i);
            row["DeviceId"] = format!("id-{device}").into();
            row["DeviceName"] = device.into();
            row["Timestamp"] = time.clone().into();
            row["ProcessCreationTime"] = time.into();
            row["ReportId"] = (id_prefix + i as u64).into();
            row["ProcessCommandLine"] =
                format!("cmd.exe /c \"cd /d c:\\inetpub\\wwwroot\\&whoami /{i}&echo [S]&cd&echo [E]\"")
                    .into();
            row
        })
        .collect()
}

fn as_lines(rows: &[serde_json::Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// One device matching one rule 25,000 times in a window is summarized in parts of about
/// `--max-window-matches` as they fill, each alerted once, with the part's number; another
/// device's few matches in the same window make one alert of the whole window. Held to the
/// end, the flood's window made one alert of every match (17 MB for a million).
#[test]
fn a_device_filling_a_window_is_alerted_in_parts_and_the_others_whole() {
    let mut rows = flood("web01.contoso.com", 25_000, 1_000_000, 0);
    let quiet = flood("app02.contoso.com", 5, 9_000_000, 1);
    // The quiet device's matches at the start, in the middle and after the flood.
    for (at, row) in [0, 1, 12_000, 12_001, 25_000].into_iter().zip(&quiet).rev() {
        rows.insert(at, row.clone());
    }
    let text = as_lines(&rows);
    let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let path = file.path().display().to_string();
    let run = |jobs: &str| rulehost(&["eval", "--jobs", jobs, "--max-window-matches", "10000", &path]);
    let one = run("1");
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(run("2").stdout, one.stdout, "--jobs 2 against --jobs 1");
    // The same lines on a stream (batches of their own, not the file's blocks).
    let streamed = rulehost_with_stdin(&["eval", "--max-window-matches", "10000"], text.as_bytes());
    for out in [&one, &streamed] {
        let alerts = out.json_lines();
        let of = |device: &str| -> Vec<&serde_json::Value> {
            alerts.iter().filter(|a| a["DeviceName"] == device).collect()
        };
        let quiet_alerts = of("app02.contoso.com");
        assert_eq!(quiet_alerts.len(), 1, "{quiet_alerts:?}");
        assert_eq!(quiet_alerts[0]["MatchCount"], 5);
        assert!(quiet_alerts[0].get("WindowPart").is_none(), "{}", quiet_alerts[0]);
        let parts = of("web01.contoso.com");
        assert_eq!(parts.len(), 3, "{}", out.stderr);
        let mut ids: Vec<u64> = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            assert_eq!(part["WindowPart"], n + 1);
            assert_eq!(part["WindowStart"], "2024-06-12T03:00:00Z");
            assert_eq!(part["WindowEnd"], "2024-06-12T04:00:00Z");
            let count = part["MatchCount"].as_u64().unwrap();
            // A part is summarized when the batch that filled it is taken in.
            if n < 2 {
                assert!((10_000..10_000 + 1024).contains(&count), "part {}: {count}", n + 1);
            }
            let commands = part["set_ProcessCommandLine"].as_array().unwrap();
            assert_eq!(commands.len() as u64, count);
            let part_ids: Vec<u64> = part["ReportIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().parse().unwrap())
                .collect();
            assert_eq!(part_ids.len() as u64, count);
            // Parts follow one another in time.
            if n > 0 {
                assert!(parts[n - 1]["LastTimestamp"].as_str() < part["FirstTimestamp"].as_str());
            }
            ids.extend(part_ids);
        }
        // Every match in one part, once.
        assert_eq!(ids, (1_000_000..1_025_000).collect::<Vec<u64>>());
    }
}

/// A window of 50,000 distinct command lines on one device is summarized within the call's
/// deadline: the guest's `make_set` compared each value with every one taken, and 10,000
/// took the call past it, so that the window gave no alert at all.
#[test]
fn a_window_of_fifty_thousand_distinct_command_lines_makes_its_alert() {
    let text = as_lines(&flood("web01.contoso.com", 50_000, 1, 0));
    let out = rulehost_with_stdin(&["eval", "--max-window-matches", "100000"], text.as_bytes());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let alerts = out.json_lines();
    assert_eq!(alerts.len(), 1, "{}", out.stderr);
    assert_eq!(alerts[0]["MatchCount"], 50_000);
    assert!(alerts[0].get("WindowPart").is_none());
    let commands = alerts[0]["set_ProcessCommandLine"].as_array().unwrap();
    assert_eq!(commands.len(), 50_000);
    assert_eq!(
        commands[49_999],
        "cmd.exe /c \"cd /d c:\\inetpub\\wwwroot\\&whoami /49999&echo [S]&cd&echo [E]\""
    );
}

/// Alerts by device name, each device's in order; asserting that each covers one match.
fn single_match_alerts(
    alerts: &[serde_json::Value],
) -> std::collections::BTreeMap<String, Vec<&serde_json::Value>> {
    let mut by_device: std::collections::BTreeMap<String, Vec<&serde_json::Value>> = Default::default();
    for alert in alerts {
        assert_eq!(alert["MatchCount"], 1, "{alert}");
        by_device.entry(alert["DeviceName"].as_str().unwrap().to_owned()).or_default().push(alert);
    }
    by_device
}

/// Open windows past `--max-window-mib` (forged device names, each under the cap of one
/// device) are summarized before their end, those holding the most first, each device's
/// matches a part: every device is alerted once, the early ones with `WindowPart` 1, and
/// the run says it. Held to the end, 400,000 such devices took 810 MB.
#[test]
fn windows_past_their_memory_budget_are_summarized_early_each_device_once() {
    // Four windows of an hour, 7,500 devices each.
    let rows: Vec<serde_json::Value> = (0..4)
        .flat_map(|hour| {
            soft_cell_rows(7_500, |i| format!("h{hour}-{i:05}.contoso.com"), hour as u64 * 10_000, 0)
                .into_iter()
                .map(move |mut row| {
                    for field in ["Timestamp", "ProcessCreationTime"] {
                        let time =
                            row[field].as_str().unwrap().replacen("T03:", &format!("T0{}:", 3 + hour), 1);
                        row[field] = time.into();
                    }
                    row
                })
        })
        .collect();
    let text = as_lines(&rows);
    let file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let path = file.path().display().to_string();
    let run = |jobs: &str, mib: &str| rulehost(&["eval", "--jobs", jobs, "--max-window-mib", mib, &path]);
    let whole = run("1", "256");
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert!(!whole.stderr.contains("before their end"), "{}", whole.stderr);
    let cut = run("1", "2");
    assert_eq!(cut.code, 0, "{}", cut.stderr);
    assert_eq!(run("2", "2").stdout, cut.stdout, "--jobs 2 against --jobs 1");
    assert!(cut.stderr.contains("windows summarized before their end"), "{}", cut.stderr);
    let alerts = cut.json_lines();
    let by_device = single_match_alerts(&alerts);
    assert_eq!(by_device.len(), 30_000);
    assert!(by_device.values().all(|a| a.len() == 1));
    let early = alerts.iter().filter(|a| a["WindowPart"] == 1).count();
    assert!((7_500..30_000).contains(&early), "{early} alerts summarized early");
    assert!(alerts.iter().all(|a| a.get("WindowPart").is_none() || a["WindowPart"] == 1));
    // But for the parts, the alerts of a whole run.
    let strip = |alerts: Vec<serde_json::Value>| {
        let mut alerts: Vec<String> = alerts
            .into_iter()
            .map(|mut a| {
                a.as_object_mut().unwrap().shift_remove("WindowPart");
                a.to_string()
            })
            .collect();
        alerts.sort();
        alerts
    };
    assert_eq!(strip(alerts), strip(whole.json_lines()));
}

/// A window's matches are summarized in calls of whole devices, up to a part's matches
/// each: a window of 10,000 devices under `--max-alerts 100` is alerted whole, each device
/// once, in the order of one call. In one call, the window's alerts were past what a call
/// may return, and past what splitting it in 64 parts could fit, and the window gave none.
#[test]
fn a_window_of_many_devices_is_summarized_in_calls_of_whole_devices() {
    let mut rows = soft_cell_rows(10_000, |i| format!("d{:05}.contoso.com", (i * 7_919) % 10_000), 0, 0);
    rows.extend(flood("web01.contoso.com", 3, 50_000, 20_000));
    let text = as_lines(&rows);
    let args = ["eval", "--max-alerts", "100", "--max-window-matches", "100"];
    let out = rulehost_with_stdin(&args, text.as_bytes());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("not summarized"), "{}", out.stderr);
    let alerts = out.json_lines();
    assert_eq!(alerts.len(), 10_001);
    assert!(alerts.iter().all(|a| a.get("WindowPart").is_none()));
    // In the order of the devices' first matches, as one call groups them.
    let devices: Vec<&str> = alerts.iter().map(|a| a["DeviceName"].as_str().unwrap()).collect();
    let expected: Vec<String> =
        (0..10_000).map(|i| format!("d{:05}.contoso.com", (i * 7_919) % 10_000)).collect();
    assert_eq!(devices[..10_000], expected.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert_eq!(alerts[10_000]["MatchCount"], 3);
    let by_device = single_match_alerts(&alerts[..10_000]);
    assert_eq!(by_device.len(), 10_000);
}
