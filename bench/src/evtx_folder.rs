//! Binary EVTX as analysts hold it: a folder of the shared EVTX files (real records of
//! public attack samples) copied to about 5,000 files, as a triage collection is, evaluated
//! by the `rulehost` binary with one job and with every core, with Soft Cell and with the
//! whole Sigma catalog; then what the catalog's cost is made of, beside packs of its first
//! rule and of its first 100 rules.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::binary_runs;

/// The folder holds about this many files.
const FILES: usize = 5_000;

/// `BENCH_ONLY=evtx`.
pub fn folder() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs)?;
    let mut sources: Vec<PathBuf> =
        std::fs::read_dir(crate::shared("evtx"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
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
    crate::compile_catalog(&crate::shared("sigma-catalog"), &catalog)?;
    let records = summary(&binary, &[], &logs)?.records;
    let catalog = catalog.display().to_string();
    println!();
    println!(
        "| {files} EVTX files ({} MB, {records} real records), `rulehost eval DIR`, best of 3 | jobs | wall | CPU | records/s | peak RSS |",
        bytes >> 20
    );
    println!("|---|---|---|---|---|---|");
    // Soft Cell's CPU and the catalog's wall and CPU on every core, for the packs' table.
    let (mut soft_cell_cpu, mut catalog_on_two) = (Duration::ZERO, None);
    for (name, rules) in
        [("Soft Cell", vec![]), ("the Sigma catalog (1,414 rules)", vec!["--rules", catalog.as_str()])]
    {
        let mut walls = Vec::new();
        for jobs in ["1", "2"] {
            let mut args = vec!["--jobs", jobs];
            args.extend_from_slice(&rules);
            let crate::BinaryRuns { wall, peak, cpu } = binary_runs(&args, &logs)?;
            match (rules.is_empty(), jobs) {
                (true, "2") => soft_cell_cpu = cpu,
                (false, "2") => catalog_on_two = Some((wall, cpu)),
                _ => {}
            }
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
    // What the catalog's cost is made of: the matcher's search, which a pack of 100 rules
    // already runs over every value, the rules' texts found and conditions, and the matches'
    // windows and alerts. Each pack's throughput against Soft Cell's from runs taken in turns
    // (the bests above are a minute apart), on every core.
    let mut files = rulehost::sigma::files_under(&crate::shared("sigma-catalog"))?;
    files.sort();
    let (first, hundred) = (dir.path().join("first.wasm"), dir.path().join("hundred.wasm"));
    crate::compile_sigma(&files[..1], &first)?;
    crate::compile_sigma(&files[..100], &hundred)?;
    let (first, hundred) = (first.display().to_string(), hundred.display().to_string());
    println!();
    println!(
        "| packs over the same files, 2 jobs | matches | wall | CPU | CPU added per event evaluated, over Soft Cell's | throughput / Soft Cell's, {} alternated pairs |",
        crate::ALTERNATED_PAIRS
    );
    println!("|---|---|---|---|---|---|");
    for (name, pack, measured) in [
        ("the catalog's first rule", first.as_str(), None),
        ("its first 100 rules", hundred.as_str(), None),
        ("the catalog (1,414 rules)", catalog.as_str(), catalog_on_two),
    ] {
        let Summary { evaluated, matches, .. } = summary(&binary, &["--rules", pack], &logs)?;
        let (wall, cpu) = match measured {
            Some(measured) => measured,
            None => binary_runs(&["--jobs", "2", "--rules", pack], &logs).map(|run| (run.wall, run.cpu))?,
        };
        let added = (cpu.as_secs_f64() - soft_cell_cpu.as_secs_f64()) * 1e6 / evaluated.max(1) as f64;
        let ratios = crate::alternated_ratios(&["--rules", pack], &[], &logs)?;
        println!(
            "| {name} | {matches} | {:.2} s | {:.2} s | {added:.1} µs ({evaluated} events) | {} |",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            crate::ratios_cell(&ratios)
        );
    }
    Ok(())
}

/// What `rulehost eval` says it did, from its summary line.
struct Summary {
    records: u64,
    evaluated: u64,
    matches: u64,
}

/// [`Summary`] of `rulehost eval ARGS LOGS`.
fn summary(binary: &Path, args: &[&str], logs: &Path) -> Result<Summary> {
    let output = Command::new(binary).arg("eval").args(args).arg(logs).stdout(Stdio::null()).output()?;
    ensure!(output.status.success(), "rulehost eval {}", logs.display());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|l| l.contains(" records read: ")).unwrap_or_default();
    let line = line.trim_start_matches("rulehost: ");
    // "N records read: N evaluated, …; N matches, N alerts": the number before each word.
    let before = |word: &str| -> Result<u64> {
        let at = line.find(word).ok_or_else(|| anyhow::anyhow!("no {word:?} in {line:?}"))?;
        let number = line[..at].trim_end().rsplit([' ', ':', ';', ',']).next().unwrap_or_default();
        Ok(number.parse()?)
    };
    Ok(Summary {
        records: before(" records read")?,
        evaluated: before(" evaluated")?,
        matches: before(" matches")?,
    })
}

fn ratio(slow: Duration, fast: Duration) -> f64 {
    slow.as_secs_f64() / fast.as_secs_f64()
}
