//! Closing windows: the `summarize` stage of each rule over the matches of a window, and
//! the engine's columns of each alert. The one place that turns matches into alerts.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Diagnostic;
use super::rule_set::RuleSet;
use crate::alerts::Alert;
use crate::events::{Field, ProjectedEvent};
use crate::runtime::{CompiledRule, FailureKind, Instances, PackedSummary, RuleError, RuleInstance};

/// The matches of one rule in one open window, by device (a hash of its `DeviceId` and
/// `DeviceName`, the key alerts group by), with how many parts of the window each device's
/// matches were summarized in already.
///
/// A device's matches are summarized before the window closes once they reach a cap (see
/// [`super::PipelineOptions::max_window_matches`]): what a window holds is then bounded by
/// its devices, not by what one of them logs, and so is the alert one summary makes. Held
/// to the end, a million matches of one device in one window (a web shell's loop, or forged
/// lines) took 780 MB, and made an alert of 17 MB, which no Kafka topic takes by default.
#[derive(Debug, Default)]
pub(crate) struct OpenWindow {
    /// Keyed by [`device_key`], itself unknown ahead: hashed again with a fixed seed.
    devices: HashMap<u64, DeviceMatches, foldhash::fast::FixedState>,
    /// Opened by late events, after the window of its span had closed: its alerts say so.
    late: bool,
}

/// One device's matches in an [`OpenWindow`].
#[derive(Debug, Default)]
struct DeviceMatches {
    events: Vec<Arc<ProjectedEvent>>,
    /// Parts of the window summarized already.
    parts: u32,
}

/// The key of `event`'s device in an [`OpenWindow`]. Two devices whose keys collide share
/// their count and parts; each alert still groups its own device's matches. Seeded per
/// process, as the names come from the logs: with a seed known ahead, forged names could be
/// made to share one key, or to pile up in one place of the windows' tables.
fn device_key(event: &ProjectedEvent) -> u64 {
    static DEVICE_KEYS: std::sync::LazyLock<foldhash::fast::RandomState> =
        std::sync::LazyLock::new(foldhash::fast::RandomState::default);
    DEVICE_KEYS.hash_one((event.get(Field::DeviceId), event.get(Field::DeviceName)))
}

impl OpenWindow {
    /// A window with no match yet; `late` when its span's window closed already.
    pub(crate) fn opened(late: bool) -> Self {
        OpenWindow { late, ..OpenWindow::default() }
    }

    /// Holds `event`; its device's key when its matches held now reach `cap`.
    pub(crate) fn hold(&mut self, event: Arc<ProjectedEvent>, cap: usize) -> Option<u64> {
        let key = device_key(&event);
        let device = self.devices.entry(key).or_default();
        device.events.push(event);
        (device.events.len() >= cap).then_some(key)
    }

    /// The matched events held.
    pub(crate) fn events(&self) -> impl Iterator<Item = &Arc<ProjectedEvent>> {
        self.devices.values().flat_map(|d| &d.events)
    }

