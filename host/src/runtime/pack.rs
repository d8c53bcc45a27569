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
    /// The `fields` of `events`, packed.
    pub(super) fn of<E: FieldValues>(events: &[E], fields: &'f [Field]) -> Batch<'f> {
        Batch { count: events.len(), fields, columns: columns(events, fields) }
    }

    /// What the batch takes in the guest: its values and each value's end (counted from
    /// the columns, not by reading the events again).
    pub(super) fn guest_bytes(&self) -> usize {
        self.columns.iter().map(|(text, ends)| text.len() + 4 * ends.len()).sum()
    }
}

/// The `fields` of every event of `events`, one column per field: the values concatenated,
/// and the end offset of each (of whole events or of a window's projections). The events are
/// read one after the other, each for all its fields: a window's projections lie apart in
/// memory, and reading them twice per field (to size each column, then to fill it) took 3.8% of a
/// run of the Sigma catalog over real EVTX records. Public so that a native baseline (the
/// bench's) packs exactly as a rule call does.
pub fn columns<E: FieldValues>(events: &[E], fields: &[Field]) -> Vec<(String, Vec<u32>)> {
    let mut sizes = vec![0usize; fields.len()];
    for event in events {
        for (&field, size) in fields.iter().zip(&mut sizes) {
            *size += event.value(field).len();
        }
    }
    let mut columns: Vec<(String, Vec<u32>)> =
        sizes.iter().map(|&size| (String::with_capacity(size), Vec::with_capacity(events.len()))).collect();
    for event in events {
        for (&field, (text, ends)) in fields.iter().zip(&mut columns) {
            text.push_str(event.value(field));
            ends.push(u32::try_from(text.len()).expect("a column of one batch is under 4 GiB"));
        }
    }
    columns
}
