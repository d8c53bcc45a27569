//! Packs events into the contract's column batches: per field one text arena and the end
//! offset of each value. Lowering the arena and the offsets is a copy each, where a list
//! of records costs one guest allocation per string.

use crate::events::{Field, FieldValues};

/// The `field` of every event of `events`: the values concatenated, and the end offset of
/// each (of whole events or of a window's projections). Public so that a native baseline (the bench's) packs exactly as a rule call does.
pub fn column<E: FieldValues>(events: &[E], field: Field) -> (String, Vec<u32>) {
    let size = events.iter().map(|e| e.value(field).len()).sum();
    let mut text = String::with_capacity(size);
    let mut ends = Vec::with_capacity(events.len());
    for event in events {
        text.push_str(event.value(field));
        ends.push(u32::try_from(text.len()).expect("a column of one batch is under 4 GiB"));
    }
    (text, ends)
}
