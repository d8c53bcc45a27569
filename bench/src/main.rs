//! `make bench`: rulehost's figures, each a ratio of two measurements taken in one run
//! (the machines are shared and noisy; a ratio survives that, a rate does not).
//!
//! 1. Wasm vs native: the Soft Cell predicate over the same events, as the component
//!    (packing, the call, the guest) and as native Rust (the same packing and predicate).
//! 2. End to end vs parse-only: `eval` over a JSON lines file, against only reading and
//!    normalizing the same file.
//!
//! 3. Sigma packs: µs per real process-creation event for 1, 100 and every rule of the
//!    catalog, against Soft Cell over the same events; compile and start-up times.
//!
//! `BENCH_EVENTS` sets the number of events (default 1,000,000); `BENCH_ONLY=startup`,
//! `=windows`, `=real-json`, `=pipeline`, `=sigma`, `=evtx`, `=jobs`, `=parse` or `=predicate` runs only that measurement (`parse`: eval
//! vs parse-only; `predicate`: Wasm vs native and the sandbox's cost); `BENCH_PROFILE=wasm` or `=native` runs one side of Wasm vs native
//! over and over for a profiler (with `RULEHOST_PERF_MAP=1`, perf names guest functions);
//! `BENCH_PROFILE=sigma` runs the catalog's matcher natively over the real process creations
//! (`BENCH_LOOPS` times); `BENCH_KEEP=1` with `BENCH_ONLY=sigma` keeps the rows and the
//! compiled catalog in `target/` for profiling the binary. `BENCH_ONLY=kafka` (not in the
//! full run: it needs `make tansu`) times Kafka consumer group members against `eval`
//! (`BENCH_KAFKA_EVENTS`, default 600,000). `BENCH_ONLY=peer` (not in the full run: it needs
//! `make rsigma`) runs the catalog beside RSigma, a Sigma engine in Rust, over the same real
//! process creations (`PEER_EVENTS`, default 100,000).

mod evtx_folder;
mod generate;
mod kafka;
mod peer;
mod pipeline;
mod real_json;
mod sigma;

use std::io::BufWriter;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rulehost::eval::{self, EvalOptions};
use rulehost::events::{Field, Input, InputFormat, ProcessEvent, Record};
use rulehost::rules;
use rulehost::runtime::Runtime;
use rulehost::sinks::JsonLines;
use rulehost_sdk::{Batch, Rule};
use soft_cell::SoftCell;

/// The allocator the `rulehost` binary uses, so that in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rounds of each measurement; the best round counts (the least disturbed by neighbours).
const ROUNDS: usize = 5;
/// Events per rule call, as `eval` uses by default.
const BATCH: usize = eval::DEFAULT_BATCH_SIZE;
/// The share of events that match.
const MATCH_PERCENT: u64 = 5;

fn main() -> Result<()> {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    // These two need no generated Defender input.
    match only.as_str() {
        "startup" => return startup(),
        "windows" => return windows_jsonl(),
        "real-json" => return real_json::real_json_lines(),
        "sigma" => return sigma::packs(),
        "evtx" => return evtx_folder::folder(),
        "kafka" => return kafka::group_vs_file(),
        "peer" => return peer::rsigma(),
        "kafka-parse" => return kafka::message_parse(),
        _ if std::env::var("BENCH_PROFILE").as_deref() == Ok("sigma") => return sigma::profile(),
        "pipeline" => return pipeline::run_vs_eval(),
        _ => {}
    }
    let count: u64 = std::env::var("BENCH_EVENTS").ok().map_or(Ok(1_000_000), |v| v.parse())?;
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("defender.jsonl");
    let file = std::fs::File::create(&jsonl)?;
    let expected_matches =
        generate::write_defender_jsonl(&mut BufWriter::new(file), count, MATCH_PERCENT, 7)?;
    let size = std::fs::metadata(&jsonl)?.len();
    println!("input: {count} Defender rows, {expected_matches} matching, {:.0} MiB", size as f64 / 1048576.0);

    let input = Input::file(&jsonl);
    let events: Vec<ProcessEvent> = input
        .open(InputFormat::Auto)?
        .filter_map(|r| if let Record::Event(e) = r { Some(*e) } else { None })
        .collect();
    ensure!(events.len() as u64 == count, "read {} of {count} events", events.len());

    // 1. Wasm vs native.
    let Some(rule) = wasm_vs_native(&events, expected_matches)? else {
        return Ok(()); // BENCH_PROFILE
    };
    if only == "predicate" {
        return sandbox_cost(&events, expected_matches);
    }
    if only == "jobs" {
        return jobs_speedup(&[rule], &jsonl, count);
    }

    // 2. End to end vs parse-only.
    let bundled = vec![rule.clone()];
    end_to_end_vs_parse_only(&bundled, &input, count, expected_matches, size)?;
    if only == "parse" {
        return Ok(());
    }
    let (time, peak) = binary_run(&jsonl)?;
    println!(
        "| `rulehost eval` binary, all cores, start to exit | {:.2} | {} |",
        time.as_secs_f64(),
        rate(count, time)
    );
    println!("| peak RSS of that run ({:.0} MiB input) | {} MiB | |", size as f64 / 1048576.0, peak >> 20);

    jobs_speedup(&bundled, &jsonl, count)?;
    evtx_vs_parser(&bundled)?;
    sandbox_cost(&events, expected_matches)?;
    drop(events);
    hot_swap(&jsonl, count)?;
    startup()?;
    windows_jsonl()?;
    real_json::real_json_lines()?;
    pipeline::run_vs_eval()?;
    sigma::packs()?;
    evtx_folder::folder()?;
    Ok(())
}

