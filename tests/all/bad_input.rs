//! Bad input: every bad record is named, counted, and does not stop the others.

use crate::util::{data, rulehost};

/// Writes `lines` to a temporary file and returns it.
fn file_with(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    std::io::Write::write_all(&mut file, contents.as_bytes()).unwrap();
    file
}

const GOOD: &str = r#"{"Timestamp":"2024-05-01T10:15:00Z","DeviceId":"d1","DeviceName":"web01","FileName":"cmd.exe","ProcessCommandLine":"cmd /c whoami","InitiatingProcessFileName":"w3wp.exe","ReportId":7}"#;

fn bad_file() -> tempfile::NamedTempFile {
    let lines = [
        GOOD,                                                                               // 1
        r#"{"Timestamp":"2024-05-01T10:16:00Z","DeviceName":"web01","FileName":"cmd.exe""#, // 2: malformed
        r#"{"Timestamp":"2024-05-01T10:17:00Z","FileName":"cmd.exe","ProcessId":{"x":1}}"#, // 3: wrong type
        r#"{"Timestamp":"2024-05-01T10:18:00Z","FileName":"cmd.exe","ProcessId":"12ab"}"#,  // 4: wrong type
        r#"{"Timestamp":"yesterday","FileName":"cmd.exe"}"#,                                // 5: bad time
        r#"{"FileName":"cmd.exe"}"#,                                                        // 6: no time
        "",                                                                  // 7: blank, not a record
        r#"{"Type":"DeviceFileEvents","Timestamp":"2024-05-01T10:19:00Z"}"#, // 8: other table
        "42",                                                                // 9: not an object
        r#"{"Timestamp":"2024-05-01T10:20:00Z","DeviceId":"d1","DeviceName":"web01","FileName":"cmd.exe","ProcessCommandLine":"ipconfig","InitiatingProcessFileName":"w3wp.exe","ReportId":8}"#, // 10
    ];
    // The last line is cut short, with no newline: a truncated file.
    let contents = format!("{}\n{{\"Timestamp\":\"2024-05-01T10:21:00Z\",\"Devi", lines.join("\n"));
    file_with(&contents)
}

#[test]
fn bad_records_are_reported_and_the_rest_evaluated() {
    let file = bad_file();
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["ReportIds"], serde_json::json!(["7", "8"]), "the good records around the bad ones");

    let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("warning")).collect();
    let expected = [
        format!("{path}:2: malformed JSON"),
        format!("{path}:3: column ProcessId: expected a string or a number, found an object"),
        format!("{path}:4: column ProcessId: expected a whole number, found \"12ab\""),
        format!("{path}:5: Timestamp \"yesterday\" is not a time"),
        format!("{path}:6: no Timestamp"),
        format!("{path}:9: unrecognized record: expected a JSON object, found a number"),
        format!("{path}:11: truncated: the input ends inside a JSON value"),
    ];
    assert_eq!(warnings.len(), expected.len(), "{}", run.stderr);
    for (warning, expected) in warnings.iter().zip(&expected) {
        assert!(
            warning.starts_with(&format!("rulehost: warning: {expected}")),
            "{warning}\nwanted: {expected}"
        );
    }
    assert_eq!(
        run.summary(),
        "rulehost: 10 records read: 2 evaluated, 1 skipped (DeviceFileEvents: 1), 7 rejected \
         (bad Timestamp: 1, malformed JSON: 1, no Timestamp: 1, truncated: 1, unrecognized record: 1, wrong type: 2); \
         2 matches, 1 alert"
    );
}

#[test]
fn strict_stops_at_the_first_bad_record() {
    let file = bad_file();
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", "--strict", &path]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "no alert from a failed run: {}", run.stdout);
    assert!(run.stderr.starts_with(&format!("rulehost: error: {path}:2: malformed JSON")), "{}", run.stderr);
}