    /// Whether it holds no match and no device's parts.
    pub(crate) fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The size of the matches it holds, each counted whole (a match other rules' windows
    /// share too is counted in each): which window holds most.
    pub(crate) fn bytes(&self) -> usize {
        self.events().map(|e| e.size_in_memory()).sum()
    }

    /// Keeps the matched events `keep` says.
    pub(crate) fn retain(&mut self, keep: impl Fn(&ProjectedEvent) -> bool) {
        for device in self.devices.values_mut() {
            device.events.retain(|e| keep(e));
        }
        self.devices.retain(|_, d| !d.events.is_empty() || d.parts > 0);
    }

    /// The matches of the device `key` as the window's next part for it: the part's number,
    /// from one, and its events; `None` when it holds none. The device's later matches make
    /// the part after it.
    fn take_part(&mut self, key: u64) -> Option<(u32, Vec<DeviceEvents>)> {
        let device = self.devices.get_mut(&key).filter(|d| !d.events.is_empty())?;
        device.parts += 1;
        Some((device.parts, vec![std::mem::take(&mut device.events)]))
    }

    /// The matches of every device as the window's next part for each, grouped by the part's
    /// number (a device that filled a part before is a part ahead of the others), in the
    /// order of the number. The devices' later matches make the parts after them.
    fn take_parts(&mut self) -> Vec<(u32, Vec<DeviceEvents>)> {
        let mut parts: BTreeMap<u32, Vec<DeviceEvents>> = BTreeMap::new();
        for device in self.devices.values_mut().filter(|d| !d.events.is_empty()) {
            device.parts += 1;
            parts.entry(device.parts).or_default().push(std::mem::take(&mut device.events));
        }
        parts.into_iter().collect()
    }

    /// The window's matches as it closes: those of devices never summarized early
    /// together (`None`: the whole window for them), then the last part of the devices that
    /// were, grouped by the part's number, in its order.
    fn into_parts(mut self) -> Vec<(Option<u32>, Vec<DeviceEvents>)> {
        let whole: Vec<DeviceEvents> = self
            .devices
            .values_mut()
            .filter(|d| d.parts == 0)
            .map(|d| std::mem::take(&mut d.events))
            .collect();
        let parts = self.take_parts().into_iter().map(|(part, devices)| (Some(part), devices));
        (!whole.is_empty()).then_some((None, whole)).into_iter().chain(parts).collect()
    }
}

/// One device's matches taken out of an [`OpenWindow`].
type DeviceEvents = Vec<Arc<ProjectedEvent>>;

/// The `summarize` calls over `devices`' matches, as [`Due`]s of the rule at `rule` reporting
/// `span`, `part` and whether the window is `late`: whole devices, in the order of their
/// first matches, together up to `call_matches` matches a call (a device with more is a call
/// of its own). An alert groups one device's matches, so the calls give the alerts one call
/// would, in its order. In one call, 400,000 matches on as many devices (forged names) took
/// the summary past its deadline, and the window gave no alert.
fn calls(
    rule: usize,
    span: (i64, i64),
    part: Option<u32>,
    late: bool,
    mut devices: Vec<DeviceEvents>,
    call_matches: usize,
) -> Vec<Due> {
    devices.sort_by_cached_key(|events| events.iter().map(|e| (e.time_ms(), e.read_order())).min());
    let mut due: Vec<Due> = Vec::new();
    for events in devices {
        match due.last_mut() {
            Some(last) if last.events.len() + events.len() <= call_matches.max(1) => {
                last.events.extend(events)
            }
            _ => due.push(Due { rule, span, events, part, late }),
        }
    }
    due
}

/// The `summarize` stage of one rule over the matched `events` of one window, and the
/// engine's columns (count, first and last time, report ids) of each alert. The events
/// are put in time order first, events of one time in reading order.
pub(crate) fn summarize_window(
    instance: &mut RuleInstance,
    rule: &Arc<CompiledRule>,
    span: (i64, i64),
    events: &mut [Arc<ProjectedEvent>],
) -> Result<Vec<Alert>, RuleError> {
    in_time_order(events);
    let packed = instance.pack_summary(rule.member(), events);
    summarize_packed_window(instance, rule, span, events, packed)
}

/// Puts a window's events in time order, events of one time in reading order.
fn in_time_order(events: &mut [Arc<ProjectedEvent>]) {
    events.sort_by_key(|e| (e.time_ms(), e.read_order()));
}

/// [`summarize_window`] over `events` in time order, packed already. A window whose alerts
/// are more than one call may return is summarized again in parts, each the matches of some
/// of its devices (see [`summarize_by_device`]).
fn summarize_packed_window(
    instance: &mut RuleInstance,
    rule: &Arc<CompiledRule>,
    span: (i64, i64),
    events: &[Arc<ProjectedEvent>],
    packed: PackedSummary,
) -> Result<Vec<Alert>, RuleError> {
    match alerts_of(instance, rule, span, events, packed) {
        Err(error) if error.kind == FailureKind::TooMuchOutput => {
            summarize_by_device(instance, rule, span, events, error)
        }
        outcome => outcome,
    }
}

/// The most parts a window is summarized in, by device.
const MAX_WINDOW_PARTS: usize = 64;

/// Summarizes `events` in parts of whole devices: 2, then 8, 32 and 64 parts, until every
/// part's alerts fit in a call; `error`, or the failure of a part, when they do not. An alert
/// groups the matches of one device (a Sigma rule's; Soft Cell's by its device columns), so
/// the parts give the alerts the whole would: a rule matching on more than 10,000 devices in
/// one window (a fleet's noisy rule, or forged device names) returned more alerts than one
/// call may, and the window gave none. A rule that returns too much whatever it is handed
/// costs a call per round, not one per part.
fn summarize_by_device(
    instance: &mut RuleInstance,
    rule: &Arc<CompiledRule>,
    span: (i64, i64),
    events: &[Arc<ProjectedEvent>],
    mut error: RuleError,
) -> Result<Vec<Alert>, RuleError> {
    fn device(e: &ProjectedEvent) -> (&str, &str) {
        (e.get(Field::DeviceId), e.get(Field::DeviceName))
    }
    let mut devices: Vec<(&str, &str)> = events.iter().map(|e| device(e)).collect();
    devices.sort_unstable();
    devices.dedup();
    // Each event's device, by its place among the devices: a part holds a run of them.
    let nth: Vec<usize> = events
        .iter()
        .map(|e| devices.binary_search(&device(e)).expect("every event's device is listed"))
        .collect();
    let most = devices.len().min(MAX_WINDOW_PARTS);
    let mut parts = 2;
    while parts <= most {
        let mut split: Vec<Vec<Arc<ProjectedEvent>>> = vec![Vec::new(); parts];
        for (event, &n) in events.iter().zip(&nth) {
            split[n * parts / devices.len()].push(event.clone());
        }
        let mut alerts = Vec::new();
        let mut fitted = true;
        for part_events in &split {
            let packed = instance.pack_summary(rule.member(), part_events);
            match alerts_of(instance, rule, span, part_events, packed) {
                Ok(part_alerts) => alerts.extend(part_alerts),
                Err(e) if e.kind == FailureKind::TooMuchOutput => {
                    (error, fitted) = (e, false);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if fitted {
            return Ok(alerts);
        }
        parts = if parts == most { most + 1 } else { (parts * 4).min(most) };
    }
    Err(error)
}

/// A `summarize` call over `events` (in time order, packed already) and the engine's columns
/// of each alert.
fn alerts_of(
    instance: &mut RuleInstance,
    rule: &Arc<CompiledRule>,
    (start, end): (i64, i64),
    events: &[Arc<ProjectedEvent>],
    packed: PackedSummary,
) -> Result<Vec<Alert>, RuleError> {
    let rows = instance.summarize_packed((start, end), packed)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let covered: Vec<&ProjectedEvent> = row.events.iter().map(|&i| &*events[i]).collect();
            let time_text = |e: Option<&&ProjectedEvent>| {
                e.map_or_else(String::new, |e| e.get(Field::Timestamp).to_owned())
            };
            Alert {
                rule: rule.clone(),
                window_start_ms: start,
                window_end_ms: end,
                columns: row.columns,
                match_count: covered.len(),
                first_timestamp: time_text(covered.iter().min_by_key(|e| e.time_ms())),
                last_timestamp: time_text(covered.iter().max_by_key(|e| e.time_ms())),
                report_ids: covered.iter().map(|e| e.get(Field::ReportId).to_owned()).collect(),
                window_part: None,
                late: false,
            }
        })
        .collect())
}

/// Which windows to close.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closing {
    /// Windows that end at or before this time (`None`: all).
    pub(crate) watermark: Option<i64>,
    /// Windows that start after this time too (the clock's horizon, see
    /// [`super::WindowClosing::Watermark`]).
    pub(crate) ahead_from: Option<i64>,
    /// Reports every closed window as this span instead (`--window all`: the input's own).
    pub(crate) span: Option<(i64, i64)>,
}

