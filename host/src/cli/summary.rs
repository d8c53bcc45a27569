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
    say!(
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
    if summary.windows_cut > 0 {
        say!(
            "rulehost: {} summarized before their end, as the open windows held more than --max-window-mib",
            plural(summary.windows_cut, "window")
        );
    }
    for line in failure_lines(&summary.rules) {
        say!("rulehost: {line}");
    }
}

/// A line for each rule that failed or was quarantined; a pack's rules that failed together
/// (a failed call of the pack is each of its rules') in one line, as the pack.
pub(crate) fn failure_lines(rules: &[rulehost::eval::RuleSummary]) -> Vec<String> {
    let line = |name: String, rule: &rulehost::eval::RuleSummary| {
        let state = match &rule.quarantined {
            Some(reason) => format!("quarantined ({reason})"),
            None => format!("last failure: {}", rule.last_failure.as_deref().unwrap_or("unknown")),
        };
        format!(
            "{name}: {}, {} not evaluated, {} not summarized; {state}",
            plural(rule.failures, "failed call"),
            plural(rule.failed_events, "event"),
            plural(rule.unsummarized_matches, "match"),
        )
    };
    let failed = |r: &&rulehost::eval::RuleSummary| r.failures > 0 || r.quarantined.is_some();
    let mut lines = Vec::new();
    for pack in packs(rules) {
        let together = |r: &rulehost::eval::RuleSummary| {
            (r.failures, r.failed_events, r.unsummarized_matches, r.quarantined.is_some())
        };
        if pack.len() > 1 && failed(&&pack[0]) && pack.iter().all(|r| together(r) == together(&pack[0])) {
            lines.push(line(pack_name(pack), &pack[0]));
        } else {
            lines.extend(pack.iter().filter(failed).map(|r| line(rule_name(r), r)));
        }
    }
    lines
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
    for pack in packs(rules) {
        if let [rule] = pack {
            lines.push(rule_line(rule));
            continue;
        }
        // A pack is evaluated, fails and is swapped as one component: each of its rules
        // counts the same events, calls and swaps, and a failed call of the pack as its own.
        let most = |count: fn(&rulehost::eval::RuleSummary) -> u64| pack.iter().map(count).max().unwrap_or(0);
        let shared_failures = pack.iter().map(|r| r.failures).min().unwrap_or(0);
        let all_quarantined = pack.iter().all(|r| r.quarantined.is_some());
        let matches: u64 = pack.iter().map(|r| r.matches).sum();
        let matching = pack.iter().filter(|r| r.matches > 0).count() as u64;
        let matches = format!("{} (by {})", plural(matches, "match"), plural(matching, "rule"));
        let mut totals = line(
            pack_name(pack),
            most(|r| r.evaluated),
            matches,
            pack.iter().map(|r| r.alerts).sum(),
            shared_failures,
            most(|r| r.swaps),
        );
        match (&pack[0].quarantined, &pack[0].last_failure) {
            (Some(reason), _) if all_quarantined => totals.push_str(&format!("; quarantined ({reason})")),
            (_, Some(failure)) if shared_failures > 0 => {
                totals.push_str(&format!("; last failure: {failure}"))
            }
            _ => {}
        }
        lines.push(totals);
        // The rules whose own calls (their `summarize`) failed besides.
        lines.extend(
            pack.iter()
                .filter(|r| r.failures > shared_failures || (r.quarantined.is_some() && !all_quarantined))
                .map(rule_line),
        );
    }
    lines
}

/// The rules of each artifact, in load order: a component's one, a pack's many (one digest).
fn packs(rules: &[rulehost::eval::RuleSummary]) -> impl Iterator<Item = &[rulehost::eval::RuleSummary]> {
    rules.chunk_by(|a, b| a.digest == b.digest)
}

/// `pack DIGEST (N rules)`, as the summary and the stats name a pack's rules together.
fn pack_name(pack: &[rulehost::eval::RuleSummary]) -> String {
    format!("pack {} ({} rules)", pack[0].digest, pack.len())
}

/// `rule ID VERSION (DIGEST)`, as messages name a rule.
pub(crate) fn rule_name(rule: &rulehost::eval::RuleSummary) -> String {
    format!("rule {} {} ({})", rule.id, rule.version, rule.digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulehost::eval::RuleSummary;

    fn pack_of(ids: &[&str], digest: &str) -> Vec<RuleSummary> {
        let rule = |id: &&str| RuleSummary {
            id: id.to_string(),
            version: "1".into(),
            digest: digest.into(),
            evaluated: 10,
            ..RuleSummary::default()
        };
        ids.iter().map(rule).collect()
    }

    #[test]
    fn a_packs_rules_are_one_line_unless_one_of_them_failed_alone() {
        let mut rules = pack_of(&["single"], "sha256:one");
        rules.extend(pack_of(&["a", "b", "c"], "sha256:pack"));
        rules[1].matches = 3;
        rules[1].alerts = 1;
        rules[3].matches = 2;
        rules[3].alerts = 2;
        assert_eq!(
            stats_lines(&rules),
            [
                "rule single 1 (sha256:one): 10 events, 0 matches, 0 alerts, 0 failures, 0 swaps",
                "pack sha256:pack (3 rules): 10 events, 5 matches (by 2 rules), 3 alerts, 0 failures, 0 swaps",
            ]
        );
        // A failed call of the pack is each rule's: said once, on the pack's line.
        for rule in &mut rules[1..] {
            rule.failures = 1;
            rule.last_failure = Some("deadline exceeded".into());
        }
        let lines = stats_lines(&rules);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[1].ends_with("1 failure, 0 swaps; last failure: deadline exceeded"), "{}", lines[1]);
        // One rule's own `summarize` failed besides: a line of its own.
        rules[2].failures = 2;
        let lines = stats_lines(&rules);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[2].starts_with("rule b 1 (sha256:pack): 10 events, 0 matches, 0 alerts, 2 failures"),
            "{}",
            lines[2]
        );
        // Quarantined, all of them.
        for rule in &mut rules[1..] {
            rule.quarantined = Some("3 failed calls in a row".into());
        }
        let lines = stats_lines(&rules);
        assert!(lines[1].ends_with("; quarantined (3 failed calls in a row)"), "{}", lines[1]);
    }

    #[test]
    fn a_packs_rules_that_failed_together_are_one_line_of_evals_summary() {
        let mut rules = pack_of(&["a", "b", "c"], "sha256:pack");
        assert_eq!(failure_lines(&rules), Vec::<String>::new());
        for rule in &mut rules {
            (rule.failures, rule.failed_events) = (1, 7);
            rule.last_failure = Some("deadline exceeded".into());
        }
        assert_eq!(
            failure_lines(&rules),
            [
                "pack sha256:pack (3 rules): 1 failed call, 7 events not evaluated, 0 matches not summarized; last failure: deadline exceeded"
            ]
        );
        // One rule's `summarize` failed besides: each rule says its own.
        rules[1].unsummarized_matches = 4;
        let lines = failure_lines(&rules);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[1].starts_with("rule b 1 (sha256:pack): 1 failed call, 7 events not evaluated, 4 matches"),
            "{}",
            lines[1]
        );
    }
}
