//! Rule authoring and the operator's terminal: new, test, table, progress, completions.

use std::process::Command;

use rulehost::rules::BUNDLED_SOFT_CELL;

use crate::util::{data, rulehost, workspace};

/// A workspace of its own, as the repository's: `rulehost new` writes there, and the rule
/// builds against the real SDK.
fn scratch_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace().canonicalize().unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let manifest = manifest
        .replace(
            r#"members = ["host", "rules-wasm/*", "tests/rules/*", "bench"]"#,
            r#"members = ["rules-wasm/*"]"#,
        )
        .replace(
            r#"default-members = ["host", "rules-wasm/*", "tests/rules/*", "bench"]"#,
            r#"default-members = ["rules-wasm/*"]"#,
        )
        .replace(r#"{ path = "rules-wasm/sdk" }"#, &format!("{{ path = {:?} }}", root.join("rules-wasm/sdk")))
        .replace(
            r#"{ path = "rules-wasm/build" }"#,
            &format!("{{ path = {:?} }}", root.join("rules-wasm/build")),
        )
        .replace(r#"{ path = "host" }"#, &format!("{{ path = {:?} }}", root.join("host")));
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    std::fs::create_dir(dir.path().join("rules-wasm")).unwrap();
    dir
}

#[test]
fn a_new_rule_builds_tests_and_evaluates() {
    let scratch = scratch_workspace();
    let rules_dir = scratch.path().join("rules-wasm").display().to_string();
    let run = rulehost(&["new", "iis-shell", "--dir", &rules_dir]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("created"), "{}", run.stdout);
    let again = rulehost(&["new", "iis-shell", "--dir", &rules_dir]);
    assert_eq!(again.code, 2, "never overwrites");

    let component =
        rule_build::build_rule(scratch.path(), "iis-shell", &workspace().join("target/test-rules"))
            .expect("the scaffolded rule builds as it is");
    let rule = scratch.path().join("iis-shell.wasm");
    std::fs::write(&rule, component).unwrap();
    let rule = rule.display().to_string();

    let cases = scratch.path().join("rules-wasm/iis-shell/cases.json").display().to_string();
    let run = rulehost(&["test", &rule, &cases]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.ends_with("2 passed, 0 failed\n"), "{}", run.stdout);

    let run = rulehost(&["eval", "--rules", &rule, &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let alerts = run.json_lines();
    assert_eq!(alerts.len(), 1, "w3wp.exe -> cmd.exe on web01: {}", run.stdout);
    assert_eq!(alerts[0]["RuleId"], "iis-shell");

    // The scaffold's own unit tests pass too.
    let status = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--offline", "-p", "iis-shell", "--target-dir"])
        .arg(workspace().join("target/test-rules"))
        .current_dir(scratch.path())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_soft_cell_cases_pass_through_the_component() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("soft-cell.wasm");
    std::fs::write(&rule, BUNDLED_SOFT_CELL).unwrap();
    let run = rulehost(&["test", &rule.display().to_string(), "rules-wasm/soft-cell/cases.json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("rules-wasm/soft-cell/cases.json")).unwrap(),
    )
    .unwrap();
    let count = cases["cases"].as_array().unwrap().len();
    assert!(count >= 40, "every operator row that matters");
    assert!(run.stdout.ends_with(&format!("{count} passed, 0 failed\n")), "{}", run.stdout);
    assert!(!run.stdout.contains("\x1b["), "no colour into a pipe");
}

#[test]
fn a_failing_case_shows_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("soft-cell.wasm");
    std::fs::write(&rule, BUNDLED_SOFT_CELL).unwrap();
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        r#"{"cases": [
            {"name": "wrong on purpose",
             "events": [{"Timestamp": "2024-05-01T10:00:00Z", "DeviceName": "web01.contoso.com", "FileName": "cmd.exe",
                         "ProcessCommandLine": "cmd /c whoami", "InitiatingProcessFileName": "w3wp.exe"}],
             "expect": {"matches": [], "alerts": [{"HostName": "web02"}]}},
            {"name": "right", "events": [], "expect": {"matches": [], "alerts": []}}
        ]}"#,
    )
    .unwrap();
    let run = rulehost(&["test", &rule.display().to_string(), &cases.display().to_string()]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("  FAIL wrong on purpose\n"), "{}", run.stdout);
    assert!(run.stdout.contains("matches: expected [], got [0]"), "{}", run.stdout);
    assert!(run.stdout.contains("alert 0: HostName: expected \"web02\", got \"web01\""), "{}", run.stdout);
    assert!(run.stdout.contains("  PASS right\n"), "{}", run.stdout);
    assert!(run.stdout.ends_with("1 passed, 1 failed\n"), "{}", run.stdout);
}

/// Runs `command` in a pseudo-terminal of `columns` columns (util-linux `script`).
fn in_terminal(command: &str, columns: u32, env: &[(&str, &str)]) -> String {
    let binary = env!("CARGO_BIN_EXE_rulehost");
    let line = format!("stty rows 40 cols {columns}; {}", command.replace("rulehost", binary));
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(workspace())
        .env("XDG_CONFIG_HOME", workspace().join("target/test-no-config"))
        .env("XDG_CACHE_HOME", workspace().join("target/test-cache"))
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .expect("script(1) runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_terminal_gets_a_progress_bar_and_a_table_that_fits() {
    let screen = in_terminal("rulehost eval --format table tests/data/defender-rows.jsonl", 200, &[]);
    assert!(screen.contains(" KiB/8.82 KiB"), "a progress bar of bytes of the total: {screen:?}");
    assert!(screen.contains("\x1b[1mWindowStart"), "a bold header: {screen:?}");
    let text = strip_ansi(&screen);
    let table: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| l.contains("WindowStart") || l.starts_with("2024-") || l.starts_with("  "))
        .collect();
    assert!(!table.is_empty(), "{text}");
    for line in &table {
        assert!(line.chars().count() <= 200, "fits 200 columns: {line:?}");
    }
    for word in ["whoami", "ipconfig", "certutil", "%TEMP%\\a.exe", "systeminfo"] {
        assert!(text.contains(word), "command lines wrapped, not cut: {word} in {text}");
    }

    let plain =
        in_terminal("rulehost eval --format table tests/data/defender-rows.jsonl", 200, &[("NO_COLOR", "1")]);
    assert!(!plain.contains("\x1b[1m") && !plain.contains("\x1b[31m"), "NO_COLOR: {plain:?}");

    // Not a terminal: no bar, no colour, whole values.
    let run = rulehost(&["eval", "--format", "table", &data("defender-rows.jsonl")]);
    assert!(!run.stderr.contains("KiB"), "{}", run.stderr);
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
    assert!(run.stdout.lines().next().unwrap().starts_with("WindowStart"));
}

#[test]
fn completions_man_page_and_examples_come_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let run = rulehost(&["completions", shell]);
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("rulehost") && run.stdout.contains("eval"), "{shell}");
    }
    let man = rulehost(&["man"]);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH rulehost"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    for command in [
        "eval",
        "inspect",
        "sign",
        "verify",
        "key generate",
        "config show",
        "new",
        "test",
        "completions",
        "man",
    ] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{command}");
        assert!(run.stdout.contains("Examples:"), "`rulehost {command} --help` has examples");
    }
}