/// 2. `eval` over the Defender file against reading and normalizing it alone (one job
///    each), best of `ROUNDS`, alternating.
fn end_to_end_vs_parse_only(
    rules: &[std::sync::Arc<rulehost::runtime::CompiledRule>],
    input: &Input,
    count: u64,
    expected_matches: u64,
    size: u64,
) -> Result<()> {
    let options = EvalOptions::default();
    let (mut parse, mut end_to_end) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let (time, read) = timed(|| -> Result<u64> { Ok(input.open(InputFormat::Auto)?.count() as u64) });
        ensure!(read? == count);
        parse = parse.min(time);
        let (time, summary) = timed(|| {
            let mut output = JsonLines::new(std::io::sink());
            eval::evaluate(rules, std::slice::from_ref(input), &options, &mut output, &mut |_| {})
        });
        let summary = summary.context("eval")?;
        ensure!(summary.matches == expected_matches && summary.evaluated == count);
        end_to_end = end_to_end.min(time);
    }
    println!();
    println!("| {count}-line Defender JSONL ({:.0} MiB) | seconds | events/s |", size as f64 / 1048576.0);
    println!("|---|---|---|");
    println!("| parse-only (read + normalize) | {:.2} | {} |", parse.as_secs_f64(), rate(count, parse));
    println!("| `eval` end to end | {:.2} | {} |", end_to_end.as_secs_f64(), rate(count, end_to_end));
    println!(
        "| **eval / parse-only throughput** | **{:.2}** | |",
        parse.as_secs_f64() / end_to_end.as_secs_f64()
    );
    Ok(())
}

/// 1. The Soft Cell predicate over `events` in batches, as the component and natively over
///    the same packing; also the packing alone, so the table shows where the time goes.
fn wasm_vs_native(
    events: &[ProcessEvent],
    expected_matches: u64,
) -> Result<Option<std::sync::Arc<rulehost::runtime::CompiledRule>>> {
    let count = events.len() as u64;
    let rule = rules::load_bundled(&Runtime::new()?)?;
    let mut instance = rule.pack().instantiate()?;
    // `BENCH_PROFILE=wasm` or `=native`: only that side, `BENCH_LOOPS` times over the
    // events (default 100), for a profiler (perf, `valgrind --tool=callgrind`).
    if let Ok(side) = std::env::var("BENCH_PROFILE") {
        let loops: usize = std::env::var("BENCH_LOOPS").ok().map_or(Ok(100), |v| v.parse())?;
        for _ in 0..loops {
            let matches = match side.as_str() {
                "wasm" => {
                    events.chunks(BATCH).map(|c| instance.evaluate(c).map_or(0, |m| m[0].len() as u64)).sum()
                }
                "native" => events.chunks(BATCH).map(native_matches).sum::<u64>(),
                other => anyhow::bail!("BENCH_PROFILE is wasm or native, not {other:?}"),
            };
            ensure!(matches == expected_matches, "{side} found another number of matches");
        }
        return Ok(None);
    }
    let (mut wasm, mut native, mut packing) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let (time, matches) = timed(|| {
            events
                .chunks(BATCH)
                .map(|chunk| instance.evaluate(chunk).map(|m| m[0].len() as u64))
                .sum::<Result<u64, _>>()
        });
        ensure!(matches? == expected_matches, "the component found another number of matches");
        wasm = wasm.min(time);
        let (time, matches) = timed(|| events.chunks(BATCH).map(native_matches).sum::<u64>());
        ensure!(matches == expected_matches, "the native predicate found another number of matches");
        native = native.min(time);
        let (time, packed) =
            timed(|| events.chunks(BATCH).map(|chunk| native_batch(chunk).len()).sum::<usize>());
        ensure!(packed as u64 == count);
        packing = packing.min(time);
    }
    let per_event = |d: Duration| d.as_nanos() as f64 / count as f64;
    println!();
    println!("| Soft Cell predicate, {count} events, batches of {BATCH} | ns/event | events/s |");
    println!("|---|---|---|");
    println!("| packing alone (both sides do it) | {:.1} | {} |", per_event(packing), rate(count, packing));
    println!("| native Rust (same packing) | {:.1} | {} |", per_event(native), rate(count, native));
    println!("| Wasm component | {:.1} | {} |", per_event(wasm), rate(count, wasm));
    println!("| **Wasm / native** | **{:.2}x** | |", wasm.as_secs_f64() / native.as_secs_f64());
    Ok(Some(rule))
}

