//! Sigma packs over real records: every process creation of the shared EVTX and OTRF logs
//! (Sysmon 1 and Security 4688 of public attack samples), repeated, evaluated by packs of 1,
//! 100 and all of the catalog's rules, and by Soft Cell alone, in one run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use rulehost::events::{Field, Input, InputFormat, ProcessEvent, Record};
use rulehost::rules;
use rulehost::runtime::{CompiledRule, Runtime};
use rulehost_sigma::{Matcher, Scratch};

use crate::{BATCH, ROUNDS};

/// The real events are repeated to about this many.
const EVENTS: usize = 100_000;

/// Every process creation of the shared logs, in file order.
fn real_events() -> Result<Vec<ProcessEvent>> {
    let mut files = Vec::new();
    for dir in ["evtx", "otrf"] {
        for entry in std::fs::read_dir(crate::shared(dir))? {
            files.push(entry?.path());
        }
    }
    files.sort();
    let mut events = Vec::new();
    for file in files {
        for record in Input::file(&file).open(InputFormat::Auto)? {
            if let Record::Event(event) = record {
                events.push(*event);
            }
        }
    }
    ensure!(!events.is_empty(), "no process creation in the shared logs");
    Ok(events)
}

/// `events` as Defender rows (their normalized columns), which `eval` reads back as they are.
fn write_rows(path: &Path, events: &[ProcessEvent]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for event in events {
        let row: serde_json::Map<String, serde_json::Value> = Field::ALL
            .iter()
            .filter(|f| !f.is_source() && !event.get(**f).is_empty())
            .map(|&f| (f.name().to_owned(), event.get(f).into()))
            .collect();
        serde_json::to_writer(&mut out, &row)?;
        out.write_all(b"\n")?;
    }
    Ok(out.flush()?)
}

/// The compiled rules of the Sigma files `files`.
fn compiled_rules(files: &[PathBuf]) -> Result<Vec<rulehost_sigma::ir::Rule>> {
    let compilation = rulehost::sigma::compile_paths(files)?;
    Ok(compilation.rules.into_iter().map(|(_, r)| r).collect())
}

/// A pack of the Sigma rules in `files`, compiled (not cached).
fn pack(runtime: &Runtime, files: &[PathBuf]) -> Result<Arc<CompiledRule>> {
    let bytes = rulehost::sigma::pack::build(&compiled_rules(files)?)?;
    Ok(runtime.compile("bench", &bytes)?.into_rules().remove(0))
}

/// An event's columns as the pack's matcher reads them, through a table made once (a name
/// lookup per column read would be timed with the matcher).
struct Columns<'a> {
    event: &'a ProcessEvent,
    fields: &'a [Field],
}

/// For each Sigma column (by its index in `Column::ALL`), the contract's field.
fn column_fields() -> Vec<Field> {
    rulehost_sigma::ir::Column::ALL
        .iter()
        .map(|c| Field::from_name(c.name()).expect("every Sigma column is a contract field"))
        .collect()
}

impl rulehost_sigma::Event for Columns<'_> {
    fn column(&self, column: rulehost_sigma::ir::Column) -> &str {
        self.event.get(self.fields[column as usize])
    }
}

/// What a native run of a matcher over events found.
#[derive(Default)]
struct NativeRun {
    matches: usize,
    candidates: usize,
    hits: usize,
    searched: usize,
    looked_at: usize,
}

/// The matcher over `events` once, natively.
fn run_natively(
    matcher: &Matcher,
    events: &[ProcessEvent],
    fields: &[Field],
    scratch: &mut Scratch,
) -> NativeRun {
    let (mut run, mut matched) = (NativeRun::default(), Vec::new());
    for event in events {
        matched.clear();
        matcher.evaluate(&Columns { event, fields }, scratch, &mut matched);
        run.matches += matched.len();
        run.candidates += scratch.candidates();
        run.hits += scratch.hits();
        run.searched += scratch.searched();
        run.looked_at += scratch.looked_at();
    }
    run
}

/// The pack's matcher run natively over `events`: the best time of `ROUNDS` and the matches.
fn evaluate_natively(matcher: &Matcher, events: &[ProcessEvent]) -> (Duration, usize) {
    let (fields, mut scratch) = (column_fields(), Scratch::default());
    let (mut best, mut matches) = (Duration::MAX, 0);
    for _ in 0..ROUNDS {
        let began = Instant::now();
        matches = run_natively(matcher, events, &fields, &mut scratch).matches;
        best = best.min(began.elapsed());
    }
    (best, matches)
}

