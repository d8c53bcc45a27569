//! Windows JSON lines made of **real records**: every record of the shared EVTX files
//! rendered as evtx_dump renders it (the evtx crate), and every record of the shared OTRF
//! exports put into the same shape (their System facts under `System`, their event data
//! under `EventData`), repeated to about a million lines; once with XML attributes under
//! `#attributes`, once with them beside their element (`--separate-json-attributes`).
//! `BENCH_ONLY=real-json` (`REAL_JSON_LINES` sets the lines; `BENCH_KEEP=1` keeps the inputs in
//! `target/` for a profiler).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use evtx::{EvtxParser, ParserSettings};
use rulehost::events::{Input, InputFormat};
use serde_json::{Map, Value, json};

use crate::read_vs_eval;

/// The lines of each input, about.
const LINES: usize = 1_000_000;

/// `BENCH_ONLY=real-json`.
pub fn real_json_lines() -> Result<()> {
    let lines: usize = std::env::var("REAL_JSON_LINES").ok().map_or(Ok(LINES), |v| v.parse())?;
    let dir = tempfile::tempdir()?;
    let creations = process_creations()?;
    let catalog = dir.path().join("catalog.wasm");
    crate::compile_catalog(&crate::shared("sigma-catalog"), &catalog)?;
    for separate in [false, true] {
        let records = real_records(separate)?;
        let path = dir.path().join(if separate { "separate.jsonl" } else { "attributes.jsonl" });
        let mut out = BufWriter::new(std::fs::File::create(&path)?);
        let rounds = lines.div_ceil(records.len());
        for _ in 0..rounds {
            for record in &records {
                out.write_all(record.as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        out.into_inner()?.sync_all()?;
        let count = (rounds * records.len()) as u64;
        let shape = if separate { "attributes beside their element" } else { "`#attributes`" };
        // The lines carry every process creation of the files they were made from.
        let evaluated = rounds as u64 * creations;
        let title = |jobs, size: f64| {
            format!(
                "**real records**: evtx_dump JSON lines, {shape}, {count} lines ({evaluated} process creations, {size:.0} MiB), {jobs} jobs"
            )
        };
        let soft_cell = read_vs_eval(&path, count, evaluated, &title)?;
        // Issue 17's goal: the whole catalog at Soft Cell's events/s, within 1.5x.
        let (time, peak) = crate::binary_run_with(&["--rules", &catalog.display().to_string()], &path)?;
        println!(
            "| the binary with the Sigma catalog (1,414 rules), start to exit | {:.2} | {} |",
            time.as_secs_f64(),
            crate::rate(count, time)
        );
        println!("| peak RSS of that run | {} MiB | |", peak >> 20);
        println!(
            "| **the catalog / Soft Cell throughput** (binary runs) | **{:.2}** | |",
            soft_cell.as_secs_f64() / time.as_secs_f64()
        );
        // The same ratio from runs taken in turns: the two bests above are minutes apart.
        let ratios = crate::alternated_ratios(&["--rules", &catalog.display().to_string()], &[], &path)?;
        println!(
            "| the catalog / Soft Cell throughput, {} alternated pairs of runs | {} | |",
            crate::ALTERNATED_PAIRS,
            crate::ratios_cell(&ratios)
        );
        if std::env::var_os("BENCH_KEEP").is_some() {
            let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(path.file_name().expect("named"));
            std::fs::rename(&path, &kept).or_else(|_| std::fs::copy(&path, &kept).map(drop))?;
            println!("kept {}", kept.display());
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The process creations `rulehost` reads in the shared EVTX and OTRF files themselves.
fn process_creations() -> Result<u64> {
    let mut count = 0;
    for dir in ["evtx", "otrf"] {
        for entry in std::fs::read_dir(crate::shared(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "evtx" || e == "zip") {
                let records = Input::file(&path).open(InputFormat::Auto)?;
                count += records.filter(|r| matches!(r, rulehost::events::Record::Event(_))).count() as u64;
            }
        }
    }
    Ok(count)
}

/// Every record of the shared EVTX and OTRF files, one evtx_dump JSON line each.
pub(crate) fn real_records(separate: bool) -> Result<Vec<String>> {
    let mut records = Vec::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(crate::shared("evtx"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "evtx")) {
        let settings = ParserSettings::new().num_threads(1).separate_json_attributes(separate);
        let mut parser = EvtxParser::from_path(file)?.with_configuration(settings);
        for record in parser.records_json_value() {
            let record = record.with_context(|| file.display().to_string())?;
            records.push(serde_json::to_string(&record.data)?);
        }
    }
    let mut zips: Vec<PathBuf> =
        std::fs::read_dir(crate::shared("otrf"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    zips.sort();
    for zip in zips {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip)?)?;
        for i in 0..archive.len() {
            let mut text = String::new();
            archive.by_index(i)?.read_to_string(&mut text)?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let row: Map<String, Value> =
                    serde_json::from_str(line).with_context(|| zip.display().to_string())?;
                records.push(serde_json::to_string(&as_evtx_dump(&row, separate))?);
            }
        }
    }
    Ok(records)
}

/// Keys of the OTRF exports that are facts of the collector or of `System`, not event data.
const NOT_EVENT_DATA: &[&str] = &[
    "@timestamp",
    "@version",
    "Activity",
    "Channel",
    "Computer",
    "EventData",
    "EventID",
    "EventOriginId",
    "EventRecordID",
    "EventSourceName",
    "EventTime",
    "EventType",
    "Hostname",
    "Keywords",
    "Level",
    "ManagementGroupName",
    "Message",
    "Opcode",
    "Provider",
    "ProviderGuid",
    "RecordNumber",
    "SourceComputerId",
    "SourceName",
    "SourceSystem",
    "Task",
    "TenantId",
    "TimeCreated",
    "TimeGenerated",
    "Type",
    "Version",
    "_ResourceId",
];

/// An OTRF row (HELK flat JSON, or a Sentinel `WindowsEvent` / `SecurityEvent` export) in
/// evtx_dump's shape.
fn as_evtx_dump(row: &Map<String, Value>, separate: bool) -> Value {
    let first = |names: &[&str]| names.iter().find_map(|n| row.get(*n).filter(|v| !v.is_null())).cloned();
    let provider = first(&["SourceName", "Provider", "EventSourceName"]).unwrap_or(Value::Null);
    let time = first(&["TimeCreated", "TimeGenerated", "@timestamp"]).unwrap_or(Value::Null);
    let mut data = Map::new();
    match row.get("EventData") {
        Some(Value::String(text)) if text.trim_start().starts_with('<') => data.extend(xml_data(text)),
        Some(Value::String(text)) => {
            if let Ok(Value::Object(map)) = serde_json::from_str(text) {
                data.extend(map);
            }
        }
        _ => {}
    }
    for (name, value) in row {
        if !NOT_EVENT_DATA.contains(&name.as_str()) && !data.contains_key(name) {
            data.insert(name.clone(), value.clone());
        }
    }
    let mut system = Map::new();
    let mut element = |name: &str, attributes: Value| {
        if separate {
            system.insert(name.to_owned(), Value::Null);
            system.insert(format!("{name}_attributes"), attributes);
        } else {
            system.insert(name.to_owned(), json!({ "#attributes": attributes }));
        }
    };
    element("Provider", json!({ "Name": provider }));
    element("TimeCreated", json!({ "SystemTime": time }));
    for (key, names) in [
        ("EventID", &["EventID"][..]),
        ("Version", &["Version"][..]),
        ("EventRecordID", &["RecordNumber", "EventRecordID"][..]),
        ("Channel", &["Channel"][..]),
        ("Computer", &["Hostname", "Computer"][..]),
    ] {
        if let Some(value) = first(names) {
            system.insert(key.to_owned(), value);
        }
    }
    json!({ "Event": { "System": system, "EventData": data } })
}

/// The `<Data Name="..">..</Data>` pairs of a Sentinel `SecurityEvent`'s `EventData` string.
fn xml_data(text: &str) -> Map<String, Value> {
    let mut data = Map::new();
    for part in text.split("<Data Name=\"").skip(1) {
        let Some((name, rest)) = part.split_once('"') else { continue };
        let value = match rest.strip_prefix(">").and_then(|r| r.split_once("</Data>")) {
            Some((value, _)) => value,
            None => "",
        };
        let value = value
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        data.insert(name.to_owned(), Value::String(value));
    }
    data
}
