//! Packs events into the contract's column batches: per field one text arena and the end
//! offset of each value. Lowering the arena and the offsets is a copy each, where a list
//! of records costs one guest allocation per string.
//!
//! Since contract 0.4.0 a column may also say where each value starts, so that a value many
//! events have travels once: a window of a noisy rule is thousands of matches of a few
//! command lines, and sent one after another they filled tens of megabytes per call.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::events::{
    Field, FieldValues, MIN_SUMMARY_VALUE_BYTES, SUMMARY_TEXT_BYTES, SUMMARY_VALUE_BYTES, shortened,
};

/// One packed column: the values' text, each value's end in it, and (when values are
/// shared) each value's start; `starts` empty when the values lie one after another.
#[derive(Debug, Default)]
pub(super) struct PackedColumn {
    pub(super) text: String,
    pub(super) ends: Vec<u32>,
    pub(super) starts: Vec<u32>,
}

impl PackedColumn {
    /// Empties the column for `events` values, keeping its room.
    fn clear(&mut self, events: usize, shared: bool) {
        self.text.clear();
        self.ends.clear();
        self.starts.clear();
        self.ends.reserve(events);
        if shared {
            self.starts.reserve(events);
        }
    }

    /// What the column sends into the guest: its text and offsets.
    pub(super) fn sent_bytes(&self) -> usize {
        self.text.len() + 4 * (self.ends.len() + self.starts.len())
    }

    /// The memory the column holds.
    pub(super) fn capacity_bytes(&self) -> usize {
        self.text.capacity() + 4 * (self.ends.capacity() + self.starts.capacity())
    }
}

/// A batch packed for a rule call: how many events, the fields packed, and one column per
/// field.
pub(super) struct Batch<'f> {
    pub(super) count: usize,
    pub(super) fields: &'f [Field],
    pub(super) columns: Vec<PackedColumn>,
}

impl<'f> Batch<'f> {
    /// The `fields` of `events`, packed into `columns` (emptied first; the room they have
    /// from earlier calls is kept): with each value sent once per batch when `shared` (for
    /// a contract whose columns say where values start), else one after another.
    pub(super) fn of<E: FieldValues>(
        events: &[E],
        fields: &'f [Field],
        columns: Vec<PackedColumn>,
        shared: bool,
    ) -> Batch<'f> {
        // The values as they are: an `evaluate` call reads every value whole.
        Self::packed(events, fields, columns, shared, whole)
    }

    /// [`Batch::of`] for a `summarize` call: values cut to [`SUMMARY_VALUE_BYTES`], and
    /// shorter while their bytes together exceed [`SUMMARY_TEXT_BYTES`].
    pub(super) fn for_summary<E: FieldValues>(
        events: &[E],
        fields: &'f [Field],
        columns: Vec<PackedColumn>,
        shared: bool,
    ) -> Batch<'f> {
        let mut cap = SUMMARY_VALUE_BYTES;
        let mut batch = Self::packed(events, fields, columns, shared, |v| shortened(v, cap));
        while batch.text_bytes() > SUMMARY_TEXT_BYTES && cap > MIN_SUMMARY_VALUE_BYTES {
            cap = (cap / 4).max(MIN_SUMMARY_VALUE_BYTES);
            batch = Self::packed(events, fields, batch.columns, shared, |v| shortened(v, cap));
        }
        batch
    }

    /// The batch of `events`, each value packed as `value` gives it.
    fn packed<E: FieldValues>(
        events: &[E],
        fields: &'f [Field],
        mut columns: Vec<PackedColumn>,
        shared: bool,
        value: impl for<'v> Fn(&'v str) -> Cow<'v, str>,
    ) -> Batch<'f> {
        if shared {
            fill_shared_columns(events, fields, &mut columns, value);
        } else {
            fill_columns(events, fields, &mut columns, value);
        }
        Batch { count: events.len(), fields, columns }
    }

    /// The bytes of the batch's values.
    fn text_bytes(&self) -> usize {
        self.columns.iter().map(|c| c.text.len()).sum()
    }

    /// What the batch takes in the guest: its values and each value's end and start
    /// (counted from the columns, not by reading the events again).
    pub(super) fn guest_bytes(&self) -> usize {
        self.columns.iter().map(PackedColumn::sent_bytes).sum()
    }
}

