//! KQL aggregation helpers for [`Rule::summarize`](crate::Rule::summarize).

use std::collections::{BTreeMap, HashSet};

use crate::{Event, Field};

/// `summarize ... by key`: the indices of `events` grouped by `key`, groups in the order
/// their first event appears, events in order within a group. Each event's key is looked
/// up in an ordered map, so a window of many matches over many keys stays cheap.
pub fn group_by<'a, K: Ord>(events: &[Event<'a>], key: impl Fn(&Event<'a>) -> K) -> Vec<Vec<usize>> {
    let mut group_of: BTreeMap<K, usize> = BTreeMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let next = groups.len();
        let group = *group_of.entry(key(event)).or_insert(next);
        if group == next {
            groups.push(Vec::new());
        }
        groups[group].push(i);
    }
    groups
}

/// `take_any(field)` over the events at `group`, preferring a non-empty value: the first
/// non-empty one, or `""` when all are empty.
pub fn take_any<'a>(events: &[Event<'a>], group: &[usize], field: Field) -> &'a str {
    group.iter().map(|&i| events[i].get(field)).find(|v| !v.is_empty()).unwrap_or("")
}

/// `make_set(field, max_size)` over the events at `group`: the distinct values in the
/// order they first appear, at most `max_size` of them. Each value is looked up in a set of
/// those taken, so a window of many distinct values stays linear: compared with every value
/// taken, 10,000 distinct command lines on one device (a web shell's reconnaissance loop, or
/// forged lines) took the summary past its deadline, and the window gave no alert.
pub fn make_set(events: &[Event<'_>], group: &[usize], field: Field, max_size: usize) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut set: Vec<String> = Vec::new();
    for &i in group {
        if set.len() == max_size {
            break;
        }
        let value = events[i].get(field);
        if seen.insert(value) {
            set.push(value.to_owned());
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    fn events(batch: &Batch) -> Vec<Event<'_>> {
        (0..batch.len()).map(|i| batch.event(i)).collect()
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let batch = Batch::from_rows(&[
            &[(Field::DeviceId, "b")],
            &[(Field::DeviceId, "a")],
            &[(Field::DeviceId, "b")],
            &[(Field::DeviceId, "c")],
            &[(Field::DeviceId, "a")],
        ]);
        let events = events(&batch);
        assert_eq!(group_by(&events, |e| e.device_id()), vec![vec![0, 2], vec![1, 4], vec![3]]);
    }

    #[test]
    fn many_keys_group_as_a_scan_of_the_groups_does() {
        let keys: Vec<String> = (0..600).map(|i| format!("device-{}", (i * 37) % 97)).collect();
        let rows: Vec<[(Field, &str); 1]> = keys.iter().map(|k| [(Field::DeviceId, k.as_str())]).collect();
        let rows: Vec<&[(Field, &str)]> = rows.iter().map(|r| &r[..]).collect();
        let batch = Batch::from_rows(&rows);
        let events = events(&batch);
        // The definition: a new group at a key's first appearance, then each event in it.
        let mut expected: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match expected.iter_mut().find(|(k, _)| k == key) {
                Some((_, group)) => group.push(i),
                None => expected.push((key, vec![i])),
            }
        }
        let expected: Vec<Vec<usize>> = expected.into_iter().map(|(_, group)| group).collect();
        assert_eq!(expected.len(), 97);
        assert_eq!(group_by(&events, |e| e.device_id()), expected);
    }

    #[test]
    fn take_any_prefers_non_empty() {
        let batch = Batch::from_rows(&[
            &[(Field::FileName, "")],
            &[(Field::FileName, "cmd.exe")],
            &[(Field::FileName, "powershell.exe")],
        ]);
        let events = events(&batch);
        assert_eq!(take_any(&events, &[0, 1, 2], Field::FileName), "cmd.exe");
        assert_eq!(take_any(&events, &[2, 1], Field::FileName), "powershell.exe");
        assert_eq!(take_any(&events, &[0], Field::FileName), "");
    }

    #[test]
    fn make_set_of_many_values_keeps_each_first_appearance_once() {
        let values: Vec<String> =
            (0..5000).map(|i| format!("cmd.exe /c whoami {}", (i * 7) % 3001)).collect();
        let rows: Vec<[(Field, &str); 1]> =
            values.iter().map(|v| [(Field::ProcessCommandLine, v.as_str())]).collect();
        let rows: Vec<&[(Field, &str)]> = rows.iter().map(|r| &r[..]).collect();
        let batch = Batch::from_rows(&rows);
        let events = events(&batch);
        let all: Vec<usize> = (0..values.len()).collect();
        let mut expected: Vec<String> = Vec::new();
        for value in &values {
            if !expected.contains(value) {
                expected.push(value.clone());
            }
        }
        assert_eq!(expected.len(), 3001);
        assert_eq!(make_set(&events, &all, Field::ProcessCommandLine, usize::MAX), expected);
        assert_eq!(make_set(&events, &all, Field::ProcessCommandLine, 10), expected[..10]);
    }

    #[test]
    fn make_set_is_distinct_ordered_and_capped() {
        let batch = Batch::from_rows(&[
            &[(Field::ProcessCommandLine, "b")],
            &[(Field::ProcessCommandLine, "a")],
            &[(Field::ProcessCommandLine, "b")],
            &[(Field::ProcessCommandLine, "c")],
        ]);
        let events = events(&batch);
        let all = [0, 1, 2, 3];
        assert_eq!(make_set(&events, &all, Field::ProcessCommandLine, 100), ["b", "a", "c"]);
        assert_eq!(make_set(&events, &all, Field::ProcessCommandLine, 2), ["b", "a"]);
    }
}
