//! `rulehost inspect` and `rulehost verify`: what an artifact says about itself, as text or JSON.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use rulehost::rules;
use rulehost::runtime::{CONTRACT_PACKAGE, CompiledRule, implemented_contracts};

use super::setup::{pull_rule_paths, runtime_of, settings, trust_of};
use crate::{CacheArgs, InspectArgs, LimitArgs, LoadArgs, VerifyArgs};

pub(crate) fn run_inspect(args: InspectArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, &[], &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let (rules, signatures) = match &args.rule {
        Some(path) => {
            let path = &pull_rule_paths(std::slice::from_ref(path), &settings, &args.load.registry)?[0];
            let rules = rules::load_paths(&runtime, std::slice::from_ref(path), &trust)?;
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let detached = std::fs::read(rules::signing::detached_signature_path(path)).ok();
            (rules, rules::signing::signature_key_ids(&bytes, detached.as_deref()))
        }
        None => (vec![rules::load_bundled(&runtime)?], Vec::new()),
    };
    let mut out = io::stdout().lock();
    match (rules.as_slice(), args.json) {
        ([rule], true) => {
            serde_json::to_writer_pretty(&mut out, &inspect_json(rule, &signatures))?;
            writeln!(out)?;
        }
        ([rule], false) => write_inspect_text(&mut out, rule, &signatures)?,
        (pack, true) => {
            serde_json::to_writer_pretty(&mut out, &inspect_pack_json(pack, &signatures))?;
            writeln!(out)?;
        }
        (pack, false) => write_inspect_pack_text(&mut out, pack, &signatures)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A pack of many rules: what the artifact is, then each rule's metadata under `rules`.
pub(crate) fn inspect_pack_json(rules: &[Arc<CompiledRule>], signatures: &[String]) -> serde_json::Value {
    let first = inspect_json(&rules[0], signatures);
    let artifact_keys =
        ["artifact", "digest", "size", "contract", "imports", "exports", "signatures", "trusted_signers"];
    let mut object = serde_json::Map::new();
    for key in artifact_keys {
        object.insert(key.into(), first[key].clone());
    }
    let members = rules
        .iter()
        .map(|rule| {
            let mut member = inspect_json(rule, signatures);
            if let Some(member) = member.as_object_mut() {
                member.retain(|key, _| !artifact_keys.contains(&key.as_str()));
            }
            member
        })
        .collect();
    object.insert("rules".into(), serde_json::Value::Array(members));
    serde_json::Value::Object(object)
}

/// A pack of many rules: the artifact, then one line per rule (`--json` has everything).
pub(crate) fn write_inspect_pack_text(
    out: &mut impl Write,
    rules: &[Arc<CompiledRule>],
    signatures: &[String],
) -> io::Result<()> {
    write_artifact_header(out, &rules[0], signatures)?;
    writeln!(out, "rules:         {}", rules.len())?;
    let width = |text: fn(&CompiledRule) -> usize| rules.iter().map(|r| text(r)).max().unwrap_or(0);
    let (id_width, version_width) = (width(|r| r.metadata().id.len()), width(|r| r.metadata().version.len()));
    for rule in rules {
        let m = rule.metadata();
        writeln!(
            out,
            "  {:<id_width$}  {:<version_width$}  {:<13}  {}",
            m.id,
            m.version,
            m.severity.name(),
            m.title
        )?;
    }
    Ok(())
}

pub(crate) fn run_verify(args: VerifyArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(
        config,
        &[],
        &LoadArgs {
            trust: args.trust.clone(),
            limits: LimitArgs::default(),
            cache: CacheArgs::default(),
            registry: args.registry.clone(),
        },
    )?;
    let trust = trust_of(&settings)?;
    if trust.policy.is_none() {
        anyhow::bail!("verify needs --trust");
    }
    let rule = &pull_rule_paths(std::slice::from_ref(&args.rule), &settings, &args.registry)?[0];
    let bytes = std::fs::read(rule).with_context(|| format!("reading {}", rule.display()))?;
    match trust.check(rule, &bytes) {
        Ok(signers) if signers.is_empty() => {
            println!("{}: accepted without a signature (--allow-unsigned)", args.rule.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok(signers) => {
            println!("{}: verified: signed by {}", args.rule.display(), signers.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(rulehost::rules::LoadError::Untrusted { reason, .. }) => {
            // The reason may quote the artifact (a key id its signature claims).
            let reason = rulehost::text::printable(&reason.to_string(), &[]).into_owned();
            println!(
                "{}: refused: {reason}",
                rulehost::text::printable(&args.rule.display().to_string(), &[])
            );
            Ok(ExitCode::from(1))
        }
        Err(other) => Err(other.into()),
    }
}

pub(crate) fn inspect_json(rule: &CompiledRule, signatures: &[String]) -> serde_json::Value {
    let m = rule.metadata();
    let info = rule.info();
    serde_json::json!({
        "artifact": rule.artifact(),
        "digest": info.digest.as_str(),
        "size": info.size,
        "contract": format!("{CONTRACT_PACKAGE}@{}", info.contract_version.as_deref().unwrap_or("")),
        "imports": info.imports,
        "exports": info.exports,
        "id": m.id,
        "version": m.version,
        "title": m.title,
        "description": m.description,
        "severity": m.severity.name(),
        "tactics": m.tactics,
        "techniques": m.techniques,
        "coverage": m.coverage.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "reads": m.reads.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "summary_reads": m.summary_reads.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "indicators": m.indicators.iter().map(|i| serde_json::json!({
            "field": i.field.name(), "operator": i.operator.name(), "values": i.values,
        })).collect::<Vec<_>>(),
        "query_period_seconds": m.query_period.as_secs(),
        "query_frequency_seconds": m.query_frequency.as_secs(),
        "signatures": signatures,
        "trusted_signers": rule.signers(),
    })
}

/// What `inspect` says of the artifact, whether it holds one rule or many.
pub(crate) fn write_artifact_header(
    out: &mut impl Write,
    rule: &CompiledRule,
    signatures: &[String],
) -> io::Result<()> {
    let info = rule.info();
    let list = |items: &[String]| {
        if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
    };
    writeln!(out, "artifact:      {}", rule.artifact())?;
    writeln!(out, "digest:        {}", info.digest)?;
    writeln!(out, "size:          {} bytes", info.size)?;
    writeln!(
        out,
        "contract:      {CONTRACT_PACKAGE}@{} (this host: {})",
        info.contract_version.as_deref().unwrap_or("?"),
        implemented_contracts()
    )?;
    let signatures = if signatures.is_empty() {
        "(none)".to_owned()
    } else {
        format!("key ids {}", signatures.join(", "))
    };
    writeln!(out, "signatures:    {signatures}")?;
    if !rule.signers().is_empty() {
        writeln!(out, "trusted:       signed by {}", rule.signers().join(", "))?;
    }
    writeln!(out, "imports:       {}", list(&info.imports))?;
    writeln!(out, "exports:       {}", list(&info.exports))
}

pub(crate) fn write_inspect_text(
    out: &mut impl Write,
    rule: &CompiledRule,
    signatures: &[String],
) -> io::Result<()> {
    let m = rule.metadata();
    let list = |items: &[String]| {
        if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
    };
    let fields =
        |fields: &[rulehost::events::Field]| fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ");
    let hours = |d: std::time::Duration| format!("{}s", d.as_secs());
    write_artifact_header(out, rule, signatures)?;
    writeln!(out, "id:            {}", m.id)?;
    writeln!(out, "title:         {}", m.title)?;
    writeln!(out, "version:       {}", m.version)?;
    writeln!(out, "severity:      {}", m.severity)?;
    writeln!(out, "tactics:       {}", list(&m.tactics))?;
    writeln!(out, "techniques:    {}", list(&m.techniques))?;
    writeln!(out, "coverage:      {}", m.coverage.iter().map(|c| c.name()).collect::<Vec<_>>().join("; "))?;
    writeln!(out, "reads:         {}", fields(&m.reads))?;
    writeln!(out, "summary reads: {}", fields(&m.summary_reads))?;
    writeln!(out, "period:        {} (runs every {})", hours(m.query_period), hours(m.query_frequency))?;
    writeln!(out, "indicators:")?;
    for i in &m.indicators {
        writeln!(out, "  {} {} ({})", i.field, i.operator, i.values.join(", "))?;
    }
    writeln!(out, "description:   {}", m.description)?;
    Ok(())
}
