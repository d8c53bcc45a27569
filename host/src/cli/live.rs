//! `rulehost run`: logging, signals and the rules directory around the library's live run.

use std::io::{self, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use rulehost::events::Input;
use rulehost::sinks::JsonLines;
use rulehost::sources::kafka::KafkaAddress;

use super::setup::{jobs_or_cores, runtime_of, settings, trust_of};
use super::summary::plural;
use super::terminal::use_color;
use crate::RunArgs;

/// The log's default filter (`RULEHOST_LOG` replaces it): rulehost's own events from `info`,
/// its libraries' from `warn`. The EVTX reader logs a line at `info` for every chunk it
/// parses, a line per 64 KiB of a log. librdkafka's log is off: every error it logs also
/// comes through the client's error callback, which the Kafka source and sink report (a
/// broker unreachable once, until it is back), where its log would repeat it at every
/// reconnection.
const DEFAULT_LOG_FILTER: &str = "warn,rulehost=info,librdkafka=off";

pub(crate) fn run_live(args: RunArgs, config: Option<&Path>) -> Result<ExitCode> {
    use rulehost::rules::registry;
    use rulehost::rules::watch::{self, DirectoryState, RuleUpdate};
    use tracing_subscriber::field::MakeExt;
    // Each field's value with its control characters escaped: a rejected record's origin is
    // an input's name, a reason may quote the record (see `rulehost::text`).
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = rulehost::text::printable(&text, &[]);
        match field.name() {
            "message" => write!(writer, "{text}"),
            name => write!(writer, "{name}={text}"),
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .fmt_fields(fields)
        .with_writer(io::stderr)
        .with_ansi(use_color(io::stderr().is_terminal()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RULEHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .init();
    let settings = settings(config, std::slice::from_ref(&args.rules), &args.load)?;
    let runtime = runtime_of(&settings)?;
    let trust = trust_of(&settings)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rescan = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, rescan.clone())?;

    let (updates_tx, updates_rx) = std::sync::mpsc::channel();
    let mut initial = Vec::new();
    // Either keeps its watcher alive until the run ends.
    let _watcher: Box<dyn std::any::Any> = match args.rules.to_str().filter(|t| registry::is_reference(t)) {
        Some(text) => {
            let reference = registry::Reference::parse(text).map_err(|reason| {
                registry::RegistryError::Reference { reference: text.to_owned(), reason }
            })?;
            let interval = args.poll_interval;
            let registry = super::setup::registry_of(&settings, &args.load.registry)?;
            let (update, digest) = registry::follow::pull_and_check(&registry, &runtime, &trust, &reference)?;
            match update {
                RuleUpdate::Loaded { path, rules, .. } => {
                    tracing::info!(reference = %reference, digest = %digest, "pulled");
                    watch::log_loaded(&path, &rules);
                    initial.push((path, rules));
                }
                RuleUpdate::Refused { reason, .. } => anyhow::bail!("refused: {reason}"),
                RuleUpdate::Removed { .. } | RuleUpdate::LeftOut { .. } => {}
            }
            Box::new(registry::follow::follow(
                registry, runtime, trust, reference, digest, interval, rescan, updates_tx,
            )?)
        }
        None => {
            let mut state = DirectoryState::default();
            for update in watch::scan(&args.rules, &runtime, &trust, &mut state) {
                match update {
                    RuleUpdate::Loaded { path, rules, .. } => {
                        watch::log_loaded(&path, &rules);
                        initial.push((path, rules));
                    }
                    RuleUpdate::Refused { path, reason } => {
                        tracing::error!(path = %path.display(), "refused: {reason}")
                    }
                    RuleUpdate::LeftOut { path, reason } => {
                        tracing::warn!(path = %path.display(), "left out: {reason}")
                    }
                    RuleUpdate::Removed { .. } => {}
                }
            }
            Box::new(
                watch::watch(args.rules.clone(), runtime, trust, state, rescan, updates_tx)
                    .with_context(|| format!("watching {}", args.rules.display()))?,
            )
        }
    };
    let jobs = jobs_or_cores(args.jobs);
    let kafka_options = args
        .kafka_options
        .iter()
        .map(|option| {
            option
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--kafka-option {option:?}: not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    let source: Box<dyn rulehost::sources::Source> = match &args.source {
        Some(url) => {
            let address = KafkaAddress::parse(url).map_err(anyhow::Error::msg)?;
            tracing::info!(topic = %address.topic, group = %args.group, "joining the consumer group");
            Box::new(rulehost::sources::kafka::KafkaSource::new(
                address,
                &args.group,
                &kafka_options,
                args.idle_timeout,
            )?)
        }
        None => {
            let input = match (args.input.as_os_str() == "-", args.follow) {
                (true, _) => Input::stdin(),
                (false, true) => Input::follow(&args.input, stop.clone()),
                (false, false) => Input::file(&args.input),
            }
            .with_parse_all(args.parse_all);
            Box::new(rulehost::sources::InputSource::new(input.with_jobs(jobs), args.input_format))
        }
    };
    let options = rulehost::run::RunOptions {
        window: args.window,
        allowed_lateness: args.allowed_lateness,
        max_clock_skew: args.max_clock_skew,
        batch_size: args.batch_size as usize,
        max_window_matches: args.window_bounds.max_window_matches(),
        max_window_bytes: args.window_bounds.max_window_bytes(),
        max_batch_delay: std::time::Duration::from_millis(args.max_batch_delay_ms),
        matches_only: args.matches,
        stats_interval: args.stats_interval.map(std::time::Duration::from_secs),
        lineage_capacity: rulehost::events::lineage::DEFAULT_CAPACITY,
        jobs,
    };
    let mut output: Box<dyn rulehost::sinks::Sink> = match &args.sink {
        Some(url) => {
            let address = KafkaAddress::parse(url).map_err(anyhow::Error::msg)?;
            Box::new(rulehost::sinks::kafka::KafkaSink::new(address, &kafka_options)?)
        }
        None => Box::new(JsonLines::new(super::setup::output_writer(args.output.as_deref())?.0)),
    };
    let mut print_stats = |rules: &[rulehost::eval::RuleSummary], last: bool| {
        let when = if last { "at exit" } else { "so far" };
        for line in super::summary::stats_lines(rules) {
            say!("rulehost: stats {when}: {line}");
        }
    };
    let summary =
        rulehost::run::run(initial, source, updates_rx, stop, &options, output.as_mut(), &mut print_stats)?;
    say!(
        "rulehost: {} read: {} evaluated, {} skipped, {} rejected, {} late, {} ahead of the clock",
        plural(summary.read, "record"),
        summary.evaluated,
        summary.skipped_total(),
        summary.rejected_total(),
        summary.late,
        summary.ahead
    );
    Ok(ExitCode::SUCCESS)
}
