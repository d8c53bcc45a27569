//! `rulehost config show`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::setup::settings;
use crate::ConfigShowArgs;

pub(crate) fn run_config_show(args: ConfigShowArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, &args.rules, &args.load)?;
    let mut out = io::stdout().lock();
    match &settings.file {
        Some(file) => writeln!(out, "config file: {}", file.display())?,
        None => writeln!(
            out,
            "config file: none ({} does not exist)",
            rulehost::config::default_path()
                .map_or_else(|| "no config directory".into(), |p| p.display().to_string())
        )?,
    }
    let rows = settings.describe();
    let width = rows.iter().map(|(name, _, _)| name.len()).max().unwrap_or(0);
    for (name, value, source) in rows {
        writeln!(out, "{name:<width$}  {value}  ({source})")?;
    }
    Ok(ExitCode::SUCCESS)
}
