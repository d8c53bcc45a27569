//! The Sigma catalog against pySigma, the reference implementation: events generated from
//! every rule's detection items (tests/pysigma/differential.py), read as Sysmon records by
//! rulehost's own reader, evaluated by the compiled pack and by pySigma's SQLite backend over
//! the same values; the verdicts must agree on every rule and every event.
//!
//! pySigma runs in the virtual environment that `make pysigma` (a step of `make test`)
//! creates in `target/pysigma`, or the Python named by `RULEHOST_PYSIGMA_PYTHON`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use rulehost::events::{Field, Origin, Position, ProcessEvent, Record, read_json_record};
use rulehost::runtime::Runtime;
use rulehost_sigma::ir::SIGMA_FIELDS;
use rulehost_sigma::{Column, matcher};
use serde_json::{Map, Value, json};

use crate::util::{shared, workspace};

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("RULEHOST_PYSIGMA_PYTHON") {
        return python.into();
    }
    let venv = workspace().join("target/pysigma/bin/python");
    assert!(
        venv.exists(),
        "pySigma's virtual environment is missing: `make pysigma` creates {} (make test does)",
        venv.display()
    );
    venv
}

fn differential(args: &[&str]) {
    let script = workspace().join("tests/pysigma/differential.py");
    let output = Command::new(python()).arg(&script).args(args).output().expect("running pySigma");
    assert!(output.status.success(), "differential.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A generated event as the Sysmon process-creation record that carries it (the catalog's
/// field names are Sysmon's).
fn sysmon_record(line: usize, fields: &Map<String, Value>) -> Map<String, Value> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut data = Map::new();
    let mut hashes: Vec<String> = Vec::new();
    for (name, value) in fields {
        let value = value.as_str().unwrap_or_default().to_owned();
        match name.as_str() {
            // Sysmon 1 carries the hashes in one field; the process tree's grandparent is
            // not a field of the record but what lineage finds.
            "Imphash" | "md5" | "sha1" | "sha256" => hashes.push(format!("{}={value}", name.to_uppercase())),
            "Computer" | "GrandParentImage" => {}
            "Hashes" => hashes.insert(0, value),
            _ => {
                data.insert(name.clone(), value.into());
            }
        }
    }
    if !hashes.is_empty() {
        data.insert("Hashes".into(), hashes.join(",").into());
    }
    let record = json!({"Event": {
        "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "EventID": 1,
            "TimeCreated": {"#attributes": {"SystemTime": "2026-01-01T00:00:00.000Z"}},
            "EventRecordID": line,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": text("Computer"),
        },
        "EventData": data,
    }});
    let Value::Object(record) = record else { unreachable!() };
    record
}

/// The event's columns, as the pack's matcher reads them.
struct Columns<'a>(&'a ProcessEvent);

impl matcher::Event for Columns<'_> {
    fn column(&self, column: Column) -> &str {
        self.0.get(Field::from_name(column.name()).expect("every Sigma column is a contract field"))
    }
}

/// Every Sigma field of `event` as the pack sees it.
fn sigma_view(event: &ProcessEvent) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, view) in SIGMA_FIELDS {
        let mut text = String::new();
        matcher::render(*view, &Columns(event), &mut text);
        out.insert((*name).to_owned(), text.into());
    }
    out
}

#[derive(Debug)]
struct Disagreement {
    file: String,
    event: usize,
    pysigma: bool,
    fields: Map<String, Value>,
}