/// A closed window to summarize: its rule (by index), the span to report, its matched
/// events, which part of the window they are when a device's matches filled it before it
/// closed, and whether late events opened it after its span's window had closed (see
/// [`OpenWindow`]).
pub(crate) struct Due {
    rule: usize,
    span: (i64, i64),
    events: Vec<Arc<ProjectedEvent>>,
    part: Option<u32>,
    late: bool,
}

/// The bytes that windows summarized at once may send into their instances together (a
/// window alone may send more): summarizing two windows of a noisy rule at once, 58 MB each
/// with the values one after another (contract 0.3.0), took the catalog over 5,000 EVTX
/// files from 236 to 290-340 MB at its peak.
const SUMMARIZED_AT_ONCE_BYTES: usize = 64 << 20;

/// Summarizes the windows of the rules `which` selects that `closing` closes, into alerts
/// ordered by window start, then rule load order, then the rule's own order. With `jobs`
/// above one, several windows are summarized at once; their outcomes are taken in in the
/// order one thread would have summarized them, so the alerts, failures and quarantines are
/// the same whatever the number.
pub(crate) fn close(
    set: &mut RuleSet,
    which: impl Fn(usize) -> bool,
    closing: Closing,
    call_matches: usize,
    jobs: usize,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
    write: &mut dyn FnMut(&Alert) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut due: Vec<Due> = Vec::new();
    for (rule_index, run) in set.runs.iter_mut().enumerate() {
        if !which(rule_index) {
            continue;
        }
        let mut keep = match closing.watermark {
            // `split_off` keeps the windows that end after the watermark (windows of one
            // spec never overlap, so their starts order them as their ends do).
            Some(w) => {
                let first_open = run.windows.keys().find(|(_, end)| *end > w).copied();
                match first_open {
                    Some(key) => run.windows.split_off(&key),
                    None => Default::default(),
                }
            }
            None => Default::default(),
        };
        if let Some(from) = closing.ahead_from
            && let Some(key) = keep.keys().find(|(start, _)| *start > from).copied()
        {
            let mut ahead = keep.split_off(&key);
            run.windows.append(&mut ahead);
        }
        let closed = std::mem::replace(&mut run.windows, keep);
        // Shared with the other rules that matched the same events: summarized as they are,
        // not copied (a noisy rule's window of every event would double the memory).
        for (span, window) in closed {
            let late = window.late;
            for (part, devices) in window.into_parts() {
                let span = closing.span.unwrap_or(span);
                due.extend(calls(rule_index, span, part, late, devices, call_matches));
            }
        }
    }
    summarize(set, due, jobs, diagnose, write)
}

