//! `rulehost sigma compile` and `rulehost sigma check`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::summary::plural;
use crate::{SigmaCheckArgs, SigmaCompileArgs};

pub(crate) fn run_sigma_compile(
    args: SigmaCompileArgs,
    config: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let compilation = rulehost::sigma::compile_paths(&args.rules)?;
    let mut left_out = super::setup::LeftOut::default();
    compilation.refused.iter().for_each(|refused| left_out.note(refused));
    left_out.report();
    if args.strict && left_out.count() > 0 {
        anyhow::bail!("{} refused; nothing written", plural(compilation.refused.len() as u64, "rule"));
    }
    if compilation.rules.is_empty() {
        anyhow::bail!("no Sigma rule to compile");
    }
    let rules: Vec<_> = compilation.rules.into_iter().map(|(_, rule)| rule).collect();
    // The evaluator compiled for the pack's initialization is kept in the component cache
    // that the settings name, as `eval` keeps its components.
    let settings = rulehost::config::Settings::resolve(config, &rulehost::config::Flags::default())?;
    let cache = settings.component_cache();
    let bytes = rulehost::sigma::pack::build_with_cache(&rules, cache.as_ref())?;
    std::fs::write(&args.output, &bytes).with_context(|| format!("writing {}", args.output.display()))?;
    say!(
        "rulehost: {}: {} ({} bytes, {}), {} left out, in {:.2} s",
        args.output.display(),
        plural(rules.len() as u64, "rule"),
        bytes.len(),
        rulehost::runtime::Digest::of(&bytes),
        compilation.refused.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_sigma_check(args: SigmaCheckArgs) -> Result<ExitCode> {
    let compilation = rulehost::sigma::compile_paths(&args.rules)?;
    let mut out = io::stdout().lock();
    let mut by_construct: std::collections::BTreeMap<String, usize> = Default::default();
    for refused in &compilation.refused {
        writeln!(out, "{refused}")?;
        *by_construct.entry(refused.construct()).or_default() += 1;
    }
    let total = compilation.rules.len() + compilation.refused.len();
    let coverage = if total == 0 { 0.0 } else { 100.0 * compilation.rules.len() as f64 / total as f64 };
    writeln!(out, "{} of {} rules compile ({coverage:.2}%)", compilation.rules.len(), total)?;
    for (construct, count) in &by_construct {
        writeln!(out, "  refused for {construct}: {count}")?;
    }
    Ok(if compilation.refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
