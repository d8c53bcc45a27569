//! Settings, the runtime, the trust policy and the rules, as the command line gives them.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rulehost::config::{Flags, Settings};
use rulehost::rules::{self, RuleSource, Trust, TrustPolicy};
use rulehost::runtime::{CompiledRule, Runtime};

use super::summary::plural;
use crate::{LoadArgs, RegistryArgs};

/// Resolves the settings from the config file and the flags that override it.
pub(crate) fn settings(config: Option<&Path>, rules: &[PathBuf], load: &LoadArgs) -> Result<Settings> {
    let LoadArgs { trust, limits, cache, registry: _ } = load;
    let flags = Flags {
        rules: rules.to_vec(),
        trust: trust.trust.clone(),
        allow_unsigned: trust.allow_unsigned,
        limits: limits.settings(),
        cache_dir: cache.cache_dir.clone(),
        no_cache: cache.no_cache,
        cache_max_mib: cache.cache_max_mib,
    };
    Ok(Settings::resolve(config, &flags)?)
}

/// The runtime the settings describe.
pub(crate) fn runtime_of(settings: &Settings) -> Result<Runtime> {
    Ok(Runtime::with_limits(settings.limits.clone())?.with_cache(settings.component_cache()))
}

/// The trust policy the settings name, announcing --allow-unsigned.
pub(crate) fn trust_of(settings: &Settings) -> Result<Trust> {
    let policy = if settings.trust.is_empty() { None } else { Some(TrustPolicy::load(&settings.trust)?) };
    if settings.allow_unsigned {
        say!(
            "rulehost: warning: --allow-unsigned: rules that carry no signature are loaded; for development only"
        );
    }
    Ok(Trust { policy, allow_unsigned: settings.allow_unsigned })
}

/// The Sigma rules a command leaves out: it names the first [`LeftOut::NAMED`], then counts
/// them all by construct. A folder of every Sigma rule holds some 1,600 of other log sources,
/// each left out: a warning each buried the rest. Each is kept for `--summary-json`.
#[derive(Default)]
pub(crate) struct LeftOut {
    rules: Vec<LeftOutRule>,
}

/// One Sigma file left out, as `--summary-json` gives it.
#[derive(serde::Serialize)]
struct LeftOutRule {
    file: String,
    construct: String,
    /// The whole warning: file, rule, construct and reason.
    error: String,
}

impl LeftOut {
    const NAMED: usize = 20;

    pub(crate) fn note(&mut self, refused: &rulehost::sigma::SigmaError) {
        if self.rules.len() < Self::NAMED {
            say!("rulehost: warning: Sigma rule left out: {refused}");
        }
        self.rules.push(LeftOutRule {
            file: refused.file().display().to_string(),
            construct: refused.construct(),
            error: refused.to_string(),
        });
    }

    pub(crate) fn count(&self) -> usize {
        self.rules.len()
    }

    fn by_construct(&self) -> std::collections::BTreeMap<&str, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for rule in &self.rules {
            *counts.entry(rule.construct.as_str()).or_default() += 1;
        }
        counts
    }

    /// The count by construct, if any was left out.
    pub(crate) fn report(&self) {
        if self.rules.is_empty() {
            return;
        }
        let tally: Vec<String> =
            self.by_construct().iter().map(|(construct, n)| format!("{construct}: {n}")).collect();
        let named = if self.count() > Self::NAMED {
            format!("the first {} named above; ", Self::NAMED)
        } else {
            String::new()
        };
        say!(
            "rulehost: warning: {} left out ({}; {named}`rulehost sigma check` lists them all)",
            plural(self.count() as u64, "Sigma rule"),
            tally.join(", ")
        );
    }

    /// What `--summary-json` says of them: the count, the count by construct, each rule.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"count": self.count(), "by_construct": self.by_construct(), "rules": self.rules})
    }
}

/// The rules at `paths` (the bundled rule when there are none), and the Sigma rules left out.
pub(crate) fn load_rules(
    runtime: &Runtime,
    paths: &[PathBuf],
    trust: &Trust,
) -> Result<(Vec<Arc<CompiledRule>>, LeftOut)> {
    let source: Box<dyn RuleSource> =
        if paths.is_empty() { Box::new(rules::Bundled) } else { Box::new(rules::Paths(paths.to_vec())) };
    let mut left_out = LeftOut::default();
    let loaded =
        crate::compiling_rules(|| source.load(runtime, trust, &mut |refused| left_out.note(refused)));
    let loaded = if paths.is_empty() { loaded.context("loading the bundled rule")? } else { loaded? };
    left_out.report();
    if loaded.is_empty() {
        anyhow::bail!("no rule found in {}", source.describe());
    }
    Ok((loaded, left_out))
}

/// Where the output goes: `path` (created, or emptied), else stdout; and whether that is a
/// terminal.
pub(crate) fn output_writer(path: Option<&Path>) -> Result<(io::BufWriter<Box<dyn Write>>, bool)> {
    Ok(match path {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            (io::BufWriter::new(Box::new(file)), false)
        }
        None => {
            let stdout = io::stdout();
            let terminal = stdout.is_terminal();
            (io::BufWriter::new(Box::new(stdout.lock())), terminal)
        }
    })
}

/// `--jobs`, or the number of cores.
pub(crate) fn jobs_or_cores(jobs: Option<u32>) -> usize {
    jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), |j| j as usize)
}

/// The registry client the flags describe, with its store in the cache directory (`oci/`).
pub(crate) fn registry_of(settings: &Settings, args: &RegistryArgs) -> Result<rules::registry::Registry> {
    let cache = settings
        .cache_dir
        .clone()
        .or_else(rulehost::runtime::ComponentCache::default_dir)
        .context("no cache directory for the registry store: give --cache-dir")?;
    Ok(rules::registry::Registry::new(rules::registry::RegistryOptions {
        store_dir: cache.join("oci"),
        offline: args.offline,
        insecure: args.insecure_registry.clone(),
        ca_files: args.registry_ca.clone(),
        max_artifact_bytes: settings.limits.max_artifact_bytes,
        request_timeout: rules::registry::DEFAULT_REQUEST_TIMEOUT,
    }))
}

/// Tells why the signatures a registry listed for `pulled` were not taken.
pub(crate) fn warn_of_signature_problems(pulled: &rules::registry::Pulled) {
    for problem in &pulled.signature_problems {
        say!("rulehost: warning: {}: {problem}", pulled.reference);
    }
}

/// Rule paths with every `oci://` reference pulled into the store and replaced by the
/// artifact there (its signature beside it, for the trust policy to check when it loads).
pub(crate) fn pull_rule_paths(
    paths: &[PathBuf],
    settings: &Settings,
    args: &RegistryArgs,
) -> Result<Vec<PathBuf>> {
    let mut registry = None;
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let Some(text) = path.to_str().filter(|t| rules::registry::is_reference(t)) else {
            out.push(path.clone());
            continue;
        };
        let reference = rules::registry::Reference::parse(text).map_err(|reason| {
            rules::registry::RegistryError::Reference { reference: text.to_owned(), reason }
        })?;
        if registry.is_none() {
            registry = Some(registry_of(settings, args)?);
        }
        let pulled = registry.as_ref().expect("made above").pull(&reference)?;
        warn_of_signature_problems(&pulled);
        say!(
            "rulehost: {} {reference} ({}{})",
            if pulled.fetched { "pulled" } else { "from the store:" },
            pulled.manifest,
            if pulled.signed { ", signed" } else { ", no signature" }
        );
        out.push(pulled.path);
    }
    Ok(out)
}
