//! rulehost beside a peer, in one run: RSigma (`rsigma engine eval`, a Sigma engine in Rust,
//! `make rsigma`) and `rulehost eval` with the catalog's pack, the same 1,415 rule files over
//! the same **real records**: every Sysmon process creation of the shared EVTX and OTRF
//! files (62 distinct ones), as Winlogbeat lines (`winlog.event_data` holds Sysmon's fields,
//! which RSigma reads with `--jq '.winlog.event_data'`), repeated to about `PEER_EVENTS`
//! lines (default 100,000).
//! Both write every match; the matches of each rule must be as many on both sides before
//! any time counts. `BENCH_ONLY=peer` (not in the full run: it needs `make rsigma`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

/// The lines of the input, about.
const EVENTS: usize = 100_000;

fn rsigma_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/rsigma-0.23.0/bin/rsigma")
}

/// `BENCH_ONLY=peer`.
pub fn rsigma() -> Result<()> {
    let rsigma = rsigma_binary();
    ensure!(rsigma.exists(), "{} is missing: `make rsigma` installs it", rsigma.display());
    let wanted: usize = std::env::var("PEER_EVENTS").ok().map_or(Ok(EVENTS), |v| v.parse())?;
    let dir = tempfile::tempdir()?;
    let creations = sysmon_process_creations()?;
    ensure!(!creations.is_empty(), "no Sysmon process creation in the shared EVTX and OTRF files");
    let rounds = wanted.div_ceil(creations.len());
    let events = dir.path().join("sysmon-1.winlogbeat.jsonl");
    let one = dir.path().join("one.winlogbeat.jsonl");
    write_lines(&events, &creations, rounds)?;
    write_lines(&one, &creations[..1], 1)?;
    let count = rounds * creations.len();
    let catalog = crate::shared("sigma-catalog");
    let pack = dir.path().join("catalog.wasm");
    crate::compile_catalog(&catalog, &pack)?;

    let rsigma_args = |input: &Path| -> Vec<String> {
        let mut args: Vec<String> =
            ["engine", "eval", "-q", "--output-format", "ndjson", "--jq", ".winlog.event_data"]
                .map(String::from)
                .to_vec();
        args.extend([
            "-r".into(),
            catalog.display().to_string(),
            "-e".into(),
            format!("@{}", input.display()),
        ]);
        args
    };
    let rulehost_args = |jobs: &str, input: &Path| -> Vec<String> {
        ["eval", "--quiet", "--matches", "--jobs", jobs, "--rules"]
            .map(String::from)
            .into_iter()
            .chain([pack.display().to_string(), input.display().to_string()])
            .collect()
    };

    // The same matches first: per rule, as many on both sides.
    let theirs = matches_per_rule(&rsigma, &rsigma_args(&events), "rule_id")?;
    let ours = matches_per_rule(&crate::rulehost_binary(), &rulehost_args("2", &events), "rule")?;
    ensure!(ours == theirs, "the matches differ per rule: rulehost {ours:?}, RSigma {theirs:?}");
    let total: u64 = ours.values().sum();

    let sides: [(&str, PathBuf, Vec<String>, Vec<String>); 3] = [
        ("RSigma 0.23.0", rsigma.clone(), rsigma_args(&events), rsigma_args(&one)),
        ("rulehost, 1 job", crate::rulehost_binary(), rulehost_args("1", &events), rulehost_args("1", &one)),
        ("rulehost, 2 jobs", crate::rulehost_binary(), rulehost_args("2", &events), rulehost_args("2", &one)),
    ];
    // Rounds taken in turns, so that a busy spell falls on every side; each side's best.
    let mut best = vec![(Duration::MAX, Duration::MAX, Duration::MAX); sides.len()];
    for _ in 0..3 {
        for ((_, binary, args, one_args), best) in sides.iter().zip(&mut best) {
            let (wall, cpu) = timed(binary, args)?;
            let (start, _) = timed(binary, one_args)?;
            *best = (best.0.min(wall), best.1.min(cpu), best.2.min(start));
        }
    }
    println!();
    println!(
        "| **real records**: {count} Winlogbeat lines, the {} Sysmon process creations of the shared files {rounds} times over; the catalog's 1,415 files; {total} matches on each side, the same per rule ({} rules) | wall, best of 3 | CPU | events/s | start-up (one event) | throughput / RSigma's |",
        creations.len(),
        ours.len()
    );
    println!("|---|---|---|---|---|---|");
    let theirs_wall = best[0].0;
    for ((name, ..), (wall, cpu, start)) in sides.iter().zip(&best) {
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.0} k | {:.2} s | {:.1}x |",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            count as f64 / wall.as_secs_f64() / 1e3,
            start.as_secs_f64(),
            theirs_wall.as_secs_f64() / wall.as_secs_f64()
        );
    }
    Ok(())
}

/// The Sysmon process creations (event 1) of the shared EVTX and OTRF files (the records
/// [`crate::real_json::real_records`] renders), each a Winlogbeat line:
/// the record's System facts under `winlog`, its event data under `winlog.event_data`.
fn sysmon_process_creations() -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for record in crate::real_json::real_records(false)? {
        let record: Value = serde_json::from_str(&record)?;
        let event = &record["Event"];
        let system = &event["System"];
        let channel = system["Channel"].as_str().unwrap_or_default();
        if system["EventID"].as_u64() != Some(1) || channel != "Microsoft-Windows-Sysmon/Operational" {
            continue;
        }
        let Some(data) = event["EventData"].as_object() else { continue };
        // Every value as text, as Winlogbeat writes event data.
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (name.clone(), Value::String(text))
            })
            .collect();
        let line = json!({
            "@timestamp": system["TimeCreated"]["#attributes"]["SystemTime"],
            "winlog": {
                "channel": channel,
                "provider_name": system["Provider"]["#attributes"]["Name"],
                "event_id": 1,
                "record_id": system["EventRecordID"],
                "computer_name": system["Computer"],
                "version": system["Version"],
                "event_data": data,
            },
        });
        lines.push(serde_json::to_string(&line)?);
    }
    Ok(lines)
}

/// `lines`, `rounds` times over, into `path`.
fn write_lines(path: &Path, lines: &[String], rounds: usize) -> Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for _ in 0..rounds {
        for line in lines {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    out.into_inner()?.sync_all()?;
    Ok(())
}

/// How many matches `binary ARGS` writes for each rule, the rule read from each output
/// line's `key`.
fn matches_per_rule(binary: &Path, args: &[String], key: &str) -> Result<BTreeMap<String, u64>> {
    let mut child = Command::new(binary).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut counts = BTreeMap::new();
    for line in BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let line = line?;
        let value: Value =
            serde_json::from_str(&line).with_context(|| format!("{}: {line}", binary.display()))?;
        let rule = value[key].as_str().with_context(|| format!("no {key:?} in {line}"))?;
        *counts.entry(rule.to_owned()).or_insert(0) += 1;
    }
    let status = child.wait()?;
    ensure!(status.success(), "{} {args:?}: {status}", binary.display());
    Ok(counts)
}

/// One run of `binary ARGS`, output thrown away: its wall time and CPU time.
fn timed(binary: &Path, args: &[String]) -> Result<(Duration, Duration)> {
    let cpu_before = crate::children_cpu_time()?;
    let began = Instant::now();
    let status = Command::new(binary).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let wall = began.elapsed();
    ensure!(status.success(), "{} {args:?}: {status}", binary.display());
    Ok((wall, crate::children_cpu_time()? - cpu_before))
}