/// 7. `eval` over an evtx_dump-shaped Windows JSONL log (`WINDOWS_EVENTS` lines, default
///    1,000,000; ~0.6% process creations), all cores, against reading and normalizing the
///    same file alone: the throughput issue's end-to-end figure.
fn windows_jsonl() -> Result<()> {
    let count: u64 = std::env::var("WINDOWS_EVENTS").ok().map_or(Ok(1_000_000), |v| v.parse())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("windows.jsonl");
    let creations =
        generate::write_windows_jsonl(&mut BufWriter::new(std::fs::File::create(&path)?), count, 11)?;
    let title = |jobs, size: f64| {
        format!(
            "evtx_dump-shaped Windows JSONL, {count} events ({creations} process creations, {size:.0} MiB), {jobs} jobs"
        )
    };
    read_vs_eval(&path, count, creations, &title).map(drop)
}

/// `eval` over a Windows JSON lines file of `count` lines and `creations` process creations,
/// all cores, against reading and normalizing it alone (best of 3 each), then the binary
/// over it: a table headed `title(jobs, MiB)`.
pub(crate) fn read_vs_eval(
    path: &std::path::Path,
    count: u64,
    creations: u64,
    title: &dyn Fn(usize, f64) -> String,
) -> Result<Duration> {
    let size = std::fs::metadata(path)?.len();
    let jobs = std::thread::available_parallelism().map_or(1, usize::from);
    let input = Input::file(path).with_jobs(jobs);
    let rules = vec![rules::load_bundled(&Runtime::new()?)?];
    let (mut parse, mut end_to_end) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let (time, read) = timed(|| -> Result<u64> { Ok(input.open(InputFormat::Auto)?.count() as u64) });
        ensure!(read? == count);
        parse = parse.min(time);
        let (time, summary) = timed(|| {
            let mut output = JsonLines::new(std::io::sink());
            let options = EvalOptions { jobs, ..EvalOptions::default() };
            eval::evaluate(&rules, std::slice::from_ref(&input), &options, &mut output, &mut |_| {})
        });
        let summary = summary?;
        ensure!(
            summary.read == count && summary.evaluated == creations && summary.rejected.is_empty(),
            "{summary:?}"
        );
        end_to_end = end_to_end.min(time);
    }
    println!();
    println!("| {} | seconds | events/s |", title(jobs, size as f64 / 1048576.0));
    println!("|---|---|---|");
    println!("| read + normalize only | {:.2} | {} |", parse.as_secs_f64(), rate(count, parse));
    println!("| `eval` end to end | {:.2} | {} |", end_to_end.as_secs_f64(), rate(count, end_to_end));
    println!(
        "| **eval / read-only throughput** | **{:.2}** | |",
        parse.as_secs_f64() / end_to_end.as_secs_f64()
    );
    let (time, peak) = binary_run(path)?;
    println!("| `rulehost eval` binary, start to exit | {:.2} | {} |", time.as_secs_f64(), rate(count, time));
    println!("| peak RSS of that run | {} MiB | |", peak >> 20);
    Ok(time)
}

