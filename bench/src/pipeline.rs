//! One pipeline behind `eval` and `run`: the `rulehost` binary over the same bytes as a
//! stream (through a pipe from `cat`) and as a file, 2 jobs, on generated Defender rows,
//! generated Windows events and real Windows records.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::generate;

/// Runs of each measurement, alternating; the best counts.
const RUNS: usize = 3;

/// `rulehost ARGS` reading `input` through a pipe (`stream`) or by its path; wall time.
fn timed_run(args: &[&str], input: &Path, stream: bool) -> Result<Duration> {
    let began = Instant::now();
    let status = if stream {
        let mut cat = Command::new("cat").arg(input).stdout(Stdio::piped()).spawn()?;
        let pipe = cat.stdout.take().context("cat's stdout")?;
        let status = Command::new(crate::rulehost_binary())
            .args(args)
            .arg("-")
            .stdin(pipe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        cat.wait()?;
        status
    } else {
        Command::new(crate::rulehost_binary())
            .args(args)
            .arg(input)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?
    };
    ensure!(status.success(), "rulehost {args:?} {}: {status}", input.display());
    Ok(began.elapsed())
}

/// Every record of the shared EVTX files (as evtx_dump renders them, `#attributes` shape)
/// and of the OTRF datasets, one JSON document per line.
pub(crate) fn shared_record_lines() -> Result<Vec<String>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let mut lines: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(data.join("evtx"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "evtx") {
            let mut parser = evtx::EvtxParser::from_path(&path)?;
            for record in parser.records_json_value() {
                lines.push(serde_json::to_string(&record?.data)?);
            }
        }
    }
    for entry in std::fs::read_dir(data.join("otrf"))? {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(entry?.path())?)?;
        for i in 0..archive.len() {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut archive.by_index(i)?, &mut text)?;
            lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned));
        }
    }
    Ok(lines)
}

/// Real Windows records: every record of the shared EVTX files (as evtx_dump JSON lines) and
/// of the OTRF datasets, repeated until there are at least `records`.
fn real_records(path: &Path, records: usize) -> Result<(usize, usize)> {
    let lines = shared_record_lines()?;
    let distinct = lines.len();
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let mut written = 0;
    while written < records {
        for line in &lines {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        written += distinct;
    }
    out.flush()?;
    Ok((distinct, written))
}

/// The table of `run` against `eval` on a stream, and `eval` on a file against a stream.
pub fn run_vs_eval() -> Result<()> {
    // `PIPELINE_DIR` keeps the inputs, for a profiler.
    let kept = std::env::var_os("PIPELINE_DIR").map(PathBuf::from);
    let scratch = tempfile::tempdir()?;
    let dir = kept.as_deref().unwrap_or(scratch.path());
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(rules.join("soft-cell.wasm"), rulehost::rules::BUNDLED_SOFT_CELL)?;
    let count: u64 = std::env::var("PIPELINE_EVENTS").ok().map_or(Ok(500_000), |v| v.parse())?;
    let defender = dir.join("defender.jsonl");
    generate::write_defender_jsonl(&mut BufWriter::new(std::fs::File::create(&defender)?), count, 5, 7)?;
    let windows = dir.join("windows.jsonl");
    generate::write_windows_jsonl(&mut BufWriter::new(std::fs::File::create(&windows)?), count, 11)?;
    let real = dir.join("real.jsonl");
    let (distinct, written) = real_records(&real, count as usize)?;
    let rules_arg = rules.display().to_string();
    let eval_args = ["eval", "--quiet", "--jobs", "2"];
    let run_args = ["run", "--rules", &rules_arg, "--jobs", "2", "--input-format", "jsonl"];
    println!();
    println!(
        "| 2 jobs, `rulehost` binary, best of {RUNS} | eval FILE s | eval - s | run - s | **run - / eval -** | **eval FILE / eval -** |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, path) in [
        (format!("generated Defender rows, {count}"), &defender),
        (format!("generated Windows evtx_dump JSONL, {count}"), &windows),
        (format!("real Windows records ({distinct} distinct, repeated to {written})"), &real),
    ] {
        let (mut file, mut stream, mut live) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..RUNS {
            file = file.min(timed_run(&eval_args, path, false)?);
            stream = stream.min(timed_run(&eval_args, path, true)?);
            live = live.min(timed_run(&run_args, path, true)?);
        }
        // Throughput ratios: above 1 the first is faster.
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | **{:.2}** | **{:.2}** |",
            file.as_secs_f64(),
            stream.as_secs_f64(),
            live.as_secs_f64(),
            stream.as_secs_f64() / live.as_secs_f64(),
            stream.as_secs_f64() / file.as_secs_f64(),
        );
    }
    Ok(())
}
