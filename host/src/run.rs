//! `run`: a long-running evaluator. Events stream in (stdin, a pipe, a followed file);
//! batches go to every loaded rule; alerts are written when their event-time window
//! closes; rules are swapped, added and removed between two batches without stopping.
//!
//! Guarantees:
//! - every event is evaluated once by exactly one version of each loaded rule: updates are
//!   applied only between batches, and a batch is evaluated by the versions loaded when it
//!   is;
//! - every match and alert names the rule id, version and digest that produced it;
//! - a window that straddles a swap gives two alerts: the old version summarizes the
//!   matches it made when it is swapped out (its open windows are flushed then), and the
//!   new version summarizes its own when the window closes;
//! - windows close when the watermark passes their end: the latest event time seen, or
//!   where the source tracks event time itself (a Kafka topic: its least advanced
//!   partition) the lower of the two, less the allowed lateness. An event for a window
//!   that has closed already is late: it is still evaluated, counted, reported, and its
//!   matches make an alert of their own;
//! - at the end of the input, or on SIGINT / SIGTERM, every open window is flushed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use crate::alerts::WindowSpec;
use crate::events::{InputError, Record, lineage};
use crate::pipeline::{Diagnostic, Pipeline, PipelineOptions, RuleSummary, Summary, WindowClosing};
use crate::rules::watch::RuleUpdate;
use crate::runtime::CompiledRule;
use crate::sinks::Sink;
use crate::sources::Source;

/// How a live run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How matches are grouped in time.
    pub window: WindowSpec,
    /// How far behind the latest event time an event may arrive and still find its window
    /// open.
    pub allowed_lateness: Duration,
    /// How far ahead of this host's clock an event's time may be and still move the
    /// watermark (see [`WindowClosing::Watermark`]).
    pub max_clock_skew: Duration,
    /// Events per rule call at most.
    pub batch_size: usize,
    /// A device's matches of one rule one window holds at most (see
    /// [`crate::pipeline::PipelineOptions::max_window_matches`]).
    pub max_window_matches: usize,
    /// Bytes the matches in open windows take together at most (see
    /// [`crate::pipeline::PipelineOptions::max_window_bytes`]).
    pub max_window_bytes: usize,
    /// How long a partial batch waits for more events before it is evaluated anyway, so
    /// that a slow stream still gets its matches promptly.
    pub max_batch_delay: Duration,
    /// Write every match instead of alerts.
    pub matches_only: bool,
    /// How often to report the counters (`None`: only at the end).
    pub stats_interval: Option<Duration>,
    /// Processes the lineage table holds at most.
    pub lineage_capacity: usize,
    /// Threads that parse JSON lines and that evaluate batches; the output is the same
    /// whatever the number.
    pub jobs: usize,
}

/// How far ahead of this host's clock an event's time may be by default: Kerberos's default
/// tolerance, past which a Windows domain member cannot authenticate, so a device further
/// ahead has a broken clock (or its record is forged).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            window: WindowSpec::Every(3_600_000),
            allowed_lateness: Duration::from_secs(60),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            batch_size: crate::pipeline::DEFAULT_BATCH_SIZE,
            max_window_matches: crate::pipeline::DEFAULT_MAX_WINDOW_MATCHES,
            max_window_bytes: crate::pipeline::DEFAULT_MAX_WINDOW_BYTES,
            max_batch_delay: Duration::from_millis(100),
            matches_only: false,
            stats_interval: None,
            lineage_capacity: lineage::DEFAULT_CAPACITY,
            jobs: 1,
        }
    }
}

/// What ended a run early: the same as for `eval`.
pub use crate::pipeline::PipelineError as RunError;

impl RunOptions {
    /// The pipeline's part of these options: windows close with the watermark.
    pub fn pipeline(&self) -> PipelineOptions {
        PipelineOptions {
            window: self.window,
            closing: WindowClosing::Watermark {
                lateness_ms: self.allowed_lateness.as_millis() as i64,
                ahead_ms: self.max_clock_skew.as_millis().try_into().unwrap_or(i64::MAX),
            },
            batch_size: self.batch_size,
            strict: false,
            matches_only: self.matches_only,
            lineage_capacity: self.lineage_capacity,
            jobs: self.jobs,
            max_window_matches: self.max_window_matches,
            max_window_bytes: self.max_window_bytes,
        }
    }
}

/// What the reading thread sends.
enum Incoming {
    Records(Vec<Record>),
    Failed(InputError),
    End,
}

/// Late events, and events ahead of the clock, reported one by one; past that, only counted.
const REPORTED_LATE_EVENTS: u64 = 10;