/// The `rulehost` binary of this workspace's release build.
pub(crate) fn rulehost_binary() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/rulehost")
}

/// `name` under the shared data (`../shared/data`): the real logs and the Sigma catalog.
pub(crate) fn shared(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(name)
}

/// `rulehost sigma compile` of the shared catalog (the folder `catalog`) into `out`.
pub(crate) fn compile_catalog(catalog: &std::path::Path, out: &std::path::Path) -> Result<()> {
    compile_sigma(&[catalog], out)
}

/// `rulehost sigma compile RULES... -o OUT`: the Sigma files and folders `rules` as one pack.
pub(crate) fn compile_sigma(rules: &[impl AsRef<std::ffi::OsStr>], out: &std::path::Path) -> Result<()> {
    let status = std::process::Command::new(rulehost_binary())
        .args(["sigma", "compile"])
        .args(rules)
        .arg("-o")
        .arg(out)
        .stderr(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "rulehost sigma compile: {status}");
    Ok(())
}

/// The peak RSS of process `pid` so far (`VmHWM`), if it is still there.
pub(crate) fn peak_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    Some(kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok()? << 10)
}

/// The best of three runs of the `rulehost eval` binary over `input` (all cores, output
/// thrown away, after one unmeasured run that fills the component cache): its wall time, and
/// the largest peak RSS (`VmHWM`, polled every 2 ms).
fn binary_run(input: &std::path::Path) -> Result<(Duration, u64)> {
    binary_run_with(&[], input)
}

/// `rulehost eval --quiet ARGS INPUT`: the best wall time of three runs and the peak RSS,
/// after one unmeasured run that fills the component cache.
pub(crate) fn binary_run_with(args: &[&str], input: &std::path::Path) -> Result<(Duration, u64)> {
    binary_runs(args, input).map(|run| (run.wall, run.peak))
}

/// What [`binary_runs`] measured.
pub(crate) struct BinaryRuns {
    /// The best wall time.
    pub wall: Duration,
    /// The largest peak RSS.
    pub peak: u64,
    /// The mean CPU time (user and system) of a run.
    pub cpu: Duration,
}

/// Three runs of `rulehost eval --quiet ARGS INPUT` after one unmeasured run that fills
/// the component cache.
pub(crate) fn binary_runs(args: &[&str], input: &std::path::Path) -> Result<BinaryRuns> {
    let (mut best, mut peak, mut cpu_before) = (Duration::MAX, 0u64, Duration::ZERO);
    // A first run, not measured, fills the component cache: the figures are of warm starts
    // (the cold start, which compiles, is measured on its own where it matters).
    for round in 0..4 {
        let (wall, run_peak) = one_binary_run(args, input)?;
        if round == 0 {
            cpu_before = children_cpu_time()?;
            continue;
        }
        peak = peak.max(run_peak);
        best = best.min(wall);
    }
    Ok(BinaryRuns { wall: best, peak, cpu: (children_cpu_time()? - cpu_before) / 3 })
}

/// One run of `rulehost eval --quiet ARGS INPUT`: its wall time and peak RSS.
fn one_binary_run(args: &[&str], input: &std::path::Path) -> Result<(Duration, u64)> {
    use std::process::{Command, Stdio};
    let began = Instant::now();
    let mut child = Command::new(rulehost_binary())
        .args(["eval", "--quiet"])
        .args(args)
        .arg(input)
        .stdout(Stdio::null())
        .spawn()?;
    let (status, peak) = wait_with_peak(&mut child)?;
    ensure!(status.success(), "rulehost eval {}: {status}", input.display());
    Ok((began.elapsed(), peak))
}

/// Pairs of runs, in [`alternated_ratios`].
pub(crate) const ALTERNATED_PAIRS: usize = 5;

/// [`ALTERNATED_PAIRS`] pairs of runs of `rulehost eval --quiet ARGS INPUT`, `slow`'s
/// arguments then `fast`'s, one pair after the other (after one unmeasured run of each): a
/// ratio of two rates taken in turns, so that a busy spell of a shared machine falls on both
/// sides. Each pair's `fast` / `slow` throughput ratio.
pub(crate) fn alternated_ratios(slow: &[&str], fast: &[&str], input: &std::path::Path) -> Result<Vec<f64>> {
    one_binary_run(slow, input)?;
    one_binary_run(fast, input)?;
    (0..ALTERNATED_PAIRS)
        .map(|_| {
            let (slow_wall, _) = one_binary_run(slow, input)?;
            let (fast_wall, _) = one_binary_run(fast, input)?;
            Ok(fast_wall.as_secs_f64() / slow_wall.as_secs_f64())
        })
        .collect()
}

