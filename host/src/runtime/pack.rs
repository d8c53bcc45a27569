//! Packs events into the contract's column batches: per field one text arena and the end
//! offset of each value. Lowering the arena and the offsets is a copy each, where a list
//! of records costs one guest allocation per string.

use crate::events::{Field, FieldValues};

/// A batch packed for a rule call: how many events, the fields packed, and one column per
/// field.
pub(super) struct Batch<'f> {
    pub(super) count: usize,
    pub(super) fields: &'f [Field],
    pub(super) columns: Vec<(String, Vec<u32>)>,
}

impl<'f> Batch<'f> {
    /// The `fields` of `events`, packed into `columns` (emptied first; the room they have
    /// from earlier calls is kept).
    pub(super) fn of<E: FieldValues>(
        events: &[E],
        fields: &'f [Field],
        mut columns: Vec<(String, Vec<u32>)>,
    ) -> Batch<'f> {
        fill_columns(events, fields, &mut columns);
        Batch { count: events.len(), fields, columns }
    }

    /// What the batch takes in the guest: its values and each value's end (counted from
    /// the columns, not by reading the events again).
    pub(super) fn guest_bytes(&self) -> usize {
        self.columns.iter().map(|(text, ends)| text.len() + 4 * ends.len()).sum()
    }
}

/// The `fields` of every event of `events`, one column per field: the values concatenated,
/// and the end offset of each (of whole events or of a window's projections). Public so
/// that a native baseline (the bench's) packs exactly as a rule call does.
pub fn columns<E: FieldValues>(events: &[E], fields: &[Field]) -> Vec<(String, Vec<u32>)> {
    let mut columns = Vec::new();
    fill_columns(events, fields, &mut columns);
    columns
}

/// [`columns`], into `columns`, whose room is kept: an instance keeps its columns from call
/// to call (see `RuleInstance`), and a large window of a noisy rule is often followed by the
/// same window of another rule that matched the same events. The events are read one after
/// the other, each for all its fields: a window's projections lie apart in memory, and
/// reading them twice per field (to size each column, then to fill it) took 3.8% of a run of
/// the Sigma catalog over real EVTX records. Columns kept for fewer events than these are
/// sized first, in one more reading of the events: grown as they were filled, they were
/// copied at each doubling.
pub(super) fn fill_columns<E: FieldValues>(
    events: &[E],
    fields: &[Field],
    columns: &mut Vec<(String, Vec<u32>)>,
) {
    let sized =
        columns.len() == fields.len() && columns.iter().all(|(_, ends)| ends.capacity() >= events.len());
    columns.resize_with(fields.len(), Default::default);
    for (text, ends) in columns.iter_mut() {
        text.clear();
        ends.clear();
        ends.reserve(events.len());
    }
    if !sized {
        let mut sizes = vec![0usize; fields.len()];
        for event in events {
            for (&field, size) in fields.iter().zip(&mut sizes) {
                *size += event.value(field).len();
            }
        }
        for ((text, _), size) in columns.iter_mut().zip(sizes) {
            text.reserve(size);
        }
    }
    for event in events {
        for (&field, (text, ends)) in fields.iter().zip(columns.iter_mut()) {
            text.push_str(event.value(field));
            ends.push(u32::try_from(text.len()).expect("a column of one batch is under 4 GiB"));
        }
    }
}