/// The catalog's matcher natively over the real events, `BENCH_LOOPS` times (default 20)
/// after `BENCH_BUILDS` builds of it:
/// `BENCH_PROFILE=sigma`, for a profiler.
pub fn profile() -> Result<()> {
    let loops: usize = std::env::var("BENCH_LOOPS").ok().map_or(Ok(20), |v| v.parse())?;
    let events = real_events()?;
    let mut files = rulehost::sigma::files_under(&crate::shared("sigma-catalog"))?;
    files.sort();
    let pack = rulehost_sigma::Pack { format: rulehost_sigma::ir::FORMAT, rules: compiled_rules(&files)? };
    // `BENCH_BUILDS` builds of the matcher first (default 1), for a profile of the build.
    let builds: usize = std::env::var("BENCH_BUILDS").ok().map_or(Ok(1), |v| v.parse())?;
    let built = Instant::now();
    for _ in 1..builds {
        Matcher::new(&pack).map_err(anyhow::Error::msg)?;
    }
    let matcher = Matcher::new(&pack).map_err(anyhow::Error::msg)?;
    let per_build = built.elapsed().as_secs_f64() * 1e3 / builds.max(1) as f64;
    println!("matcher built natively in {per_build:.1} ms ({builds} builds)");
    println!("searched: {:?}", matcher.searched_views());
    let unfiltered: Vec<&str> =
        matcher.unfiltered().iter().map(|&r| pack.rules[r as usize].title.as_str()).collect();
    println!("unfiltered: {unfiltered:?}");
    let (fields, mut scratch, mut total) = (column_fields(), Scratch::default(), NativeRun::default());
    let began = Instant::now();
    for _ in 0..loops {
        let run = run_natively(&matcher, &events, &fields, &mut scratch);
        total.matches += run.matches;
        total.candidates += run.candidates;
        total.hits += run.hits;
        total.searched += run.searched;
        total.looked_at += run.looked_at;
    }
    let evaluated = loops * events.len();
    let per_event = began.elapsed().as_secs_f64() * 1e6 / evaluated as f64;
    println!(
        "{} rules natively: {per_event:.2} µs/event, {} matches, {:.0} bytes searched/event, {:.1} texts found/event, {:.1} rules looked at/event, {:.1} candidate rules/event ({} unfiltered)",
        matcher.len(),
        total.matches,
        total.searched as f64 / evaluated as f64,
        total.hits as f64 / evaluated as f64,
        total.looked_at as f64 / evaluated as f64,
        total.candidates as f64 / evaluated as f64,
        unfiltered.len()
    );
    Ok(())
}

/// The best time over `ROUNDS` of evaluating `events` in batches with a fresh instance's
/// pack (its state built by a first call outside the timing), and the matches.
fn evaluate(rule: &Arc<CompiledRule>, events: &[ProcessEvent]) -> Result<(Duration, usize)> {
    let mut instance = rule.pack().instantiate()?;
    instance.evaluate(&events[..1])?;
    let (mut best, mut matches) = (Duration::MAX, 0);
    for _ in 0..ROUNDS {
        let began = Instant::now();
        let mut found = 0;
        for batch in events.chunks(BATCH) {
            found += instance.evaluate(batch)?.iter().map(Vec::len).sum::<usize>();
        }
        best = best.min(began.elapsed());
        matches = found;
    }
    Ok((best, matches))
}

/// `rulehost eval --rules RULES` on a one-event file: wall time, best of `ROUNDS`.
fn start(rules: &Path, cache: &Path, one: &Path) -> Result<Duration> {
    let binary = crate::rulehost_binary();
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let began = Instant::now();
        let status = Command::new(&binary)
            .args(["eval", "--quiet", "--rules"])
            .arg(rules)
            .arg("--cache-dir")
            .arg(cache)
            .arg(one)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        ensure!(status.success(), "rulehost eval --rules {}: {status}", rules.display());
        best = best.min(began.elapsed());
    }
    Ok(best)
}