/// `ratios` as a table cell: each to two places, then their median.
pub(crate) fn ratios_cell(ratios: &[f64]) -> String {
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!("{} (median {:.2})", listed.join(", "), sorted[sorted.len() / 2])
}

/// Waits for `child`, polling its peak RSS (`VmHWM`) every 2 ms: its exit status and the
/// peak.
pub(crate) fn wait_with_peak(child: &mut std::process::Child) -> Result<(std::process::ExitStatus, u64)> {
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait()? {
            return Ok((status, peak));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A file of one Defender row in `dir`, for start-up times.
pub(crate) fn one_event_file(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let one = dir.join("one.jsonl");
    std::fs::write(
        &one,
        "{\"Timestamp\":\"2024-05-01T10:00:00Z\",\"DeviceName\":\"web01\",\"FileName\":\"cmd.exe\",\"ProcessCommandLine\":\"cmd /c whoami\",\"InitiatingProcessFileName\":\"w3wp.exe\"}\n",
    )?;
    Ok(one)
}

/// 6. Start-up to the first evaluated event: `rulehost eval` on a one-event file, with an
///    empty component cache (the rule is compiled) and with a warm one, best of 5 each.
fn startup() -> Result<()> {
    use std::process::{Command, Stdio};
    let binary = rulehost_binary();
    let dir = tempfile::tempdir()?;
    let one = one_event_file(dir.path())?;
    let eval = |cache: &std::path::Path| -> Result<Duration> {
        let began = Instant::now();
        let status = Command::new(&binary)
            .args(["eval", "--quiet", "--cache-dir"])
            .arg(cache)
            .arg(&one)
            .stdout(Stdio::null())
            .status()?;
        ensure!(status.success());
        Ok(began.elapsed())
    };
    let (mut cold, mut warm) = (Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        let cache = dir.path().join(format!("cache-{round}"));
        cold = cold.min(eval(&cache)?);
        warm = warm.min(eval(&cache)?);
    }
    println!();
    println!("| start-up to the first evaluated event (`eval`, one event) | ms |");
    println!("|---|---|");
    println!("| cold: the rule is compiled | {:.1} |", cold.as_secs_f64() * 1e3);
    println!("| warm: the compiled component comes from the cache | {:.1} |", warm.as_secs_f64() * 1e3);
    println!("| **cold / warm** | **{:.1}x** |", cold.as_secs_f64() / warm.as_secs_f64());
    Ok(())
}

/// A variant of a component with another digest and the same rule: the component with a
/// custom section appended (a component may end with custom sections).
fn variant(component: &[u8], n: u32) -> Vec<u8> {
    let name = b"bench-variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(size as u8); // < 128: one LEB byte
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// 5. `rulehost run` while its rule is swapped: the latency from a new artifact landing
///    in the rules directory to the swap (applied just before the next batch), p50/p99 over
///    `SWAPS` swaps; and the throughput of a run over the whole file while the rule is
///    swapped every 400 ms, against the same run without swaps.
fn hot_swap(jsonl: &std::path::Path, count: u64) -> Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    const SWAPS: usize = 60;
    let binary = rulehost_binary();
    ensure!(binary.exists(), "{} is not built (make build)", binary.display());
    let dir = tempfile::tempdir()?;
    let deploy = |n: u32| -> Result<Instant> {
        let aside = dir.path().join("rule.wasm.partial");
        std::fs::write(&aside, variant(rules::BUNDLED_SOFT_CELL, n))?;
        let landed = Instant::now();
        std::fs::rename(aside, dir.path().join("rule.wasm"))?;
        Ok(landed)
    };
    let start = |input: &std::path::Path, follow: bool| -> Result<std::process::Child> {
        let mut command = Command::new(&binary);
        command.args(["run", "--rules"]).arg(dir.path()).args(["--input-format", "jsonl"]);
        if follow {
            command.arg("--follow");
        }
        Ok(command.arg(input).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?)
    };

    // Latency: a live stream (a followed file that grows), a swap every 300 ms.
    deploy(0)?;
    let live = dir.path().join("live.jsonl");
    std::fs::write(&live, "")?;
    let mut child = start(&live, true)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("rule swapped") || line.contains("rule loaded") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))?;
    let source = std::fs::read_to_string(jsonl)?;
    let mut rows = source.lines().cycle();
    let mut feed = std::fs::OpenOptions::new().append(true).open(&live)?;
    let mut latencies = Vec::with_capacity(SWAPS);
    for n in 1..=SWAPS as u32 {
        for _ in 0..2000 {
            use std::io::Write;
            writeln!(feed, "{}", rows.next().expect("cycled"))?;
        }
        let landed = deploy(n)?;
        let swapped = rx.recv_timeout(Duration::from_secs(30))?;
        latencies.push(swapped - landed);
        std::thread::sleep(Duration::from_millis(300));
    }
    child.kill()?;
    child.wait()?;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];

    // Throughput: the whole file, without swaps and with a swap every 100 ms.
    let timed_run = |swapping: bool| -> Result<(Duration, usize)> {
        deploy(1000)?;
        let began = Instant::now();
        let mut child = start(jsonl, false)?;
        let stderr = child.stderr.take().expect("piped");
        let drain = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.contains("rule swapped"))
                .count()
        });
        let mut n = 1001;
        while child.try_wait()?.is_none() {
            std::thread::sleep(Duration::from_millis(400));
            if swapping {
                deploy(n)?;
                n += 1;
            }
        }
        let took = began.elapsed();
        Ok((took, drain.join().unwrap_or(0)))
    };
    let (mut quiet, mut busy, mut swaps) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..2 {
        quiet = quiet.min(timed_run(false)?.0);
        let (took, applied) = timed_run(true)?;
        if took < busy {
            (busy, swaps) = (took, applied);
        }
    }
    println!();
    println!("| `rulehost run`, Soft Cell swapped | value |");
    println!("|---|---|");
    println!(
        "| swap latency, artifact landed to swap applied (p50 of {SWAPS}) | {:.1} ms |",
        at(0.5).as_secs_f64() * 1e3
    );
    println!("| swap latency (p99) | {:.1} ms |", at(0.99).as_secs_f64() * 1e3);
    println!("| {count} events, no swap | {} events/s |", rate(count, quiet));
    println!("| {count} events, a swap every 400 ms ({swaps} applied) | {} events/s |", rate(count, busy));
    println!(
        "| **throughput while swapping / without** | **{:.2}** |",
        quiet.as_secs_f64() / busy.as_secs_f64()
    );
    Ok(())
}

