//! The summary line of an evaluation, on stderr.

use rulehost::eval::Summary;

/// `1 record`, `2 records`, `2 matches`.
pub(crate) fn plural(n: u64, word: &str) -> String {
    match (n, word.ends_with("ch")) {
        (1, _) => format!("{n} {word}"),
        (_, true) => format!("{n} {word}es"),
        (_, false) => format!("{n} {word}s"),
    }
}

/// Skipped kinds the summary line names; past it, the largest of them and how many more.
pub(crate) const SHOWN_SKIPPED_KINDS: usize = 8;

/// The skipped kinds as the summary line gives them: all of them by name when there are
/// few, else the largest and a count of the rest (a folder of EVTX files has 150 kinds).
pub(crate) fn skipped_kinds(summary: &Summary) -> String {
    if summary.skipped.len() <= SHOWN_SKIPPED_KINDS {
        return summary.skipped.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
    }
    let kinds = summary.skipped_by_count();
    let (shown, rest) = kinds.split_at(SHOWN_SKIPPED_KINDS);
    let mut parts: Vec<String> = shown.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let records: u64 = rest.iter().map(|(_, n)| n).sum();
    parts.push(format!("{} more kinds: {records}; --summary-json lists all", rest.len()));
    parts.join(", ")
}

pub(crate) fn print_summary(summary: &Summary) {
    let counts = |map: Vec<(String, u64)>| {
        if map.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = map.into_iter().map(|(k, n)| format!("{k}: {n}")).collect();
            format!(" ({})", parts.join(", "))
        }
    };
    let skipped =
        if summary.skipped.is_empty() { String::new() } else { format!(" ({})", skipped_kinds(summary)) };
    eprintln!(
        "rulehost: {} read: {} evaluated, {} skipped{}, {} rejected{}; {}, {}",
        plural(summary.read, "record"),
        summary.evaluated,
        summary.skipped_total(),
        skipped,
        summary.rejected_total(),
        counts(summary.rejected.iter().map(|(k, n)| (k.to_string(), *n)).collect()),
        plural(summary.matches, "match"),
        plural(summary.alerts, "alert"),
    );
    for rule in summary.rules.iter().filter(|r| r.failures > 0 || r.quarantined.is_some()) {
        let state = match &rule.quarantined {
            Some(reason) => format!("quarantined ({reason})"),
            None => format!("last failure: {}", rule.last_failure.as_deref().unwrap_or("unknown")),
        };
        eprintln!(
            "rulehost: {}: {}, {} not evaluated, {} not summarized; {state}",
            rule_name(rule),
            plural(rule.failures, "failed call"),
            plural(rule.failed_events, "event"),
            plural(rule.unsummarized_matches, "match"),
        );
    }
}

/// A live run's counters, a line per rule; a pack's rules (those of one artifact: one
/// digest) in one line of their totals, and a line of their own only for those that failed.
/// The catalog is one pack of 1,414 rules, and a line for each at every report buried what
/// the operator looks for.
pub(crate) fn stats_lines(rules: &[rulehost::eval::RuleSummary]) -> Vec<String> {
    let line = |name: String, evaluated: u64, matches: String, alerts: u64, failures: u64, swaps: u64| {
        format!(
            "{name}: {evaluated} events, {matches}, {}, {}, {swaps} swaps",
            plural(alerts, "alert"),
            plural(failures, "failure")
        )
    };
    let rule_line = |rule: &rulehost::eval::RuleSummary| {
        let matches = plural(rule.matches, "match");
        line(rule_name(rule), rule.evaluated, matches, rule.alerts, rule.failures, rule.swaps)
    };
    let mut lines = Vec::new();
    for pack in rules.chunk_by(|a, b| a.digest == b.digest) {
        if let [rule] = pack {
            lines.push(rule_line(rule));
            continue;
        }
        // A pack is evaluated, fails and is swapped as one component: each of its rules
        // counts the same events, calls and swaps.
        let most = |count: fn(&rulehost::eval::RuleSummary) -> u64| pack.iter().map(count).max().unwrap_or(0);
        let matches: u64 = pack.iter().map(|r| r.matches).sum();
        let matching = pack.iter().filter(|r| r.matches > 0).count() as u64;
        let matches = format!("{} (by {})", plural(matches, "match"), plural(matching, "rule"));
        lines.push(line(
            format!("pack {} ({} rules)", pack[0].digest, pack.len()),
            most(|r| r.evaluated),
            matches,
            pack.iter().map(|r| r.alerts).sum(),
            most(|r| r.failures),
            most(|r| r.swaps),
        ));
        lines.extend(pack.iter().filter(|r| r.failures > 0 || r.quarantined.is_some()).map(rule_line));
    }
    lines
}

/// `rule ID VERSION (DIGEST)`, as messages name a rule.
pub(crate) fn rule_name(rule: &rulehost::eval::RuleSummary) -> String {
    format!("rule {} {} ({})", rule.id, rule.version, rule.digest)
}
