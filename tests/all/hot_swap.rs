//! `rulehost run`: a stream of more than a million events while the rules directory
//! changes under it, checked from the output alone.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use rulehost::rules::BUNDLED_SOFT_CELL;

use crate::util::{command, rulehost, test_rule};

/// Events per chunk, and chunks: a swap (or a refused candidate) after each chunk.
const CHUNK: u64 = 20_000;
const CHUNKS: u64 = 56;

/// The lines of `child`'s stderr as they come, read by a thread of their own.
fn stderr_lines(child: &mut Child) -> (Receiver<String>, std::thread::JoinHandle<()>) {
    let (tx, lines) = channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (lines, reader)
}

/// `rulehost run ARGS --input-format jsonl -`, logging at info, writing to `output`; its
/// stderr lines as they come.
fn spawn_run(
    args: &[&str],
    output: &tempfile::NamedTempFile,
) -> (Child, Receiver<String>, std::thread::JoinHandle<()>) {
    let mut child = command()
        .env("RULEHOST_LOG", "info")
        .arg("run")
        .args(args)
        .args(["--input-format", "jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(output.reopen().unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, reader) = stderr_lines(&mut child);
    (child, lines, reader)
}

/// Waits for a stderr line containing one of `needles`, returning it.
fn wait_for(lines: &Receiver<String>, needles: &[&str], seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line.clone());
            if needles.iter().any(|n| line.contains(n)) {
                return line;
            }
        }
    }
    panic!("no {needles:?} in stderr:\n{}", seen.join("\n"));
}

/// Replaces `dir/versioned.wasm` the way a deployment does: write aside, then rename.
fn deploy(dir: &Path, bytes: &[u8]) {
    let aside = dir.join("versioned.wasm.partial");
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(aside, dir.join("versioned.wasm")).unwrap();
}