/// 4. What the sandbox costs: the Soft Cell rule with the default limits enforced
///    (epoch deadline checks compiled in, memory limiter, a deadline set per call) and with
///    fuel metering too, against the same rule with nothing enforced.
fn sandbox_cost(events: &[ProcessEvent], expected_matches: u64) -> Result<()> {
    let unenforced = rules::load_bundled(&Runtime::unenforced_for_benchmarks()?)?;
    let limited = rules::load_bundled(&Runtime::new()?)?;
    let fueled = rules::load_bundled(&Runtime::with_limits(rulehost::runtime::Limits {
        fuel: Some(u64::MAX / 2),
        ..Default::default()
    })?)?;
    let mut instances =
        [unenforced.pack().instantiate()?, limited.pack().instantiate()?, fueled.pack().instantiate()?];
    let mut best = [Duration::MAX; 3];
    for _ in 0..ROUNDS {
        for (instance, best) in instances.iter_mut().zip(&mut best) {
            let (time, matches) = timed(|| {
                events
                    .chunks(BATCH)
                    .map(|c| instance.evaluate(c).map(|m| m[0].len() as u64))
                    .sum::<Result<u64, _>>()
            });
            ensure!(matches? == expected_matches);
            *best = (*best).min(time);
        }
    }
    let count = events.len() as u64;
    let per_event = |d: Duration| d.as_nanos() as f64 / count as f64;
    println!();
    println!("| Soft Cell in the sandbox, {count} events | ns/event | vs unenforced |");
    println!("|---|---|---|");
    let ratio = |d: Duration| d.as_secs_f64() / best[0].as_secs_f64();
    println!("| no limit enforced | {:.1} | 1.00x |", per_event(best[0]));
    println!(
        "| default limits (deadline + memory) | {:.1} | **{:.2}x** |",
        per_event(best[1]),
        ratio(best[1])
    );
    println!("| default limits + fuel metering | {:.1} | **{:.2}x** |", per_event(best[2]), ratio(best[2]));
    Ok(())
}