/// The matches of the device `device` that filled `window` of the rule at `rule_index` (see
/// [`OpenWindow::hold`]), or with `None` those of every device, taken out as the window's
/// next part for each, reported as `span`, for [`summarize`] to alert now; the devices'
/// later matches in the window make parts of their own. Nothing when nothing is left.
pub(crate) fn parts_due(
    set: &mut RuleSet,
    rule_index: usize,
    window: (i64, i64),
    device: Option<u64>,
    span: (i64, i64),
    call_matches: usize,
) -> Vec<Due> {
    let Some(open) = set.runs[rule_index].windows.get_mut(&window) else { return Vec::new() };
    let late = open.late;
    let parts = match device {
        Some(device) => open.take_part(device).into_iter().collect(),
        None => open.take_parts(),
    };
    parts
        .into_iter()
        .flat_map(|(part, devices)| calls(rule_index, span, Some(part), late, devices, call_matches))
        .collect()
}

/// Matches summarized before the alerts they made are written: the windows a close
/// summarizes are taken in runs of about this many matches, and each run's alerts written
/// before the next is summarized. Held until the last, the alerts of 400,000 devices (forged
/// names) took 560 MB.
const WRITTEN_AFTER_MATCHES: usize = 100_000;

/// Summarizes `due` and writes the alerts with `write`, ordered by window start, then rule
/// load order, then the order `due` lists them in (see [`close`]).
pub(crate) fn summarize(
    set: &mut RuleSet,
    mut due: Vec<Due>,
    jobs: usize,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
    write: &mut dyn FnMut(&Alert) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // Stable: the calls of one rule and window keep their order.
    due.sort_by_key(|d| (d.span.0, d.rule));
    let mut due = due.into_iter().peekable();
    while due.peek().is_some() {
        let mut taken: Vec<Due> = Vec::new();
        let mut matches = 0;
        while let Some(next) =
            due.next_if(|d| taken.is_empty() || matches + d.events.len() <= WRITTEN_AFTER_MATCHES)
        {
            matches += next.events.len();
            taken.push(next);
        }
        for alert in summarize_in_order(set, taken, jobs, diagnose) {
            write(&alert)?;
        }
    }
    Ok(())
}