/// What packing the `fields` of `events` one after another would take in the guest
/// ([`Batch::guest_bytes`]), without packing them. (Shared, that is known only once they
/// are packed: finding the repeated values is most of the packing.)
pub fn apart_bytes<E: FieldValues>(events: &[E], fields: &[Field]) -> usize {
    value_bytes(events, fields).iter().sum::<usize>() + 4 * events.len() * fields.len()
}

/// The bytes of the values of each of `fields` over `events`, field by field: the events
/// read one after the other, each for all its fields.
fn value_bytes<E: FieldValues>(events: &[E], fields: &[Field]) -> Vec<usize> {
    let mut sizes = vec![0usize; fields.len()];
    for event in events {
        for (&field, size) in fields.iter().zip(&mut sizes) {
            *size += event.value(field).len();
        }
    }
    sizes
}

/// The `fields` of every event of `events`, one column per field: the values concatenated,
/// and the end offset of each (of whole events or of a window's projections). Public so
/// that a native baseline (the bench's) packs exactly as a rule call does.
pub fn columns<E: FieldValues>(events: &[E], fields: &[Field]) -> Vec<(String, Vec<u32>)> {
    let mut columns = Vec::new();
    fill_columns(events, fields, &mut columns, whole);
    columns.into_iter().map(|c| (c.text, c.ends)).collect()
}

/// A value packed as it is.
fn whole(value: &str) -> Cow<'_, str> {
    Cow::Borrowed(value)
}

fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).expect("a column of one batch is under 4 GiB")
}

/// [`columns`], into `columns`, whose room is kept: an instance keeps its columns from call
/// to call (see `RuleInstance`), and a large window of a noisy rule is often followed by the
/// same window of another rule that matched the same events. The events are read one after
/// the other, each for all its fields: a window's projections lie apart in memory, and
/// reading them twice per field (to size each column, then to fill it) took 3.8% of a run of
/// the Sigma catalog over real EVTX records. Columns kept for fewer events than these are
/// sized first, in one more reading of the events: grown as they were filled, they were
/// copied at each doubling. Each value is packed as `value` gives it (a summary's cut).
fn fill_columns<E: FieldValues>(
    events: &[E],
    fields: &[Field],
    columns: &mut Vec<PackedColumn>,
    value: impl for<'v> Fn(&'v str) -> Cow<'v, str>,
) {
    let sized = columns.len() == fields.len() && columns.iter().all(|c| c.ends.capacity() >= events.len());
    columns.resize_with(fields.len(), Default::default);
    columns.iter_mut().for_each(|c| c.clear(events.len(), false));
    if !sized {
        for (column, size) in columns.iter_mut().zip(value_bytes(events, fields)) {
            column.text.reserve(size);
        }
    }
    for event in events {
        for (&field, column) in fields.iter().zip(columns.iter_mut()) {
            column.text.push_str(&value(event.value(field)));
            column.ends.push(offset(&column.text));
        }
    }
}