/// 2b. `eval` over the same file with one job and with two, and, as the machine's own
///    ceiling for two cores at that moment, two one-job evaluations at once, each over one
///    half of the file: no work shared, nothing handed between threads. Rounds alternate
///    the three; the best of `JOBS_ROUNDS` each counts. Beside the wall time, the process's
///    CPU time (user and system) of each shows the extra work two jobs do in all.
fn jobs_speedup(
    rules: &[std::sync::Arc<rulehost::runtime::CompiledRule>],
    path: &std::path::Path,
    count: u64,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let halves = split_lines_in_half(path, dir.path())?;
    let run = &|input: Input, jobs: usize| -> Result<u64> {
        let options = EvalOptions { jobs, ..EvalOptions::default() };
        let mut output = JsonLines::new(std::io::sink());
        let summary = eval::evaluate(rules, &[input.with_jobs(jobs)], &options, &mut output, &mut |_| {})?;
        Ok(summary.evaluated)
    };
    // Wall and CPU time, best of the rounds each: one job, two jobs, the halves at once.
    let mut best = [(Duration::MAX, Duration::MAX); 3];
    for _ in 0..JOBS_ROUNDS {
        for (config, best) in best.iter_mut().enumerate() {
            let cpu_before = process_cpu_time()?;
            let (wall, evaluated) = timed(|| -> Result<u64> {
                match config {
                    0 => run(Input::file(path), 1),
                    1 => run(Input::file(path), 2),
                    _ => std::thread::scope(|scope| {
                        let threads: Vec<_> = halves
                            .iter()
                            .map(|half| scope.spawn(move || run(Input::file(half), 1)))
                            .collect();
                        threads.into_iter().map(|t| t.join().expect("a half's evaluation panicked")).sum()
                    }),
                }
            });
            ensure!(evaluated? == count);
            let cpu = process_cpu_time()? - cpu_before;
            *best = (best.0.min(wall), best.1.min(cpu));
        }
    }
    let [one, two, ideal] = best;
    let seconds = |d: Duration| d.as_secs_f64();
    println!();
    println!(
        "| `eval`, {count}-line Defender JSONL, best of {JOBS_ROUNDS} | seconds | events/s | CPU seconds |"
    );
    println!("|---|---|---|---|");
    for (name, (wall, cpu)) in [
        ("`--jobs 1`", one),
        ("`--jobs 2`", two),
        ("two `--jobs 1` at once, one half of the file each (this machine's ceiling)", ideal),
    ] {
        println!("| {name} | {:.2} | {} | {:.2} |", seconds(wall), rate(count, wall), seconds(cpu));
    }
    println!("| **speed-up, 1 to 2 jobs** | **{:.2}x** | | |", seconds(one.0) / seconds(two.0));
    println!(
        "| speed-up of the halves at once (the ceiling) | {:.2}x | | |",
        seconds(one.0) / seconds(ideal.0)
    );
    println!("| CPU time, 2 jobs / 1 job | {:.2} | | |", seconds(two.1) / seconds(one.1));
    Ok(())
}

/// Rounds of the jobs measurement: it needs both cores quiet, which on a shared machine
/// takes more tries than the others.
const JOBS_ROUNDS: usize = 5;

/// Writes the lines of `path` into two files in `dir`, the first half of its bytes (to the
/// end of a line) and the rest.
fn split_lines_in_half(path: &std::path::Path, dir: &std::path::Path) -> Result<[std::path::PathBuf; 2]> {
    use std::io::{Read, Seek, SeekFrom};
    // Streamed: the file is as large as the bench's inputs, and its events are in memory.
    let mut file = std::fs::File::open(path)?;
    let half = file.metadata()?.len() / 2;
    file.seek(SeekFrom::Start(half))?;
    let mut window = Vec::new();
    (&mut file).take(1 << 20).read_to_end(&mut window)?;
    let middle = half + memchr::memchr(b'\n', &window).context("no line ends after the middle")? as u64 + 1;
    let halves = [dir.join("first-half.jsonl"), dir.join("second-half.jsonl")];
    file.seek(SeekFrom::Start(0))?;
    std::io::copy(&mut (&mut file).take(middle), &mut std::fs::File::create(&halves[0])?)?;
    std::io::copy(&mut file, &mut std::fs::File::create(&halves[1])?)?;
    Ok(halves)
}