pub fn packs() -> Result<()> {
    let runtime = Runtime::new()?;
    let real = real_events()?;
    let events: Vec<ProcessEvent> = real.iter().cycle().take(EVENTS).cloned().collect();
    let catalog = crate::shared("sigma-catalog");
    let mut files = rulehost::sigma::files_under(&catalog)?;
    files.sort();

    let compile_began = Instant::now();
    let all = pack(&runtime, &files)?;
    let compile = compile_began.elapsed();
    let one_rule =
        [crate::shared("sigma/proc_creation_win_webshell_susp_process_spawned_from_webserver.yml")];
    let sizes: [(&str, &[PathBuf], Arc<CompiledRule>); 3] = [
        ("1 rule (Suspicious Process By Web Server Process)", &one_rule, pack(&runtime, &one_rule)?),
        ("100 rules (the catalog's first 100 files)", &files[..100], pack(&runtime, &files[..100])?),
        ("all 1,414 rules that compile", &files, all),
    ];
    let soft_cell = rules::load_bundled(&runtime)?;
    let (baseline, baseline_matches) = evaluate(&soft_cell, &events)?;
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events.len() as f64;

    println!();
    println!(
        "| {} real process creations ({} distinct, from the shared EVTX and OTRF logs), batches of {BATCH} | µs/event | matches | / Soft Cell | the matcher natively: µs/event | Wasm / native |",
        events.len(),
        real.len()
    );
    println!("|---|---|---|---|---|---|");
    println!("| Soft Cell (bundled rule) | {:.2} | {baseline_matches} | 1.00x | | |", per_event(baseline));
    for (name, sources, rule) in &sizes {
        let (time, matches) = evaluate(rule, &events)?;
        let pack =
            rulehost_sigma::Pack { format: rulehost_sigma::ir::FORMAT, rules: compiled_rules(sources)? };
        let matcher = Matcher::new(&pack).map_err(anyhow::Error::msg)?;
        let (native, native_matches) = evaluate_natively(&matcher, &events);
        ensure!(native_matches == matches, "{name}: {matches} matches in Wasm, {native_matches} natively");
        println!(
            "| Sigma pack, {name} | {:.2} | {matches} | {:.2}x | {:.2} | {:.2}x |",
            per_event(time),
            time.as_secs_f64() / baseline.as_secs_f64(),
            per_event(native),
            time.as_secs_f64() / native.as_secs_f64()
        );
    }

    // Start-up: the catalog as YAML (compiled on load) and as a compiled pack, with an empty
    // and with a warm component cache.
    let dir = tempfile::tempdir()?;
    let one = crate::one_event_file(dir.path())?;
    let compiled = dir.path().join("catalog.wasm");
    let binary = crate::rulehost_binary();
    crate::compile_catalog(&catalog, &compiled)?;
    let pack_bytes = std::fs::metadata(&compiled)?.len();
    // The cold start, with its peak RSS: compiling the pack is the most memory a start takes.
    let cold_cache = || -> Result<(Duration, u64)> {
        let (mut best, mut peak) = (Duration::MAX, 0);
        for round in 0..ROUNDS {
            let cache = dir.path().join(format!("cold-{round}"));
            let began = Instant::now();
            let mut child = Command::new(&binary)
                .args(["eval", "--quiet", "--rules"])
                .arg(&catalog)
                .arg("--cache-dir")
                .arg(&cache)
                .arg(&one)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let (status, run_peak) = crate::wait_with_peak(&mut child)?;
            peak = peak.max(run_peak);
            ensure!(status.success());
            best = best.min(began.elapsed());
        }
        Ok((best, peak))
    };
    let (cold, cold_peak) = cold_cache()?;
    let warm_cache = dir.path().join("warm");
    start(&catalog, &warm_cache, &one)?;
    let warm_yaml = start(&catalog, &warm_cache, &one)?;
    start(&compiled, &warm_cache, &one)?;
    let warm_pack = start(&compiled, &warm_cache, &one)?;
    let rows = dir.path().join("events.jsonl");
    write_rows(&rows, &events)?;
    if std::env::var_os("BENCH_KEEP").is_some() {
        std::fs::copy(&rows, "target/sigma-bench-rows.jsonl")?;
        std::fs::copy(&compiled, "target/sigma-bench-catalog.wasm")?;
    }
    let (peak_time, peak) = crate::binary_run_with(&["--rules", &compiled.display().to_string()], &rows)?;
    println!();
    println!("| the catalog (1,415 files) | seconds |");
    println!("|---|---|");
    println!("| compile in-process: YAML to a loaded pack (no cache) | {:.2} |", compile.as_secs_f64());
    println!(
        "| `eval --rules catalog/`, empty cache, start to exit (one event; peak RSS {} MiB) | {:.3} |",
        cold_peak >> 20,
        cold.as_secs_f64()
    );
    println!("| `eval --rules catalog/`, warm cache | {:.3} |", warm_yaml.as_secs_f64());
    println!(
        "| `eval --rules catalog.wasm` ({} KiB pack), warm cache | {:.3} |",
        pack_bytes >> 10,
        warm_pack.as_secs_f64()
    );
    println!(
        "| `eval --rules catalog.wasm` over the {} events, all cores, warm cache: {:.2} s, peak RSS | {} MiB |",
        events.len(),
        peak_time.as_secs_f64(),
        peak >> 20
    );
    Ok(())
}