#[test]
fn warnings_are_capped_but_counted() {
    let contents = "not json\n".repeat(5);
    let file = file_with(&contents);
    let run = rulehost(&["eval", "--max-warnings", "2", &file.path().display().to_string()]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stderr.lines().filter(|l| l.contains(": malformed JSON")).count(), 2);
    assert!(run.stderr.contains("more records rejected"), "{}", run.stderr);
    assert!(run.summary().contains("5 rejected (malformed JSON: 5)"), "{}", run.summary());
}

#[test]
fn a_broken_document_or_csv_row_is_named() {
    let mut api = crate::util::read_data("defender-api.json");
    api.truncate(api.len() / 2);
    let mut file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::io::Write::write_all(&mut file, api.as_bytes()).unwrap();
    let run = rulehost(&["eval", &file.path().display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("truncated: the document ends early"), "{}", run.stderr);
    // The rows before the break are read as it streams by, and evaluated.
    assert!(
        run.summary().contains(
            "4 records read: 3 evaluated, 0 skipped, 1 rejected (truncated: 1); 2 matches, 1 alert"
        ),
        "{}",
        run.summary()
    );

    let mut csv = crate::util::read_data("defender-export.csv");
    csv.push_str("2024-05-01T12:00:00Z,only,three\n");
    let mut file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    std::io::Write::write_all(&mut file, csv.as_bytes()).unwrap();
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", &path]);
    assert!(run.stderr.contains(&format!("{path}:11: malformed CSV row")), "{}", run.stderr);
    assert!(
        run.summary().contains(
            "10 records read: 9 evaluated, 0 skipped, 1 rejected (malformed CSV: 1); 5 matches, 2 alerts"
        ),
        "{}",
        run.summary()
    );
}

#[test]
fn a_missing_input_is_an_error_before_any_output() {
    let run = rulehost(&["eval", &data("defender-rows.jsonl"), "/nonexistent/events.jsonl"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("/nonexistent/events.jsonl: No such file"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("No such file").count(), 1, "the cause is said once: {}", run.stderr);
}

#[test]
fn an_evtx_file_among_many_that_does_not_open_is_the_same_error_whatever_the_jobs() {
    // With more than one job, EVTX files are opened by the threads that read them; a file
    // whose header does not parse still ends the run with its error, and a missing one is
    // still an error before any output.
    let good = [edited_evtx(SQL_4688, |_| {}), edited_evtx(SQL_4688, |_| {})];
    let bad = edited_evtx(SQL_4688, |bytes| bytes[..8].copy_from_slice(b"NotEvtx\0"));
    let [first, last] = good.each_ref().map(|f| f.path().display().to_string());
    let bad = bad.path().display().to_string();
    for jobs in ["1", "2"] {
        let run = rulehost(&["eval", "--jobs", jobs, &first, &bad, &last]);
        assert_eq!(run.code, 2, "--jobs {jobs}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("rulehost: error: {bad}: EVTX: ")),
            "--jobs {jobs}: {}",
            run.stderr
        );
        let run = rulehost(&["eval", "--jobs", jobs, "--matches", &first, "/nonexistent/logs.evtx", &last]);
        assert_eq!(run.code, 2, "--jobs {jobs}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "--jobs {jobs}: {}", run.stdout);
        assert!(run.stderr.contains("/nonexistent/logs.evtx: No such file"), "--jobs {jobs}: {}", run.stderr);
    }
}

/// A copy of a shared EVTX file with `edit` applied.
fn edited_evtx(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> tempfile::NamedTempFile {
    let mut bytes = std::fs::read(crate::util::shared(&format!("evtx/{name}"))).unwrap();
    edit(&mut bytes);
    let mut file = tempfile::Builder::new().suffix(".evtx").tempfile().unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
    file
}

/// 140 4688 events in five chunks of 28 (records 1-28, 29-56, ...).
const SQL_4688: &str = "ID4688-SQL_Server_payload_injection_reverse_shell_MSF.evtx";
const CHUNK: usize = 65536;
const HEADER: usize = 4096;

#[test]
fn a_truncated_evtx_names_the_lost_chunk_and_keeps_the_rest() {
    let file = edited_evtx(SQL_4688, |bytes| bytes.truncate(HEADER + 2 * CHUNK + 20_000));
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "{path}: record 57: truncated: the file ends inside chunk 3: 20000 of its 65536 bytes are there"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.summary()
            .starts_with("rulehost: 57 records read: 56 evaluated, 0 skipped, 1 rejected (truncated: 1)")
    );
}

#[test]
fn a_corrupt_evtx_chunk_is_rejected_and_the_other_chunks_read() {
    let file = edited_evtx(SQL_4688, |bytes| {
        let at = HEADER + CHUNK + 812;
        bytes[at..at + 400].fill(0xff);
    });
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{path}: record 29: malformed EVTX: chunk 2:")), "{}", run.stderr);
    assert!(run.stderr.contains("its 28 records (29 to 56) are lost"), "{}", run.stderr);
    assert!(run.summary().starts_with("rulehost: 113 records read: 112 evaluated, 0 skipped, 1 rejected"));

    let file = edited_evtx(SQL_4688, |bytes| bytes[..8].copy_from_slice(b"NotEvtx!"));
    let run = rulehost(&["eval", "--input-format", "evtx", &file.path().display().to_string()]);
    assert_eq!(run.code, 2, "a file that is not EVTX at all is an input error");
    assert!(run.stderr.contains("EVTX:"), "{}", run.stderr);
}

#[test]
fn broken_xml_and_eventdata_are_named_and_the_rest_evaluated() {
    let scenario = crate::util::read_data("windows/scenario.xml");
    let mut lines: Vec<&str> = scenario.lines().collect();
    // Line 4 (the first match) loses a closing tag.
    let broken = lines[3].replacen("</EventData>", "", 1);
    lines[3] = &broken;
    let mut file = tempfile::Builder::new().suffix(".xml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, lines.join("\n").as_bytes()).unwrap();
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", "--matches", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{path}:4: malformed XML")), "{}", run.stderr);
    assert_eq!(run.json_lines().len(), 3, "the other matches");
    assert!(run.summary().starts_with("rulehost: 10 records read: 7 evaluated, 2 skipped (Security 4624: 1, Sysmon 3: 1), 1 rejected (malformed XML: 1)"));

    let sentinel = crate::util::read_data("windows/scenario.sentinel.jsonl");
    let edited = sentinel.replacen("\"EventData\": \"{", "\"EventData\": \"{oops", 1);
    let file = file_with(&edited);
    let path = file.path().display().to_string();
    let run = rulehost(&["eval", &path]);
    assert!(
        run.stderr.contains(&format!("{path}:1: EventData does not parse: key must be a string")),
        "{}",
        run.stderr
    );
    assert!(
        run.summary().contains("9 evaluated, 0 skipped") || run.summary().contains("7 evaluated"),
        "{}",
        run.summary()
    );
    assert!(run.summary().contains("1 rejected (malformed EventData: 1)"), "{}", run.summary());
}

/// Mutated copies of every fixture: whatever the damage, the binary reports and goes on,
/// it never panics (exit code 101) and the counts always add up.
#[test]
fn damaged_inputs_never_crash_the_host() {
    let fixtures = [
        "defender-rows.jsonl",
        "defender-streaming.jsonl",
        "defender-api.json",
        "defender-export.csv",
        "windows/scenario.xml",
        "windows/scenario.evtx-dump.jsonl",
        "windows/scenario.evtx-dump.json",
        "windows/scenario.winlogbeat.jsonl",
        "windows/scenario.helk.jsonl",
        "windows/scenario.sentinel.jsonl",
    ];
    // Replacements that break types, shapes and syntax.
    let damage: &[(&str, &str)] = &[
        ("\"", ""),
        (":", ": {\"x\": [1, {}]},"),
        ("\"2024-", "\"99999-"),
        ("}", ""),
        ("{", "["),
        (",", ",\"winlog\":{\"event_id\":{}},"),
        ("\"EventID\": 1", "\"EventID\": {\"#text\": []}"),
        ("\"EventData\": \"", "\"EventData\": \"<"),
        ("\"properties\": {", "\"properties\": {\"properties\": null, "),
        ("<Data", "<Data><Data"),
        ("</Event>", ""),
        ("\\\\", "\\"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for fixture in fixtures {
        let text = crate::util::read_data(fixture);
        let extension = std::path::Path::new(fixture).extension().unwrap().to_str().unwrap();
        for (i, (from, to)) in damage.iter().enumerate() {
            for cut in [text.len() / 3, text.len() / 2, text.len()] {
                let mut damaged = text[..text.floor_char_boundary(cut)].to_owned();
                damaged = damaged.replacen(from, to, 2 + i % 3);
                let path = dir.path().join(format!("damaged.{extension}"));
                std::fs::write(&path, &damaged).unwrap();
                let run = rulehost(&["eval", &path.display().to_string()]);
                runs += 1;
                assert!(
                    run.code == 0 || run.code == 2,
                    "{fixture} with {from:?} -> {to:?}: exit {}\n{}",
                    run.code,
                    run.stderr
                );
                assert!(!run.stderr.contains("panicked"), "{fixture}: {}", run.stderr);
                if run.code == 0 {
                    let (read, evaluated, skipped, rejected) = run.counts();
                    assert_eq!(read, evaluated + skipped + rejected, "{fixture}: {}", run.summary());
                }
            }
        }
    }
    assert_eq!(runs, fixtures.len() * damage.len() * 3);
}

/// Windows tools write a UTF-8 byte order mark at the start of a file: every text format
/// reads the same with one as without.
#[test]
fn a_byte_order_mark_is_ignored_in_every_text_format() {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "defender-export.csv",
        "defender-rows.jsonl",
        "defender-api.json",
        "windows/scenario.xml",
        "windows/scenario.evtx-dump.json",
        "windows/scenario.evtx-dump.jsonl",
    ] {
        let plain = rulehost(&["eval", "--matches", &data(file)]);
        let name = std::path::Path::new(file).file_name().unwrap();
        let marked = dir.path().join(name);
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(std::fs::read(crate::util::workspace().join(data(file))).unwrap());
        std::fs::write(&marked, bytes).unwrap();
        let run = rulehost(&["eval", "--matches", &marked.display().to_string()]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        assert_eq!(run.summary(), plain.summary(), "{file}");
        assert!(run.summary().contains(" 0 rejected"), "{file}: {}", run.summary());
        assert_eq!(run.json_lines().len(), plain.json_lines().len(), "{file}");
    }
}

/// A good row, a line one byte longer than a record may be, a line exactly as long as one
/// may be (not JSON), and a good row, with the long lines' lengths.
fn long_lines(last_newline: bool) -> (Vec<u8>, usize) {
    let max = rulehost::events::MAX_LINE_BYTES;
    let mut contents = Vec::with_capacity(2 * max + 1024);
    contents.extend_from_slice(GOOD.as_bytes());
    contents.push(b'\n');
    contents.extend(std::iter::repeat_n(b'a', max + 1));
    contents.push(b'\n');
    contents.extend(std::iter::repeat_n(b'b', max));
    contents.push(b'\n');
    contents.extend_from_slice(
        GOOD.replace("whoami", "ipconfig").replace("\"ReportId\":7", "\"ReportId\":8").as_bytes(),
    );
    contents.push(b'\n');
    // And, last, one too long that the input ends inside.
    contents.extend(std::iter::repeat_n(b'c', max + 100));
    if last_newline {
        contents.push(b'\n');
    }
    (contents, max)
}

#[test]
fn a_line_longer_than_a_record_may_be_is_passed_over_and_named() {
    for last_newline in [true, false] {
        let (contents, max) = long_lines(last_newline);
        let mut file = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        std::io::Write::write_all(&mut file, &contents).unwrap();
        let path = file.path().display().to_string();
        for jobs in ["1", "2"] {
            for stdin in [false, true] {
                let run = match stdin {
                    false => rulehost(&["eval", "--jobs", jobs, &path]),
                    true => crate::util::rulehost_with_stdin(&["eval", "--jobs", jobs, "-"], &contents),
                };
                let name = if stdin { "-" } else { path.as_str() };
                let case = format!("jobs {jobs}, stdin {stdin}, last newline {last_newline}");
                assert_eq!(run.code, 0, "{case}: {}", run.stderr);
                let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("warning")).collect();
                let expected = [
                    format!(
                        "{name}:2: a line of {} bytes, longer than the {max} a record may have: not read",
                        max + 1
                    ),
                    format!("{name}:3: malformed JSON"),
                    format!(
                        "{name}:5: a line of {} bytes, longer than the {max} a record may have: not read",
                        max + 100
                    ),
                ];
                assert_eq!(warnings.len(), expected.len(), "{case}: {}", run.stderr);
                for (warning, expected) in warnings.iter().zip(&expected) {
                    assert!(
                        warning.starts_with(&format!("rulehost: warning: {expected}")),
                        "{case}: {warning}\nwanted: {expected}"
                    );
                }
                // The rows around the long lines are read and evaluated: one alert of both.
                let alerts = run.json_lines();
                assert_eq!(alerts.len(), 1, "{case}: {}", run.stdout);
                assert_eq!(alerts[0]["ReportIds"], serde_json::json!(["7", "8"]), "{case}");
                assert!(
                    run.summary().contains("5 records read: 2 evaluated, 0 skipped, 3 rejected"),
                    "{case}: {}",
                    run.summary()
                );
            }
        }
    }
}

#[test]
fn a_csv_row_longer_than_a_record_may_be_ends_its_input_with_the_reason() {
    let max = rulehost::events::MAX_LINE_BYTES;
    let header =
        "Timestamp,DeviceId,DeviceName,FileName,ProcessCommandLine,InitiatingProcessFileName,ReportId\n";
    let row = |command: &str, id: u32| {
        format!("2024-05-01T10:15:0{id}Z,d1,web01,cmd.exe,\"{command}\",w3wp.exe,{id}\n")
    };
    // Rows of up to a record's size are read whole, each under its own bound: two of
    // nearly the size in turn.
    let near = "a".repeat(max - 1024);
    let within =
        [header.to_owned(), row("whoami", 1), row(&near, 2), row(&near, 3), row("ipconfig", 4)].concat();
    // One just past it (within what the reader takes ahead) is rejected and the rows after
    // it read; one well past it ends the input, and the warning says so.
    let just_past =
        [header.to_owned(), row("whoami", 1), row(&"a".repeat(max + 1), 2), row("ipconfig", 3)].concat();
    let well_past =
        [header.to_owned(), row("whoami", 1), row(&"a".repeat(max + (1 << 20)), 2), row("ipconfig", 3)]
            .concat();
    let row_bytes = row(&"a".repeat(max + 1), 2).len() - 1;
    let just_past_warning =
        format!("a row of {row_bytes} bytes, longer than the {max} a record may have: not read");
    let well_past_warning = format!(
        "a row longer than the {max} bytes a record may have: not read, nor the rest of the input (its rows cannot be told apart after it)"
    );
    for (contents, summary, warning) in [
        (within, "4 records read: 4 evaluated, 0 skipped, 0 rejected", None),
        (
            just_past,
            "3 records read: 2 evaluated, 0 skipped, 1 rejected (too long: 1)",
            Some(just_past_warning),
        ),
        (
            well_past,
            "2 records read: 1 evaluated, 0 skipped, 1 rejected (too long: 1)",
            Some(well_past_warning),
        ),
    ] {
        let mut file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        std::io::Write::write_all(&mut file, contents.as_bytes()).unwrap();
        let path = file.path().display().to_string();
        let run = rulehost(&["eval", &path]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.summary().starts_with(&format!("rulehost: {summary}")), "{}", run.summary());
        let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("warning")).collect();
        match warning {
            None => assert!(warnings.is_empty(), "{}", run.stderr),
            Some(warning) => assert_eq!(warnings, [format!("rulehost: warning: {path}:3: {warning}")]),
        }
    }
}

/// Rows whose command lines are `sizes` bytes long.
fn rows_of(sizes: &[usize]) -> String {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            GOOD.replace("cmd /c whoami", &format!("cmd /c {}", "a".repeat(size)))
                .replace("7}", &format!("{i}}}"))
                + "\n"
        })
        .collect()
}