/// The CPU time (user and system, all threads, exited ones included) this process has
/// used, from `/proc/self/stat`, in clock ticks of 10 ms.
fn process_cpu_time() -> Result<Duration> {
    cpu_time_fields(11)
}

/// The CPU time of this process's children that have exited and been waited for.
pub(crate) fn children_cpu_time() -> Result<Duration> {
    cpu_time_fields(13)
}

/// Two times of `/proc/self/stat` added, from field `at` after the command name, in clock
/// ticks of 10 ms.
fn cpu_time_fields(at: usize) -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').context("/proc/self/stat")?.1.split_whitespace().collect();
    // utime and stime: the 14th and 15th fields, the 12th and 13th after the name; cutime
    // and cstime (children) follow them.
    let ticks: u64 = fields
        .get(at..at + 2)
        .context("/proc/self/stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<_, _>>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// 3. `eval` over the shared EVTX files against the `evtx` crate rendering the same
///    records to JSON (what `eval` reads them as), each file read `EVTX_REPEAT` times.
fn evtx_vs_parser(rules: &[std::sync::Arc<rulehost::runtime::CompiledRule>]) -> Result<()> {
    let dir = shared("evtx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "evtx"))
        .collect();
    files.sort();
    let repeat: usize = std::env::var("EVTX_REPEAT").ok().map_or(Ok(20), |v| v.parse())?;
    let inputs: Vec<Input> = files.iter().cycle().take(files.len() * repeat).map(Input::file).collect();
    let settings = evtx::ParserSettings::new().num_threads(1);
    let (mut parse, mut end_to_end) = (Duration::MAX, Duration::MAX);
    let mut records = 0u64;
    for _ in 0..ROUNDS {
        let (time, count) = timed(|| -> Result<u64> {
            let mut count = 0;
            for input in &inputs {
                let mut parser =
                    evtx::EvtxParser::from_path(input.name())?.with_configuration(settings.clone());
                count += parser.records_json_value().filter(|r| r.is_ok()).count() as u64;
            }
            Ok(count)
        });
        records = count?;
        parse = parse.min(time);
        let (time, summary) = timed(|| {
            let mut output = JsonLines::new(std::io::sink());
            eval::evaluate(rules, &inputs, &EvalOptions::default(), &mut output, &mut |_| {})
        });
        ensure!(summary?.read == records, "eval read another number of records than the parser");
        end_to_end = end_to_end.min(time);
    }
    println!();
    println!("| {} EVTX files x {repeat} ({records} records) | seconds | records/s |", files.len());
    println!("|---|---|---|");
    println!("| `evtx` crate, records to JSON | {:.3} | {} |", parse.as_secs_f64(), rate(records, parse));
    println!("| `eval` end to end | {:.3} | {} |", end_to_end.as_secs_f64(), rate(records, end_to_end));
    println!(
        "| **eval / parser throughput** | **{:.2}** | |",
        parse.as_secs_f64() / end_to_end.as_secs_f64()
    );
    Ok(())
}

/// The Soft Cell predicate run natively over one batch, packed as the host packs it.
#[inline(never)]
fn native_matches(chunk: &[ProcessEvent]) -> u64 {
    let batch = native_batch(chunk);
    (0..batch.len()).filter(|&i| SoftCell::matches(&batch.event(i))).count() as u64
}

/// One batch packed as the host packs it for the component: the fields Soft Cell reads.
#[inline(never)]
fn native_batch(chunk: &[ProcessEvent]) -> Batch {
    use rulehost_sdk::Field as F;
    let reads = [
        (Field::InitiatingProcessParentFileName, F::InitiatingProcessParentFileName),
        (Field::InitiatingProcessFileName, F::InitiatingProcessFileName),
        (Field::FileName, F::FileName),
        (Field::ProcessCommandLine, F::ProcessCommandLine),
    ];
    let fields: Vec<Field> = reads.iter().map(|&(host, _)| host).collect();
    let columns = reads
        .iter()
        .zip(rulehost::runtime::pack::columns(chunk, &fields))
        .map(|(&(_, guest), (text, ends))| (guest, text, ends))
        .collect();
    Batch::from_columns(chunk.len(), columns)
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let value = f();
    (start.elapsed(), value)
}

fn rate(count: u64, time: Duration) -> String {
    let per_second = count as f64 / time.as_secs_f64();
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else {
        format!("{:.0} k", per_second / 1e3)
    }
}
