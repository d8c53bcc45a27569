//! Closing windows: the `summarize` stage of each rule over the matches of a window, and
//! the engine's columns of each alert. The one place that turns matches into alerts.

use std::sync::Arc;

use super::Diagnostic;
use super::rule_set::RuleSet;
use crate::alerts::Alert;
use crate::events::{Field, ProjectedEvent};
use crate::runtime::{CompiledRule, RuleError, RuleInstance};

/// The `summarize` stage of one rule over the matched `events` of one window, and the
/// engine's columns (count, first and last time, report ids) of each alert. The events
/// are put in time order first, events of one time in reading order.
pub(crate) fn summarize_window(
    instance: &mut RuleInstance,
    rule: &Arc<CompiledRule>,
    (start, end): (i64, i64),
    events: &mut [Arc<ProjectedEvent>],
) -> Result<Vec<Alert>, RuleError> {
    events.sort_by_key(|e| (e.time_ms(), e.read_order()));
    let rows = instance.summarize(rule.member(), (start, end), events)?;
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
            }
        })
        .collect())
}

/// Which windows to close.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closing {
    /// Windows that end at or before this time (`None`: all).
    pub(crate) watermark: Option<i64>,
    /// Reports every closed window as this span instead (`--window all`: the input's own).
    pub(crate) span: Option<(i64, i64)>,
}

/// Summarizes the windows of the rules `which` selects that `closing` closes, into alerts
/// ordered by window start, then rule load order, then the rule's own order.
pub(crate) fn close(
    set: &mut RuleSet,
    which: impl Fn(usize) -> bool,
    closing: Closing,
    diagnose: &mut dyn FnMut(Diagnostic<'_>),
) -> Vec<Alert> {
    let mut alerts: Vec<(i64, usize, Alert)> = Vec::new();
    for (rule_index, run) in set.runs.iter_mut().enumerate() {
        if !which(rule_index) {
            continue;
        }
        let keep = match closing.watermark {
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
        let closed = std::mem::replace(&mut run.windows, keep);
        for ((start, end), shared) in closed {
            // Shared with the other rules that matched the same events: summarized as they
            // are, not copied (a noisy rule's window of every event would double the memory).
            let mut events = shared;
            let (start, end) = closing.span.unwrap_or((start, end));
            if run.is_quarantined() {
                run.summary.unsummarized_matches += events.len() as u64;
                continue;
            }
            let (instance, _) = set.instances.of(rule_index);
            match summarize_window(instance, &run.rule, (start, end), &mut events) {
                Ok(window_alerts) => {
                    run.succeeded();
                    run.summary.alerts += window_alerts.len() as u64;
                    alerts.extend(window_alerts.into_iter().map(|alert| (start, rule_index, alert)));
                }
                Err(error) => {
                    run.summary.unsummarized_matches += events.len() as u64;
                    run.failed(&error, events.len(), &set.quarantined[rule_index], diagnose);
                }
            }
        }
    }
    // Stable: rows of one rule and window keep the rule's order.
    alerts.sort_by_key(|(start, rule, _)| (*start, *rule));
    alerts.into_iter().map(|(_, _, alert)| alert).collect()
}