#[test]
fn every_event_is_evaluated_once_by_one_version_through_fifty_swaps() {
    let keys = tempfile::tempdir().unwrap();
    let keys_dir = keys.path().display().to_string();
    assert_eq!(rulehost(&["key", "generate", "--name", "platform", "--dir", &keys_dir]).code, 0);
    let secret = keys.path().join("platform.key").display().to_string();
    let public = keys.path().join("platform.pub").display().to_string();
    let signed = |source: &str, name: &str| -> Vec<u8> {
        let out = keys.path().join(name);
        let run = rulehost(&["sign", "--key", &secret, "-o", &out.display().to_string(), source]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        std::fs::read(out).unwrap()
    };
    let v1 = signed(&test_rule("versioned-1"), "v1.wasm");
    let v2 = signed(&test_rule("versioned-2"), "v2.wasm");
    let unsigned = std::fs::read(test_rule("versioned-2")).unwrap();
    let soft_cell_path = keys.path().join("soft-cell-unsigned.wasm");
    std::fs::write(&soft_cell_path, BUNDLED_SOFT_CELL).unwrap();
    let soft_cell = signed(&soft_cell_path.display().to_string(), "soft-cell.wasm");

    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("soft-cell.wasm"), soft_cell).unwrap();
    std::fs::write(rules.path().join("versioned.wasm"), &v1).unwrap();
    let output = tempfile::NamedTempFile::new().unwrap();
    let rules_dir = rules.path().display().to_string();
    let (mut child, lines, reader) = spawn_run(
        &["--rules", &rules_dir, "--trust", &public, "--window", "1m", "--allowed-lateness", "1s"],
        &output,
    );
    let mut seen = Vec::new();
    wait_for(&lines, &["rule loaded"], &mut seen);
    wait_for(&lines, &["rule loaded"], &mut seen);

    let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
    let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().timestamp_millis();
    let (mut swaps, mut refusals) = (0, 0);
    let mut current = 1;
    for chunk in 0..CHUNKS {
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            let time = chrono::DateTime::from_timestamp_millis(start + i as i64).unwrap();
            writeln!(
                stdin,
                r#"{{"Timestamp":"{}","DeviceId":"d1","DeviceName":"host1","FileName":"x.exe","ReportId":{}}}"#,
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                i + 1
            )
            .unwrap();
        }
        stdin.flush().unwrap();
        // Every seventh change is a broken or an unsigned candidate: refused, the running
        // version stays.
        match chunk % 7 {
            3 => {
                deploy(rules.path(), b"\0asm garbage");
                let line = wait_for(&lines, &["candidate refused", "rule swapped"], &mut seen);
                assert!(line.contains("candidate refused"), "{line}");
                refusals += 1;
            }
            5 => {
                deploy(rules.path(), &unsigned);
                let line = wait_for(&lines, &["candidate refused", "rule swapped"], &mut seen);
                assert!(line.contains("candidate refused") && line.contains("unsigned"), "{line}");
                refusals += 1;
            }
            _ => {
                current = if current == 1 { 2 } else { 1 };
                deploy(rules.path(), if current == 1 { &v1 } else { &v2 });
                let line = wait_for(&lines, &["rule swapped", "candidate refused"], &mut seen);
                assert!(line.contains("rule swapped"), "{line}");
                swaps += 1;
            }
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    assert!(status.success(), "{}", seen.join("\n"));
    assert!(swaps >= 40 && swaps + refusals >= 50, "{swaps} swaps, {refusals} refusals");

    let total = CHUNK * CHUNKS;
    assert!(total >= 1_000_000);
    // From the output alone: every ReportId in exactly one alert of the versioned rule,
    // and every alert tagged (by the rule itself) with the version the host names.
    let text = std::fs::read_to_string(output.path()).unwrap();
    let mut seen_ids = vec![0u8; total as usize + 1];
    let mut versions = std::collections::BTreeSet::new();
    for line in text.lines() {
        let alert: serde_json::Value = serde_json::from_str(line).unwrap();
        if alert["RuleId"] != "test-versioned" {
            continue;
        }
        assert_eq!(
            alert["tag"], alert["RuleVersion"],
            "the alert names the version that made it: {line:.300}"
        );
        versions.insert(alert["RuleVersion"].as_str().unwrap().to_owned());
        for id in alert["ReportIds"].as_array().unwrap() {
            let id: usize = id.as_str().unwrap().parse().unwrap();
            seen_ids[id] += 1;
        }
    }
    let missing = seen_ids[1..].iter().filter(|&&n| n == 0).count();
    let twice = seen_ids[1..].iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, twice), (0, 0), "every event exactly once");
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["1.0.0", "2.0.0"]);
    // Both rules evaluated every event once, as their counters say at exit.
    let stats: Vec<&String> = seen.iter().filter(|l| l.contains("stats at exit")).collect();
    assert_eq!(stats.len(), 2, "{}", seen.join("\n"));
    for line in stats {
        assert!(line.contains(&format!(": {total} events,")), "{line}");
    }
    let versioned = seen.iter().find(|l| l.contains("stats at exit: rule test-versioned")).unwrap();
    assert!(versioned.contains(&format!("{swaps} swaps")), "{versioned}");
}

