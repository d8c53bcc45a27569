//! Running the binary and comparing with golden files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The output of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout lines parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    /// The counts of the summary: records read, evaluated, skipped, rejected.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let summary = self.summary();
        let before = |word: &str| -> u64 {
            let at = summary.find(word).unwrap_or_else(|| panic!("{word:?} in {summary}"));
            let digits: String =
                summary[..at].trim_end().chars().rev().take_while(char::is_ascii_digit).collect();
            digits
                .chars()
                .rev()
                .collect::<String>()
                .parse()
                .unwrap_or_else(|_| panic!("a count before {word:?}: {summary}"))
        };
        (before(" record"), before(" evaluated"), before(" skipped"), before(" rejected"))
    }

    /// The summary line on stderr.
    pub fn summary(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.contains(" read: "))
            .unwrap_or_else(|| panic!("no summary in stderr:\n{}", self.stderr))
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture of `tests/data`, relative to the workspace, where the binary runs: golden
/// outputs name it the same on every machine.
pub fn data(name: &str) -> String {
    format!("tests/data/{name}")
}

/// The `rulehost` binary, run from the workspace.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rulehost"));
    command
        .current_dir(workspace())
        // Hermetic: no config file of the machine's user applies.
        .env("XDG_CONFIG_HOME", workspace().join("target/test-no-config"))
        .env("XDG_CACHE_HOME", workspace().join("target/test-cache"));
    command
}

/// Runs `rulehost` with `args` and `stdin`.
pub fn rulehost_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    use std::io::Write;
    let mut child = command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rulehost");
    // Written beside the reading of the output, which could otherwise fill its pipe and
    // stop rulehost before it read all of its input.
    let mut pipe = child.stdin.take().expect("piped");
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || pipe.write_all(stdin));
        let output = child.wait_with_output().expect("running rulehost");
        writer.join().expect("the writer ends").expect("writing stdin");
        output
    });
    Run {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// Runs `rulehost` with `args` and an empty stdin.
pub fn rulehost(args: &[&str]) -> Run {
    rulehost_with_stdin(args, b"")
}

/// What `rulehost inspect --json` says of the unsigned artifact at `path`.
pub fn inspected_unsigned(path: &str) -> serde_json::Value {
    let run = rulehost(&["inspect", "--json", "--allow-unsigned", path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("inspect --json writes JSON")
}

/// `text` with every `sha256:<64 hex digits>` written `sha256:<digest>`.
pub fn mask_digests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sha256:") {
        let (before, after) = rest.split_at(at + 7);
        out.push_str(before);
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 64 {
            out.push_str("<digest>");
            rest = &after[64..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The component of the test rule crate `tests/rules/<name>`, built once per test
/// run into `target/test-rules`.
pub fn test_rule(name: &str) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let target = workspace().join("target/test-rules");
    let manifest = workspace().join(format!("tests/rules/{name}/Cargo.toml"));
    let wasi = std::fs::read_to_string(&manifest)
        .expect("the test rule's manifest")
        .contains(rule_build::WASI_TARGET);
    let wasm_target = if wasi { rule_build::WASI_TARGET } else { rule_build::TARGET };
    let component = rule_build::build_rule_for(&workspace(), &format!("test-{name}"), &target, wasm_target)
        .unwrap_or_else(|e| panic!("building test rule {name}: {e:#}"));
    // Written aside and renamed into place: another test process (a test runner that runs
    // each test in a process of its own) may be loading the same rule meanwhile.
    let path = target.join(format!("{name}.wasm"));
    let aside = target.join(format!("{name}.wasm.{}", std::process::id()));
    std::fs::write(&aside, component).expect("writing the test rule");
    std::fs::rename(&aside, &path).expect("moving the test rule into place");
    let path = path.display().to_string();
    built.insert(name.to_owned(), path.clone());
    path
}

/// The digest of the bundled rule, as `inspect` reports it.
pub fn bundled_digest() -> String {
    let run = rulehost(&["inspect", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&run.stdout).expect("inspect prints JSON");
    info["digest"].as_str().expect("a digest").to_owned()
}

/// Compares `actual` with `tests/golden/<name>`, or writes it there under
/// `UPDATE_GOLDEN=1`. A rule's digest changes with every change of the rule, the SDK or
/// the toolchain, so digests stand as `sha256:<digest>` in golden files (the tests of
/// `inspect` and of loading check that outputs carry the right one).
pub fn assert_golden(name: &str, actual: &str) {
    let actual = mask_digests(actual);
    let path = workspace().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("writing golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// A file of the real public logs in the `shared/data` folder beside the repository.
pub fn shared(name: &str) -> String {
    workspace().join("../shared/data").join(name).display().to_string()
}

/// The contents of a fixture of `tests/data`.
pub fn read_data(name: &str) -> String {
    std::fs::read_to_string(workspace().join(data(name))).expect("reading a fixture")
}

/// Writes a rule's `bytes` to `name` in `dir`; returns its path.
pub fn write_rule(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// The Defender rows `rounds` times over, each round with report ids of its own; the
/// Windows scenario (Sysmon events whose grandparents only the lineage table knows) after
/// every `windows_every` rounds, and a malformed line after round `malformed_after`.
pub fn defender_rows_with_windows(rounds: usize, windows_every: usize, malformed_after: usize) -> String {
    let rows = read_data("defender-rows.jsonl");
    let windows = read_data("windows/scenario.evtx-dump.jsonl");
    let mut text = String::new();
    for round in 0..rounds {
        text.push_str(&rows.replace("\"ReportId\": ", &format!("\"ReportId\": {}", round + 1)));
        text.push('\n');
        if round % windows_every == 7 {
            text.push_str(&windows);
        }
        if round == malformed_after {
            text.push_str("{\"Timestamp\": \n");
        }
    }
    text
}

/// A server a test starts on a free loopback port (a broker, a registry), and kills when it
/// is dropped, a failed test included: nothing is left running.
pub struct LocalService {
    /// `127.0.0.1:PORT`.
    pub address: String,
    child: Option<std::process::Child>,
}

impl LocalService {
    /// A free loopback port, with nothing on it yet.
    pub fn on_free_port() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        LocalService { address: format!("127.0.0.1:{port}"), child: None }
    }

    /// Starts `command` (its output thrown away) and waits until its address takes
    /// connections; `what` names it if it does not.
    pub fn start(&mut self, mut command: Command, what: &str) {
        assert!(self.child.is_none(), "{what} runs already");
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.address).is_err() {
            assert!(std::time::Instant::now() < deadline, "{what} did not start on {}", self.address);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills it, as a machine that goes away.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tests that keep both cores busy for a minute or more (the Sigma differential tests, with
/// pySigma beside them) run apart from those that need their processes answered in time (a
/// Kafka broker, a consumer group's heartbeats and commits): in one `make test`, a group of
/// three members overlapping the catalog's differential test had not caught up after 90 s,
/// having read 840 messages of 482. The heavy ones take this lock alone, the others
/// together.
static CPU_HEAVY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that keeps the cores busy: no timely test runs meanwhile.
pub fn cpu_heavy() -> std::sync::RwLockWriteGuard<'static, ()> {
    CPU_HEAVY.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by a test whose processes must be answered in time: no heavy test runs meanwhile.
pub fn timely() -> std::sync::RwLockReadGuard<'static, ()> {
    CPU_HEAVY.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
