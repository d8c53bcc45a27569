//! `rulehost eval`: the terminal around the library's evaluation (progress, warnings, summary).

use std::io::{self};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result};
use rulehost::eval::{self, Diagnostic, EvalOptions};
use rulehost::events::Input;
use rulehost::sinks::{JsonLines, OutputFormat, Sink, Table};

use super::progress::{Progress, Suspending};
use super::setup::{jobs_or_cores, load_rules, pull_rule_paths, runtime_of, settings, trust_of};
use super::summary::{plural, print_summary};
use super::terminal::{terminal_width, use_color};
use crate::EvalArgs;

pub(crate) fn run_eval(args: EvalArgs, config: Option<&Path>) -> Result<ExitCode> {
    let settings = settings(config, &args.rules, &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let rule_paths = pull_rule_paths(&settings.rules, &settings, &args.load.registry)?;
    let (rules, left_out) = load_rules(&runtime, &rule_paths, &trust)?;
    let jobs = jobs_or_cores(args.jobs);
    let inputs: Vec<Input> = if args.inputs.is_empty() {
        vec![Input::stdin()]
    } else {
        expand_directories(&args.inputs)?.into_iter().map(Input::file).collect()
    };
    let inputs: Vec<Input> =
        inputs.into_iter().map(|input| input.with_jobs(jobs).with_parse_all(args.parse_all)).collect();
    let options = EvalOptions {
        window: args.window,
        batch_size: args.batch_size as usize,
        max_window_matches: args.window_bounds.max_window_matches(),
        max_window_bytes: args.window_bounds.max_window_bytes(),
        strict: args.strict,
        matches_only: args.matches,
        input_format: args.input_format,
        lineage_capacity: args.lineage_capacity,
        progress: None,
        jobs,
        kept_event_bytes: args.kept_events_mib.saturating_mul(1 << 20),
    };
    let counter = Arc::new(AtomicU64::new(0));
    let progress = if args.quiet { None } else { Progress::start(&inputs, counter.clone()) };
    let options = EvalOptions { progress: progress.as_ref().map(|_| counter.clone()), ..options };
    let (writer, terminal) = super::setup::output_writer(args.output.as_deref())?;
    let stdout = writer;
    let output: Box<dyn Sink> = match args.format {
        OutputFormat::Jsonl => Box::new(JsonLines::new(io::BufWriter::new(stdout))),
        OutputFormat::Table => {
            // For a terminal: fit its width and colour (unless NO_COLOR); for a file or
            // a pipe: every value whole.
            let width = terminal.then(terminal_width).flatten();
            Box::new(Table::new(io::BufWriter::new(stdout)).fit_to(width).colored(use_color(terminal)))
        }
    };
    let mut output = Suspending { inner: output, progress: progress.as_ref().map(|p| p.bar.clone()) };
    let say = |line: String| match &progress {
        Some(progress) => progress.bar.suspend(|| say!("{line}")),
        None => say!("{line}"),
    };
    let mut warnings = 0u64;
    let max_warnings = args.max_warnings;
    let mut diagnose = |diagnostic: Diagnostic<'_>| match diagnostic {
        Diagnostic::Rejected(error) => {
            warnings += 1;
            if max_warnings == 0 || warnings <= max_warnings {
                say(format!("rulehost: warning: {error}"));
            } else if warnings == max_warnings + 1 {
                say("rulehost: warning: more records rejected; the summary counts them (--max-warnings 0 shows all)".into());
            }
        }
        Diagnostic::RuleFailed { error, events, first } => {
            let lost =
                if error.stage == "summarize" { "matches not summarized" } else { "events not evaluated" };
            let at = first.map(|origin| format!(", the first read at {origin}")).unwrap_or_default();
            say(format!("rulehost: warning: {error}; {events} {lost} by this rule{at}"));
        }
        Diagnostic::Quarantined { rule, with } => say(format!(
            "rulehost: warning: rule {} {} ({}){} quarantined for the rest of the run: {}",
            rule.id,
            rule.version,
            rule.digest,
            match with {
                0 => String::new(),
                _ => format!(" and the {} of its pack", plural(with as u64, "other rule")),
            },
            rule.quarantined.as_deref().unwrap_or_default()
        )),
        // Bounded inputs close their windows at the end: nothing comes late.
        Diagnostic::Late { .. } | Diagnostic::Ahead { .. } => {}
        // Said once; the summary counts them.
        Diagnostic::WindowCut { rule, window, held, count: 1 } => say(format!(
            "rulehost: warning: open windows held {} MiB, more than --max-window-mib: windows are summarized before their end, each device's matches a part (`WindowPart`), the first rule {rule}'s window at {}",
            held >> 20,
            rulehost::events::time::format_ms(window.0)
        )),
        Diagnostic::WindowCut { .. } => {}
    };
    let result = eval::evaluate(&rules, &inputs, &options, &mut output, &mut diagnose);
    drop(output);
    if let Some(progress) = progress {
        progress.finish(&counter);
    }
    let summary = result?;
    if let Some(path) = &args.summary_json {
        let mut json = serde_json::to_value(&summary).context("writing the summary as JSON")?;
        json["sigma_rules_left_out"] = left_out.to_json();
        let json = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.quiet {
        print_summary(&summary);
    }
    let detected = if args.matches { summary.matches > 0 } else { summary.alerts > 0 };
    Ok(if args.fail_on_detection && detected { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The first three of `items`, then how many more.
fn first_few(items: impl ExactSizeIterator<Item = String>) -> String {
    let count = items.len();
    let shown: Vec<String> = items.take(3).collect();
    let more = count - shown.len();
    shown.join(", ") + &if more > 0 { format!(" and {more} more") } else { String::new() }
}

/// The inputs named, each directory replaced by the log files under it (in path order); the
/// other files of a directory are named in a warning, not read.
fn expand_directories(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        let found = rulehost::events::input::log_files_under(input)?;
        if !found.others.is_empty() {
            say!(
                "rulehost: warning: {}: left out {} file(s) whose names tell no log format: {}",
                input.display(),
                found.others.len(),
                first_few(found.others.iter().map(|p| p.display().to_string()))
            );
        }
        if !found.searched_already.is_empty() {
            let paths = found
                .searched_already
                .iter()
                .map(|(again, first)| format!("{} (searched as {})", again.display(), first.display()));
            say!(
                "rulehost: warning: {}: {} directory path(s) lead through a link to a directory searched already, not searched again: {}",
                input.display(),
                found.searched_already.len(),
                first_few(paths)
            );
        }
        if found.logs.is_empty() {
            anyhow::bail!(
                "{}: no log file under this directory (.evtx, .jsonl, .json, .csv, .xml, .gz, .zip)",
                input.display()
            );
        }
        files.extend(found.logs);
    }
    Ok(files)
}