/// Like [`fill_columns`], with each distinct value of a column written once and every event
/// pointed at it. An event whose value is its predecessor's is pointed there without the
/// value being hashed: a window's events are in time order, and copies of one log or a
/// command run in a loop sit side by side.
fn fill_shared_columns<E: FieldValues>(
    events: &[E],
    fields: &[Field],
    columns: &mut Vec<PackedColumn>,
    packed_value: impl for<'v> Fn(&'v str) -> Cow<'v, str>,
) {
    columns.resize_with(fields.len(), Default::default);
    columns.iter_mut().for_each(|c| c.clear(events.len(), true));
    let mut placed: Vec<HashMap<&str, (u32, u32), foldhash::fast::RandomState>> =
        fields.iter().map(|_| HashMap::default()).collect();
    let mut last: Vec<Option<(&str, u32, u32)>> = vec![None; fields.len()];
    for event in events {
        for (((&field, column), placed), last) in
            fields.iter().zip(columns.iter_mut()).zip(&mut placed).zip(&mut last)
        {
            let value = event.value(field);
            let (start, end) = match *last {
                Some((seen, start, end)) if seen == value => (start, end),
                _ => *placed.entry(value).or_insert_with(|| {
                    let start = offset(&column.text);
                    column.text.push_str(&packed_value(value));
                    (start, offset(&column.text))
                }),
            };
            *last = Some((value, start, end));
            column.starts.push(start);
            column.ends.push(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of two fields.
    impl FieldValues for [String; 2] {
        fn value(&self, field: Field) -> &str {
            match field {
                Field::FileName => &self[0],
                Field::ProcessCommandLine => &self[1],
                _ => "",
            }
        }
    }

    /// Events whose two values are drawn from small sets, so that they repeat.
    fn drawn(count: usize, seed: u64) -> Vec<[String; 2]> {
        let mut next = crate::events::drawn(seed);
        let names = ["cmd.exe", "", "whoami.exe", "naïve.exe"];
        (0..count)
            .map(|_| {
                let name = names[next(names.len() as u64) as usize].to_owned();
                let line = format!("cmd /c echo {}", next(7)).repeat(next(3) as usize);
                [name, line]
            })
            .collect()
    }

    const FIELDS: [Field; 3] = [Field::FileName, Field::ProcessCommandLine, Field::DeviceId];

    fn value(column: &PackedColumn, i: usize) -> &str {
        let start = match (column.starts.is_empty(), i) {
            (false, _) => column.starts[i],
            (true, 0) => 0,
            (true, _) => column.ends[i - 1],
        };
        &column.text[start as usize..column.ends[i] as usize]
    }

    #[test]
    fn shared_columns_give_every_event_its_value_and_hold_each_value_once() {
        for seed in 0..50 {
            let events = drawn(1 + seed as usize * 7, seed + 1);
            let shared = Batch::of(&events, &FIELDS, Vec::new(), true);
            let apart = Batch::of(&events, &FIELDS, Vec::new(), false);
            for (f, &field) in FIELDS.iter().enumerate() {
                let (s, a) = (&shared.columns[f], &apart.columns[f]);
                assert_eq!(s.ends.len(), events.len());
                assert_eq!(s.starts.len(), events.len());
                assert!(a.starts.is_empty());
                for (i, event) in events.iter().enumerate() {
                    assert_eq!(value(s, i), event.value(field), "seed {seed}, event {i}");
                    assert_eq!(value(a, i), event.value(field), "seed {seed}, event {i}");
                }
                let mut distinct: Vec<&str> = events.iter().map(|e| e.value(field)).collect();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(s.text.len(), distinct.iter().map(|v| v.len()).sum::<usize>(), "seed {seed}");
            }
            assert_eq!(apart_bytes(&events, &FIELDS), apart.guest_bytes());
        }
    }

    #[test]
    fn columns_kept_from_a_shared_batch_pack_the_next_one_apart_and_back() {
        let (first, second) = (drawn(40, 1), drawn(25, 2));
        let shared = Batch::of(&first, &FIELDS, Vec::new(), true);
        let apart = Batch::of(&second, &FIELDS, shared.columns, false);
        assert!(apart.columns.iter().all(|c| c.starts.is_empty()));
        let again = Batch::of(&first, &FIELDS, apart.columns, true);
        for (f, &field) in FIELDS.iter().enumerate() {
            for (i, event) in first.iter().enumerate() {
                assert_eq!(value(&again.columns[f], i), event.value(field));
            }
        }
    }

    #[test]
    fn a_summary_is_handed_values_cut_to_fit_its_budget_each_marked() {
        // Distinct command lines past a value's cap, more of them than the budget holds cut
        // to that cap, and a short one that every event shares.
        let events: Vec<[String; 2]> = (0..SUMMARY_TEXT_BYTES / SUMMARY_VALUE_BYTES + 8)
            .map(|i| ["cmd.exe".to_owned(), format!("{i:08} {}", "x".repeat(SUMMARY_VALUE_BYTES))])
            .collect();
        for shared in [true, false] {
            let batch = Batch::for_summary(&events, &FIELDS, Vec::new(), shared);
            assert!(batch.text_bytes() <= SUMMARY_TEXT_BYTES, "{} bytes", batch.text_bytes());
            for (i, event) in events.iter().enumerate() {
                assert_eq!(value(&batch.columns[0], i), "cmd.exe");
                let line = value(&batch.columns[1], i);
                let whole = event.value(Field::ProcessCommandLine);
                assert!(line.len() < SUMMARY_VALUE_BYTES / 2 && line.starts_with(&whole[..8]), "{line}");
                assert!(line.contains(&format!("…[{} bytes, sha256:", whole.len())), "{line}");
            }
        }
        // Within the budget, each value is handed as a window keeps it: cut to its cap only.
        let few = &events[..4];
        let batch = Batch::for_summary(few, &FIELDS, Vec::new(), true);
        assert_eq!(
            value(&batch.columns[1], 3),
            shortened(few[3].value(Field::ProcessCommandLine), SUMMARY_VALUE_BYTES)
        );
    }
}