#[test]
fn matches_stream_as_they_are_found() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("soft-cell.wasm"), BUNDLED_SOFT_CELL).unwrap();
    let mut child = command()
        .args(["run", "--rules", &rules.path().display().to_string(), "--matches", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let rows = crate::util::read_data("defender-rows.jsonl");
    // One matching row, and the stream stays open: its match must come out anyway.
    stdin.write_all(rows.lines().next().unwrap().as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let matched: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(matched["event"]["ReportId"], "1101");
    assert_eq!(matched["rule_version"], "1.0.0");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn rules_come_and_go_and_signals_are_obeyed() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("soft-cell.wasm"), BUNDLED_SOFT_CELL).unwrap();
    let mut child = command()
        .env("RULEHOST_LOG", "info")
        .args([
            "run",
            "--rules",
            &rules.path().display().to_string(),
            "--window",
            "1h",
            "--stats-interval",
            "1",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, _reader) = stderr_lines(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, &["rule loaded"], &mut seen);
    // A new id is added; a removed file unloads its rule.
    std::fs::copy(test_rule("match-all"), rules.path().join("match-all.wasm")).unwrap();
    let line = wait_for(&lines, &["rule loaded", "refused"], &mut seen);
    assert!(line.contains("rule loaded") && line.contains("test-match-all"), "{line}");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(crate::util::read_data("defender-rows.jsonl").as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The periodic counters tell when the nine events have been evaluated.
    while !wait_for(&lines, &["stats so far: rule test-match-all"], &mut seen).contains("): 9 events") {}
    std::fs::remove_file(rules.path().join("match-all.wasm")).unwrap();
    let line = wait_for(&lines, &["unloaded"], &mut seen);
    assert!(line.contains("test-match-all"), "{line}");
    // SIGHUP rescans; SIGTERM flushes the open windows and exits cleanly, although the
    // input is still open.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for(&lines, &["rescanning the rules directory"], &mut seen);
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut text).unwrap();
    let alerts: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let soft_cell: Vec<&serde_json::Value> =
        alerts.iter().filter(|a| a["RuleId"] == "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7").collect();
    assert_eq!(soft_cell.len(), 2, "the open windows were flushed at SIGTERM: {text}");
    let match_all: Vec<&serde_json::Value> =
        alerts.iter().filter(|a| a["RuleId"] == "test-match-all").collect();
    assert_eq!(
        match_all.iter().map(|a| a["MatchCount"].as_u64().unwrap()).sum::<u64>(),
        9,
        "the removed rule summarized what it had matched before it went: {text}"
    );
    drop(stdin);
}

/// A Sysmon process creation as evtx_dump writes it, at `minute` past midnight.
fn sysmon_line(record: u64, minute: u32, image: &str, command_line: &str, parent: &str) -> String {
    serde_json::json!({"Event": {
        "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "EventID": 1,
            "TimeCreated": {"#attributes": {"SystemTime": format!("2024-05-01T00:{minute:02}:00.000Z")}},
            "EventRecordID": record,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": "web01",
        },
        "EventData": {"Image": image, "CommandLine": command_line, "ParentImage": parent, "User": "IIS APPPOOL\\site"},
    }})
    .to_string()
}

fn marker_rule(marker: &str, modified: &str) -> String {
    format!(
        "title: Marker\nid: 0b9a1c5e-0000-4000-8000-000000000001\nstatus: test\nmodified: {modified}\n\
         logsource:\n  category: process_creation\n  product: windows\n\
         detection:\n  selection:\n    CommandLine|contains: '{marker}'\n  condition: selection\nlevel: high\n"
    )
}

#[test]
fn sigma_files_are_recompiled_and_swapped_as_a_pack_and_unchanged_rules_keep_their_windows() {
    let rules = tempfile::tempdir().unwrap();
    // The ten web-server rules, one level down: Sigma files are found recursively.
    let nested = rules.path().join("webserver");
    std::fs::create_dir(&nested).unwrap();
    for entry in std::fs::read_dir(crate::util::shared("sigma")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            std::fs::copy(&path, nested.join(path.file_name().unwrap())).unwrap();
        }
    }
    let marker = rules.path().join("marker.yml");
    let output = tempfile::NamedTempFile::new().unwrap();
    let rules_dir = rules.path().display().to_string();
    let (mut child, lines, reader) =
        spawn_run(&["--rules", &rules_dir, "--window", "1h", "--max-batch-delay-ms", "10"], &output);
    let mut seen = Vec::new();
    let loaded = wait_for(&lines, &["pack loaded"], &mut seen);
    assert!(loaded.contains("rules=10"), "{loaded}");
    let mut stdin = child.stdin.take().unwrap();
    let mut send = move |line: String| {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        // Past --max-batch-delay-ms, so that the event is evaluated before the next change.
        std::thread::sleep(Duration::from_millis(300));
    };
    let w3wp = "C:\\Windows\\System32\\inetsrv\\w3wp.exe";
    let cmd = "C:\\Windows\\System32\\cmd.exe";
    send(sysmon_line(1, 1, cmd, "cmd /c whoami", w3wp));

    // A new file: the pack is rebuilt with it; the ten others are unchanged.
    std::fs::write(&marker, marker_rule("marker-one", "2024-01-01")).unwrap();
    let swapped = wait_for(&lines, &["pack swapped"], &mut seen);
    assert!(
        swapped.contains("rules=11") && swapped.contains("unchanged=10") && swapped.contains("added=1"),
        "{swapped}"
    );
    send(sysmon_line(2, 2, cmd, "cmd /c marker-one", "C:\\Windows\\explorer.exe"));

    // A file that no longer compiles: refused, its last good version stays.
    std::fs::write(&marker, "title: [unclosed\n").unwrap();
    let refused = wait_for(&lines, &["candidate refused"], &mut seen);
    assert!(
        refused.contains("marker.yml") && refused.contains("last version that compiled stays"),
        "{refused}"
    );
    send(sysmon_line(3, 3, cmd, "cmd /c marker-one", "C:\\Windows\\explorer.exe"));

    // A new version of the rule: it replaces the old one, which summarizes its window first.
    std::fs::write(&marker, marker_rule("marker-two", "2024-02-02")).unwrap();
    let swapped = wait_for(&lines, &["pack swapped"], &mut seen);
    assert!(swapped.contains("unchanged=10") && swapped.contains("replaced=1"), "{swapped}");
    send(sysmon_line(4, 4, cmd, "cmd /c marker-one marker-two", "C:\\Windows\\explorer.exe"));

    // Marked deprecated by its authors: unloaded (its window summarized), the others stay.
    let deprecated = marker_rule("marker-two", "2024-03-03").replace("status: test", "status: deprecated");
    std::fs::write(&marker, deprecated).unwrap();
    let unloaded = wait_for(&lines, &["left out"], &mut seen);
    assert!(
        unloaded.contains("marker.yml")
            && unloaded.contains("status deprecated")
            && unloaded.contains("its last version is unloaded"),
        "{unloaded}"
    );
    let swapped = wait_for(&lines, &["pack swapped"], &mut seen);
    assert!(swapped.contains("rules=10") && swapped.contains("unchanged=10"), "{swapped}");
    send(sysmon_line(6, 6, cmd, "cmd /c marker-two", "C:\\Windows\\explorer.exe"));
    send(sysmon_line(5, 5, cmd, "cmd /c dir", w3wp));
    drop(send);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();

    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(output.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |id: &str| -> Vec<(String, u64, Vec<serde_json::Value>)> {
        alerts
            .iter()
            .filter(|a| a["RuleId"] == id)
            .map(|a| {
                (
                    a["RuleVersion"].as_str().unwrap().to_owned(),
                    a["MatchCount"].as_u64().unwrap(),
                    a["ReportIds"].as_array().unwrap().clone(),
                )
            })
            .collect()
    };
    // The web-server rule was the same in all three packs: one window, one alert, both events.
    assert_eq!(
        of("8202070f-edeb-4d31-a010-a26c72ac5600"),
        vec![("2024-11-26".to_owned(), 2, vec!["1".into(), "5".into()])],
        "{alerts:#?}"
    );
    // The marker rule: its first version's window was summarized when it was replaced.
    assert_eq!(
        of("0b9a1c5e-0000-4000-8000-000000000001"),
        vec![
            ("2024-01-01".to_owned(), 2, vec!["2".into(), "3".into()]),
            ("2024-02-02".to_owned(), 1, vec!["4".into()]),
        ],
        "{alerts:#?}"
    );
}

/// A component caught in the middle of its copy is left for the rescan after the copy, not
/// refused as a broken artifact (the watcher used to log a refusal of the partial bytes,
/// then load the finished file). Times are set, not waited for: the settle time is long, and
/// a settled file's modification time is put in the past.
#[test]
fn a_component_still_being_copied_is_loaded_once_its_copy_has_settled() {
    use rulehost::rules::{Trust, watch};
    let dir = tempfile::tempdir().unwrap();
    let runtime = rulehost::runtime::Runtime::new().unwrap();
    let trust = Trust::default();
    let mut state = watch::DirectoryState::default().with_settle(Duration::from_secs(600));
    let settled = |path: &Path| {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    };
    let path = dir.path().join("soft-cell.wasm");
    // The first half of the bytes, just written: the copy is under way.
    std::fs::write(&path, &BUNDLED_SOFT_CELL[..BUNDLED_SOFT_CELL.len() / 2]).unwrap();
    let updates = watch::rescan(dir.path(), &runtime, &trust, &mut state);
    assert!(updates.is_empty(), "{updates:?}");
    assert!(state.postponed());
    std::fs::write(&path, BUNDLED_SOFT_CELL).unwrap();
    settled(&path);
    let updates = watch::rescan(dir.path(), &runtime, &trust, &mut state);
    assert!(!state.postponed());
    match updates.as_slice() {
        [watch::RuleUpdate::Loaded { rules, .. }] => {
            assert_eq!(rules[0].metadata().id, "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7")
        }
        other => panic!("{other:?}"),
    }
    // A settled file that is broken is still refused, at once.
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, &BUNDLED_SOFT_CELL[..100]).unwrap();
    settled(&broken);
    let updates = watch::rescan(dir.path(), &runtime, &trust, &mut state);
    assert!(
        matches!(updates.as_slice(), [watch::RuleUpdate::Refused { path, .. }] if *path == broken),
        "{updates:?}"
    );
}