#[test]
fn a_batch_ends_before_an_event_would_take_it_past_its_bound_in_bytes() {
    // A rule that fails every call shows the calls: each batch is one failed call, and the
    // third failure in a row quarantines it.
    let panic = crate::util::test_rule("panic");
    let calls = |run: &crate::util::Run| {
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("rulehost: rule test-panic"))
            .unwrap_or_else(|| panic!("{}", run.stderr));
        // `rulehost: rule ID VERSION (DIGEST): N failed calls, ...`
        line.split("): ").nth(1).unwrap().split(',').next().unwrap().to_owned()
    };
    let mib = 1 << 20;
    // A stream: ten events of 6 MiB are batches of two (12 MiB; a third would make 18); five
    // of 2 MiB are one batch.
    for (sizes, expected) in [(vec![6 * mib; 10], "3 failed calls"), (vec![2 * mib; 5], "1 failed call")] {
        let run = crate::util::rulehost_with_stdin(
            &["eval", "--jobs", "1", "--rules", &panic, "-"],
            rows_of(&sizes).as_bytes(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(calls(&run), expected, "{}", run.stderr);
    }
    // A file read in blocks: three lines that start in the first block, the last 16 MiB
    // long, are two batches.
    let file = file_with(&rows_of(&[mib / 2, mib / 4, 16 * mib - 4096]));
    let run = rulehost(&["eval", "--jobs", "2", "--rules", &panic, &file.path().display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(calls(&run), "2 failed calls", "{}", run.stderr);
}

#[test]
fn a_json_document_is_read_as_it_streams_and_a_record_past_the_bound_ends_it() {
    let max = rulehost::events::MAX_LINE_BYTES;
    let api: serde_json::Value = serde_json::from_str(&crate::util::read_data("defender-api.json")).unwrap();
    let rows = api["Results"].as_array().unwrap();
    let mut long = rows[0].clone();
    long["ProcessCommandLine"] = serde_json::Value::String("a".repeat(max));
    let text = |rows: &[serde_json::Value]| {
        let rows: Vec<String> = rows.iter().map(|row| serde_json::to_string_pretty(row).unwrap()).collect();
        format!("{{\n\"Schema\": {},\n\"Results\": [\n{}\n]\n}}\n", api["Schema"], rows.join(",\n"))
    };
    let mut file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    let path = file.path().display().to_string();
    let whole = rulehost(&["eval", &data("defender-api.json")]);
    assert!(whole.summary().contains("9 records read: 9 evaluated"), "{}", whole.summary());

    // Five rows, one past the bound, the other four: the five are evaluated, the long one
    // named with the reason, and nothing after it read.
    let with_long = [&rows[..5], std::slice::from_ref(&long), &rows[5..]].concat();
    std::io::Write::write_all(&mut file, text(&with_long).as_bytes()).unwrap();
    let run = rulehost(&["eval", "--matches", &path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warning = format!(
        "{path}: record 6: a record longer than the {max} bytes a record may have: not read, nor the rest of the input"
    );
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    assert!(
        run.summary().contains("6 records read: 5 evaluated, 0 skipped, 1 rejected (too long: 1)"),
        "{}",
        run.summary()
    );
    let first_five = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(first_five.path(), text(&rows[..5])).unwrap();
    let first_five_path = first_five.path().display().to_string();
    let expected = rulehost(&["eval", "--matches", &first_five_path]);
    assert!(!expected.json_lines().is_empty());
    assert_eq!(run.stdout.replace(&path, "F"), expected.stdout.replace(&first_five_path, "F"));
}

#[test]
fn control_characters_of_a_log_or_a_file_name_never_reach_the_terminal() {
    // An escape sequence in a command line, printed as it is, writes the analyst's clipboard
    // (OSC 52) and clears the screen; one in a file's name colours the warning that names it.
    let dir = tempfile::tempdir().unwrap();
    let row = serde_json::json!({
        "Timestamp": "2024-05-01T10:15:00Z", "DeviceId": "d1", "DeviceName": "web01\u{1b}[8m",
        "FileName": "cmd.exe", "ProcessCommandLine": "cmd /c whoami \u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J",
        "InitiatingProcessFileName": "w3wp.exe", "ReportId": 7,
    });
    let logs = dir.path().join("web01.jsonl");
    std::fs::write(&logs, format!("{row}\n")).unwrap();
    let named = dir.path().join("x\u{1b}[31mred.jsonl");
    std::fs::write(&named, "{\"bad json\n").unwrap();
    // A line break in a file's name, which would write a summary line of its own.
    let forging = dir.path().join("y\nrulehost: 0 records read.jsonl");
    std::fs::write(&forging, "{\"bad json\n").unwrap();
    let hostile = |text: &str| text.contains('\u{1b}') || text.contains('\u{7}');
    for args in [&["--format", "table"][..], &["--format", "table", "--matches"][..]] {
        let mut args = args.to_vec();
        args.insert(0, "eval");
        args.push(dir.path().to_str().unwrap());
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.contains("whoami \\u{1b}]52;c;ZXZpbA==\\u{7}"), "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("x\\u{1b}[31mred.jsonl:1: malformed JSON"), "{}", run.stderr);
        assert!(!run.stderr.lines().any(|l| l.starts_with("rulehost: 0 records read")), "{}", run.stderr);
        assert!(!hostile(&run.stdout) && !hostile(&run.stderr), "{args:?}:\n{}\n{}", run.stdout, run.stderr);
    }
    // `run`'s log names the input of a rejected record.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    crate::util::write_rule(&rules, "soft-cell.wasm", rulehost::rules::BUNDLED_SOFT_CELL);
    let live = rulehost(&["run", "--rules", rules.to_str().unwrap(), named.to_str().unwrap()]);
    assert!(live.stderr.contains("origin=") && !hostile(&live.stderr), "{}", live.stderr);
    // JSON lines escape them as JSON does.
    let run = rulehost(&["eval", logs.to_str().unwrap()]);
    assert!(run.stdout.contains("\\u001b]52") && !hostile(&run.stdout), "{}", run.stdout);
    // A Sigma rule's title, named in `sigma check`'s refusal.
    let rule = dir.path().join("rule.yml");
    std::fs::write(
        &rule,
        "title: \"Evil \\e[31m title\"\nid: 5e1ec7ed-0000-4000-8000-0000000000ff\n\
         logsource:\n    category: process_creation\n    product: windows\n\
         detection:\n    selection:\n        CommandLine|contains: who\n    condition: selection\n",
    )
    .unwrap();
    let check = rulehost(&["sigma", "check", rule.to_str().unwrap()]);
    assert!(check.stdout.contains("(Evil \\u{1b}[31m title): metadata:"), "{}{}", check.stdout, check.stderr);
    assert!(!hostile(&check.stdout) && !hostile(&check.stderr), "{}{}", check.stdout, check.stderr);
}
