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
    assert!(
        run.summary().contains("1 record read: 0 evaluated, 0 skipped, 1 rejected (truncated: 1)"),
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
}