/// Summarizes `due` into alerts, in the order `due` lists them in.
fn summarize_in_order(
    set: &mut RuleSet,
    mut due: Vec<Due>,
    jobs: usize,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Vec<Alert> {
    let ahead = summarize_ahead(set, &mut due, jobs);
    let mut alerts: Vec<Alert> = Vec::new();
    for (due, ahead) in due.iter_mut().zip(ahead) {
        let events = due.events.len();
        // Quarantined before this window: not summarized (or its outcome, had another thread
        // summarized it ahead, not taken).
        if set.runs[due.rule].is_quarantined() {
            set.runs[due.rule].summary.unsummarized_matches += events as u64;
            continue;
        }
        let outcome = ahead.unwrap_or_else(|| {
            let (instance, _) = set.instances.of(due.rule);
            summarize_window(instance, &set.runs[due.rule].rule, due.span, &mut due.events)
        });
        let outcome = outcome.map(|mut alerts| {
            for alert in &mut alerts {
                alert.window_part = due.part;
                alert.late = due.late;
            }
            alerts
        });
        let run = &mut set.runs[due.rule];
        match outcome {
            Ok(window_alerts) => {
                run.succeeded();
                run.summary.alerts += window_alerts.len() as u64;
                alerts.extend(window_alerts);
            }
            Err(error) => {
                run.summary.unsummarized_matches += events as u64;
                run.failed(&error, events, None, &set.quarantined[due.rule], diagnose);
            }
        }
    }
    // Instances kept grown for the next large window give their memory back.
    set.instances.release_grown();
    alerts
}

/// With `jobs` above one, the outcomes of `due`'s windows summarized ahead on as many threads,
/// each with instances of its own and taking the next window as it is free (windows differ a
/// thousandfold in size); `None` for a window left to the calling thread, which, taking the
/// outcomes in in order, summarizes the windows left whose rule is not quarantined by then,
/// one at a time. Left are:
/// - a window that would take the events being summarized past
///   [`SUMMARIZED_AT_ONCE_BYTES`];
/// - the later windows of a rule that failed as many times as would quarantine it, so that
///   a rule that loops costs no more calls than on one thread.
fn summarize_ahead(
    set: &mut RuleSet,
    due: &mut [Due],
    jobs: usize,
) -> Vec<Option<Result<Vec<Alert>, RuleError>>> {
    if jobs < 2 || due.len() < 2 {
        return due.iter().map(|_| None).collect();
    }
    let RuleSet { runs, instances, summarizers, quarantined, .. } = set;
    let failures: Vec<AtomicU32> = runs.iter().map(|_| AtomicU32::new(0)).collect();
    let skipped = |due: &Due| {
        quarantined[due.rule].load(Ordering::Relaxed)
            || failures[due.rule].load(Ordering::Relaxed)
                >= runs[due.rule].rule.limits().max_consecutive_failures
    };
    let threads = jobs.min(due.iter().filter(|d| !skipped(d)).count());
    if threads > 1 && summarizers.len() < threads - 1 {
        let rules: Vec<Arc<CompiledRule>> = runs.iter().map(|r| r.rule.clone()).collect();
        while summarizers.len() < threads - 1 {
            match Instances::new(&rules) {
                Ok(more) => summarizers.push(more),
                // The rules were instantiated already: should it fail now, fewer threads
                // summarize.
                Err(error) => {
                    tracing::warn!(error = %error, "summarizing windows on fewer threads");
                    break;
                }
            }
        }
    }
    let helpers = summarizers.len().min(threads.saturating_sub(1));
    if helpers == 0 {
        return due.iter().map(|_| None).collect();
    }
    let (next, in_flight) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let slots: Vec<Mutex<&mut Due>> = due.iter_mut().map(Mutex::new).collect();
    let work = |instances: &mut Instances| {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { return done };
            let mut due = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if skipped(&due) {
                continue;
            }
            // What summarizing it copies, twice: the call's columns, then the instance's
            // memory. Counted here, on the thread that takes it, and only when windows are
            // summarized at once. For a pack whose columns share values (contract 0.4.0),
            // that is known once the window is packed, and a window of tens of thousands of
            // matches packs to a few megabytes; packed apart, it is told without packing.
            let rule = &runs[due.rule].rule;
            let (instance, _) = instances.of(due.rule);
            in_time_order(&mut due.events);
            let packed = rule.shares_values().then(|| instance.pack_summary(rule.member(), &due.events));
            let bytes =
                packed.as_ref().map_or_else(|| rule.summary_bytes(&due.events), PackedSummary::guest_bytes);
            let before = in_flight.fetch_add(bytes, Ordering::Relaxed);
            if before > 0 && before + bytes > SUMMARIZED_AT_ONCE_BYTES {
                in_flight.fetch_sub(bytes, Ordering::Relaxed);
                continue;
            }
            let packed = packed.unwrap_or_else(|| instance.pack_summary(rule.member(), &due.events));
            let outcome = summarize_packed_window(instance, rule, due.span, &due.events, packed);
            in_flight.fetch_sub(bytes, Ordering::Relaxed);
            if outcome.is_err() {
                failures[due.rule].fetch_add(1, Ordering::Relaxed);
            }
            done.push((i, outcome));
        }
    };
    let mut outcomes: Vec<Option<Result<Vec<Alert>, RuleError>>> = slots.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let others: Vec<_> = summarizers[..helpers]
            .iter_mut()
            .map(|instances| {
                std::thread::Builder::new()
                    .name("rulehost-summarize".into())
                    .spawn_scoped(scope, || work(instances))
                    .expect("a thread can be started")
            })
            .collect();
        let mine = work(instances);
        let theirs = others.into_iter().flat_map(|t| t.join().expect("a summarizing thread does not panic"));
        for (i, outcome) in mine.into_iter().chain(theirs) {
            outcomes[i] = Some(outcome);
        }
    });
    // Before the windows left are summarized on this thread.
    summarizers[..helpers].iter_mut().for_each(Instances::release_grown);
    outcomes
}