/// Runs until `source` ends or `stop` is set. `rules` are the packs loaded at start, by
/// file (a directory's Sigma rules make one pack, named by the directory); `updates` brings
/// new versions, additions and removals, from whatever follows the rules (a directory
/// watcher today). `stats` is called every `stats_interval` and once at the end (with
/// `true`). After each flush of `output`, `source` hears how many of its records are
/// settled.
pub fn run(
    rules: Vec<(PathBuf, Vec<Arc<CompiledRule>>)>,
    mut source: Box<dyn Source>,
    updates: Receiver<RuleUpdate>,
    stop: Arc<AtomicBool>,
    options: &RunOptions,
    output: &mut dyn Sink,
    stats: &mut dyn FnMut(&[RuleSummary], bool),
) -> Result<Summary, RunError> {
    let mut diagnose = |diagnostic: Diagnostic<'_>| log(diagnostic);
    let mut pipeline = Pipeline::with_rule_files(rules, options.pipeline(), output, &mut diagnose)?;
    let (sender, incoming) = sync_channel::<Incoming>(16);
    let open = source.opener();
    std::thread::Builder::new().name("rulehost-input".into()).spawn(move || match open() {
        Ok(reader) => {
            for records in reader {
                if sender.send(Incoming::Records(records)).is_err() {
                    return;
                }
            }
            let _ = sender.send(Incoming::End);
        }
        Err(error) => {
            let _ = sender.send(Incoming::Failed(error));
        }
    })?;

    let mut pending = 0usize;
    let mut batch_started = Instant::now();
    let mut next_stats = options.stats_interval.map(|i| Instant::now() + i);
    let mut input_done = false;
    while !input_done && !stop.load(Ordering::Relaxed) {
        let wait = if pending == 0 {
            Duration::from_millis(50)
        } else {
            options.max_batch_delay.saturating_sub(batch_started.elapsed()).max(Duration::from_millis(1))
        };
        match incoming.recv_timeout(wait) {
            Ok(Incoming::Records(records)) => {
                if pending == 0 {
                    batch_started = Instant::now();
                }
                pending += records.len();
                for record in records {
                    pipeline.record(record)?;
                }
            }
            Ok(Incoming::Failed(error)) => return Err(error.into()),
            Ok(Incoming::End) | Err(RecvTimeoutError::Disconnected) => input_done = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        pipeline.withdraw(source.withdrawn());
        // Full batches go to the rules as they fill; what was read since the last tick is
        // evaluated and written once its first record has waited the batch delay.
        if pending > 0 && batch_started.elapsed() >= options.max_batch_delay {
            pipeline.tick()?;
            source.settled(pipeline.settled());
            pending = 0;
        }
        // Event time as the source tracks it may close windows with no new record (a
        // partition gone idle).
        if pipeline.limit_event_time(source.event_time(pipeline.records_taken_in()))? {
            pipeline.tick()?;
            source.settled(pipeline.settled());
        }
        // Between batches: the only place a rule changes.
        while let Ok(update) = updates.try_recv() {
            pipeline.update(update)?;
        }
        if let Some(at) = next_stats
            && Instant::now() >= at
        {
            stats(&pipeline.rule_summaries(), false);
            if let Some(report) = source.report() {
                tracing::info!("stats so far: {report}");
            }
            next_stats = options.stats_interval.map(|i| Instant::now() + i);
        }
    }
    // Stopped by a signal: the records already read are still evaluated.
    while let Ok(Incoming::Records(records)) = incoming.try_recv() {
        for record in records {
            pipeline.record(record)?;
        }
    }
    pipeline.withdraw(source.withdrawn());
    let summary = pipeline.finish()?;
    source.settled(summary.read);
    stats(&summary.rules, true);
    if let Some(report) = source.report() {
        tracing::info!("stats at exit: {report}");
    }
    Ok(summary)
}

/// A live run reports through its log.
fn log(diagnostic: Diagnostic<'_>) {
    match diagnostic {
        Diagnostic::Rejected(error) => {
            tracing::warn!(origin = %error.origin, "record rejected: {}", error.reason)
        }
        Diagnostic::RuleFailed { error, events, first } => {
            let first = first.map(ToString::to_string);
            tracing::warn!(rule = %error.id, version = %error.version, stage = error.stage, kind = %error.kind, events, first, "rule call failed: {}", error.message)
        }
        Diagnostic::Quarantined { rule, with } => {
            tracing::error!(rule = %rule.id, version = %rule.version, digest = %rule.digest, with_rules_of_its_pack = with, "rule quarantined: {}; it runs again when a new version is loaded", rule.quarantined.as_deref().unwrap_or_default())
        }
        Diagnostic::Late { event, count } if count <= REPORTED_LATE_EVENTS => {
            tracing::warn!(origin = %event.origin(), timestamp = event.get(crate::events::Field::Timestamp), "late event: its window has closed; evaluated, and its matches make an alert of their own")
        }
        Diagnostic::Late { .. } => {}
        Diagnostic::Ahead { event, count } if count <= REPORTED_LATE_EVENTS => {
            tracing::warn!(origin = %event.origin(), timestamp = event.get(crate::events::Field::Timestamp), "event ahead of this host's clock by more than --max-clock-skew: evaluated, but it does not close windows; a window that starts past the clock's allowance is closed at once")
        }
        Diagnostic::Ahead { .. } => {}
        Diagnostic::WindowCut { rule, window, held, count } if count <= REPORTED_LATE_EVENTS => {
            tracing::warn!(rule, window_start = %crate::events::time::format_ms(window.0), held_mib = held >> 20, "open windows held more than --max-window-mib: the window that held the most summarized at once, each device's matches a part of it")
        }
        Diagnostic::WindowCut { .. } => {}
    }
}
