//! `rulehost new` and `rulehost test`: writing rules.

use rulehost::text::printable;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use rulehost::rules;

use super::setup::{pull_rule_paths, runtime_of, settings, trust_of};
use super::terminal::{GREEN, RED, paint, use_color};
use crate::{NewArgs, TestArgs};

pub(crate) fn run_new(args: NewArgs) -> Result<ExitCode> {
    let files = rulehost::scaffold::new_rule(&args.dir, &args.name)?;
    for file in &files {
        println!("created {}", file.display());
    }
    println!(
        "next: edit {0}/{1}/src/lib.rs, then `make rules` and `rulehost test target/rules/{1}.wasm`",
        args.dir.display(),
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_test(args: TestArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, std::slice::from_ref(&args.rule), &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let rule_path =
        pull_rule_paths(std::slice::from_ref(&args.rule), &settings, &args.load.registry)?.remove(0);
    let rule = rules::load_paths(&runtime, std::slice::from_ref(&rule_path), &trust)?.remove(0);
    let case_files = if args.cases.is_empty() {
        let stem = rule_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let default = PathBuf::from("rules-wasm").join(&stem).join("cases.json");
        if !default.is_file() {
            anyhow::bail!("no case file given, and {} does not exist", default.display());
        }
        vec![default]
    } else {
        args.cases.clone()
    };
    let color = use_color(io::stdout().is_terminal());
    let (mut passed, mut failed) = (0, 0);
    let mut out = io::stdout().lock();
    for path in &case_files {
        let file = rulehost::cases::CaseFile::load(path)?;
        writeln!(
            out,
            "{} ({} cases, rule {} {})",
            path.display(),
            file.cases.len(),
            rule.metadata().id,
            rule.metadata().version
        )?;
        for result in rulehost::cases::run(&rule, &file, &path.display().to_string()) {
            if result.passed() {
                passed += 1;
                writeln!(out, "  {} {}", paint("PASS", GREEN, color), printable(&result.name, &[]))?;
            } else {
                failed += 1;
                writeln!(out, "  {} {}", paint("FAIL", RED, color), printable(&result.name, &[]))?;
                for difference in &result.differences {
                    writeln!(out, "       {}", printable(&difference.to_string(), &[]))?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
