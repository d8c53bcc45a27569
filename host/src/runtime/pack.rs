//! Packs events into the contract's column batches: per field one byte arena and the end
//! offset of each value. Lowering a `list<u8>` and a `list<u32>` is a copy each, where a
//! list of records costs one guest allocation per string.

use super::bindings::wit;
use crate::events::{Field, ProcessEvent};

/// Packs the `fields` of `events`.
pub(super) fn pack(events: &[ProcessEvent], fields: &[Field]) -> wit::EventBatch {
    let columns = fields
        .iter()
        .map(|&field| {
            let size = events.iter().map(|e| e.get(field).len()).sum();
            let mut data = Vec::with_capacity(size);
            let mut ends = Vec::with_capacity(events.len());
            for event in events {
                data.extend_from_slice(event.get(field).as_bytes());
                ends.push(u32::try_from(data.len()).expect("a column of one batch is under 4 GiB"));
            }
            wit::Column { field: field.into(), data, ends }
        })
        .collect();
    wit::EventBatch { count: events.len() as u32, columns }
}