#[test]
fn the_catalog_gives_pysigmas_verdict_on_every_generated_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let catalog = shared("sigma-catalog");

    // 1. Events from pySigma's reading of each rule.
    differential(&["generate", &catalog, &path("generated.jsonl")]);
    let generated = std::fs::read_to_string(path("generated.jsonl")).unwrap();

    // 2. Read by rulehost as Sysmon records; what pySigma evaluates is what the pack sees.
    let file: Arc<str> = Arc::from("generated");
    let mut events = Vec::new();
    let mut groups = Vec::new();
    let mut rendered = String::new();
    for (index, line) in generated.lines().enumerate() {
        let line: Value = serde_json::from_str(line).unwrap();
        let Value::Object(fields) = &line["fields"] else { panic!("{line}") };
        let origin = Origin { file: file.clone(), position: Position::Line(index as u64 + 1) };
        let event = match read_json_record(sysmon_record(index, fields), origin) {
            Record::Event(event) => *event,
            other => panic!("generated event {index} was not read as a process creation: {other:?}"),
        };
        let group = line["group"].as_u64().unwrap();
        rendered.push_str(&json!({"id": index, "group": group, "fields": sigma_view(&event)}).to_string());
        rendered.push('\n');
        groups.push(group);
        events.push(event);
    }
    std::fs::write(path("rendered.jsonl"), rendered).unwrap();

    // 3. pySigma's verdicts.
    differential(&["evaluate", &catalog, &path("rendered.jsonl"), &path("verdicts.jsonl")]);
    let verdicts: Vec<Value> = std::fs::read_to_string(path("verdicts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // 4. The pack's verdicts, through the runtime as `eval` calls it.
    let compilation = rulehost::sigma::compile_paths(&[PathBuf::from(&catalog)]).unwrap();
    let refused: BTreeSet<String> = compilation
        .refused
        .iter()
        .map(|e| e.file().file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let rules: Vec<_> = compilation.rules.iter().map(|(_, rule)| rule.clone()).collect();
    let bytes = rulehost::sigma::pack::build(&rules).unwrap();
    let pack = Arc::new(Runtime::new().unwrap().compile("catalog", &bytes).unwrap());
    let member: HashMap<String, usize> =
        pack.members().iter().enumerate().map(|(i, m)| (m.id.clone(), i)).collect();
    let mut instance = pack.instantiate().unwrap();
    let mut matched: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); pack.members().len()];
    for (chunk, batch) in events.chunks(1000).enumerate() {
        for (rule, hits) in instance.evaluate(batch).unwrap().into_iter().enumerate() {
            matched[rule].extend(hits.into_iter().map(|i| chunk * 1000 + i));
        }
    }

    // 5. Compare.
    let mut by_group: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, group) in groups.iter().enumerate() {
        by_group.entry(*group).or_default().push(index);
    }
    let (mut compared_rules, mut pairs, mut positives, mut decisive_rules) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    let mut not_compared = Vec::new();
    for verdict in &verdicts {
        let file = verdict["file"].as_str().unwrap().to_owned();
        if let Some(error) = verdict.get("error") {
            // A rule pySigma cannot evaluate over these fields must be one rulehost refuses.
            assert!(refused.contains(&file), "pySigma fails on {file}, which rulehost compiles: {error}");
            not_compared.push(file);
            continue;
        }
        let id = verdict["id"].as_str().unwrap();
        let Some(&rule) = member.get(id) else {
            assert!(refused.contains(&file), "{file} ({id}) is neither in the pack nor refused");
            not_compared.push(file);
            continue;
        };
        let theirs: BTreeSet<usize> =
            verdict["matched"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let evaluated: Vec<usize> = verdict["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| by_group.get(&g.as_u64().unwrap()).cloned().unwrap_or_default())
            .collect();
        compared_rules += 1;
        let mut rule_positives = 0;
        for &event in &evaluated {
            pairs += 1;
            let (pysigma, ours) = (theirs.contains(&event), matched[rule].contains(&event));
            rule_positives += u64::from(pysigma);
            if pysigma != ours {
                disagreements.push(Disagreement {
                    file: file.clone(),
                    event,
                    pysigma,
                    fields: sigma_view(&events[event]),
                });
            }
        }
        positives += rule_positives;
        if rule_positives > 0 && (rule_positives as usize) < evaluated.len() {
            decisive_rules += 1;
        }
    }
    eprintln!(
        "compared {compared_rules} rules on {} events: {pairs} verdicts, {positives} matches, \
         {decisive_rules} rules with events on both sides; not compared (refused by rulehost): {not_compared:?}; \
         {} disagreements",
        events.len(),
        disagreements.len()
    );
    for d in disagreements.iter().take(20) {
        let fields: Map<String, Value> = d
            .fields
            .iter()
            .filter(|(_, v)| v.as_str() != Some(""))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        eprintln!(
            "{}: event {}: pySigma {}, rulehost {}: {}",
            d.file,
            d.event,
            d.pysigma,
            !d.pysigma,
            Value::Object(fields)
        );
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements with pySigma (the first 20 above)",
        disagreements.len()
    );
    assert!(compared_rules >= 1410, "only {compared_rules} rules compared");
    // The events decide something: nearly every rule sees events it matches and events it
    // does not.
    assert!(
        decisive_rules * 100 >= compared_rules * 99,
        "only {decisive_rules} of {compared_rules} rules decisive"
    );
}
