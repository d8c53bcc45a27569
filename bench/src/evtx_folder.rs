//! Binary EVTX as analysts hold it: a folder of the shared EVTX files (real records of
//! public attack samples) copied to about 5,000 files, as a triage collection is, evaluated
//! by the `rulehost` binary with one job and with every core, with Soft Cell and with the
//! whole Sigma catalog.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::binary_runs;

/// The folder holds about this many files.
const FILES: usize = 5_000;

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(name)
}

/// `BENCH_ONLY=evtx`.
pub fn folder() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs)?;
    let mut sources: Vec<PathBuf> =
        std::fs::read_dir(shared("evtx"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    sources.retain(|p| p.extension().is_some_and(|e| e == "evtx"));
    sources.sort();
    let rounds = FILES.div_ceil(sources.len());
    let mut bytes = 0;
    for round in 0..rounds {
        for source in &sources {
            let copy =
                logs.join(format!("{round:04}-{}", source.file_name().expect("a file").to_string_lossy()));
            bytes += std::fs::copy(source, copy)?;
        }
    }
    let files = rounds * sources.len();
    let binary = crate::rulehost_binary();
    let catalog = dir.path().join("catalog.wasm");
    crate::compile_catalog(&shared("sigma-catalog"), &catalog)?;
    let records = count_records(&binary, &logs)?;
    let catalog = catalog.display().to_string();
    println!();
    println!(
        "| {files} EVTX files ({} MB, {records} real records), `rulehost eval DIR`, best of 3 | jobs | wall | CPU | records/s | peak RSS |",
        bytes >> 20
    );
    println!("|---|---|---|---|---|---|");
    for (name, rules) in
        [("Soft Cell", vec![]), ("the Sigma catalog (1,414 rules)", vec!["--rules", catalog.as_str()])]
    {
        let mut walls = Vec::new();
        for jobs in ["1", "2"] {
            let mut args = vec!["--jobs", jobs];
            args.extend_from_slice(&rules);
            let crate::BinaryRuns { wall, peak, cpu } = binary_runs(&args, &logs)?;
            println!(
                "| {name} | {jobs} | {:.2} s | {:.2} s | {:.0} k | {} MiB |",
                wall.as_secs_f64(),
                cpu.as_secs_f64(),
                records as f64 / wall.as_secs_f64() / 1e3,
                peak >> 20
            );
            walls.push(wall);
        }
        println!("| {name}: 2 jobs / 1 job (throughput) | | {:.2}x | | | |", ratio(walls[0], walls[1]));
    }
    // The catalog / Soft Cell throughput from runs taken in turns (the bests above are a
    // minute apart), on every core.
    let ratios = crate::alternated_ratios(&["--rules", catalog.as_str()], &[], &logs)?;
    println!(
        "| the catalog / Soft Cell throughput, {} alternated pairs of runs, all cores | | {} | | | |",
        crate::ALTERNATED_PAIRS,
        crate::ratios_cell(&ratios)
    );
    Ok(())
}

/// How many records `rulehost eval` reads in `logs` (from its summary).
fn count_records(binary: &Path, logs: &Path) -> Result<u64> {
    let output = Command::new(binary).arg("eval").arg(logs).stdout(Stdio::null()).output()?;
    ensure!(output.status.success(), "rulehost eval {}", logs.display());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stderr.lines().find(|l| l.contains(" records read: ")).unwrap_or_default();
    let number = summary.trim_start_matches("rulehost: ").split(' ').next().unwrap_or_default();
    Ok(number.parse()?)
}

fn ratio(slow: Duration, fast: Duration) -> f64 {
    slow.as_secs_f64() / fast.as_secs_f64()
}
