//! Alerts: what a rule's `summarize` makes of the matched events of a time window, and
//! the windows themselves. The sinks that write them are in [`crate::sinks`].

mod window;

use std::sync::Arc;

pub use window::{WindowSpec, parse_duration};

use crate::events::ProcessEvent;
use crate::runtime::{AlertValue, CompiledRule};

/// One alert: a row of a rule's summarized output for one window, with the engine's columns.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The rule that raised it.
    pub rule: Arc<CompiledRule>,
    /// Window start, milliseconds since the epoch.
    pub window_start_ms: i64,
    /// Window end (exclusive), milliseconds since the epoch.
    pub window_end_ms: i64,
    /// The rule's columns, in its order.
    pub columns: Vec<(String, AlertValue)>,
    /// How many matched events the alert covers.
    pub match_count: usize,
    /// The earliest `Timestamp` of those events.
    pub first_timestamp: String,
    /// The latest `Timestamp` of those events.
    pub last_timestamp: String,
    /// The `ReportId`s of those events, in time order.
    pub report_ids: Vec<String>,
    /// Which part of the window it covers, for a device whose matches in the window reached
    /// the cap (see [`crate::pipeline::PipelineOptions::max_window_matches`]) and were
    /// summarized before the window closed: 1, 2, ... in order; `None` for the whole window.
    pub window_part: Option<u32>,
    /// Whether late events made it: their window had closed already (its alert written)
    /// when they came, so it covers only them.
    pub late: bool,
}

/// One event that a rule matched.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    /// The rule.
    pub rule: &'a CompiledRule,
    /// The event.
    pub event: &'a ProcessEvent,
}
