//! JSON records of every shape: each object is told apart by its keys and handed to the
//! reader of its shape, so one file may mix shapes line by line.

use serde_json::{Map, Value};

use super::json_value::kind_of;
use super::windows::json as windows_json;
use super::{Origin, Record, RecordError, RejectReason, SourceFormat, defender};

/// Reads the records in one JSON value: a record, `{"records": [..]}`, or (with
/// `allow_array`) an array of those. `defender_format` is the format Defender rows are
/// counted as (rows of an API response are `defender-api`).
pub(super) fn read_value(
    value: Value,
    origin: &dyn Fn() -> Origin,
    defender_format: SourceFormat,
    allow_array: bool,
    out: &mut Vec<Record>,
) {
    match value {
        Value::Object(mut object) => match object.remove("records") {
            Some(Value::Array(records)) => {
                for record in records {
                    read_value(record, origin, SourceFormat::DefenderStreaming, false, out);
                }
            }
            Some(other) => {
                object.insert("records".into(), other);
                out.push(read_object(object, origin(), defender_format));
            }
            None => out.push(read_object(object, origin(), defender_format)),
        },
        Value::Array(rows) if allow_array => {
            for row in rows {
                read_value(row, origin, defender_format, false, out);
            }
        }
        other => out.push(Record::Rejected(RecordError {
            origin: origin(),
            reason: RejectReason::UnknownShape(format!("expected a JSON object, found {}", kind_of(&other))),
        })),
    }
}

/// Reads one JSON object, whatever its shape.
pub(super) fn read_object(
    object: Map<String, Value>,
    origin: Origin,
    defender_format: SourceFormat,
) -> Record {
    if object.get("Event").and_then(|e| e.get("System")).is_some() {
        return windows_json::evtx_dump(&object, origin, SourceFormat::EvtxJson);
    }
    if object.get("winlog").is_some_and(Value::is_object) {
        return windows_json::winlogbeat(&object, origin);
    }
    let sentinel_table = object.get("Type").is_some_and(|t| t == "SecurityEvent" || t == "WindowsEvent");
    if sentinel_table || object.get("EventData").is_some_and(Value::is_string) {
        return windows_json::sentinel(&object, origin);
    }
    if object.contains_key("EventID") && (object.contains_key("Channel") || object.contains_key("SourceName"))
    {
        return windows_json::flat(&object, origin);
    }
    defender::read_object(object, origin, defender_format)
}

/// Reads an Advanced Hunting API response (`{"Schema": [..], "Results": [..]}`, also the
/// Graph API's lower-case keys). Returns `None` when `document` is not one.
pub(super) fn read_api_response(
    document: &mut Map<String, Value>,
    origin: impl Fn(u64) -> Origin,
    out: &mut Vec<Record>,
) -> Option<()> {
    let results = ["Results", "results"].iter().find_map(|key| document.remove(*key))?;
    let has_schema = ["Schema", "schema"].iter().any(|key| document.contains_key(*key));
    let Value::Array(rows) = results else {
        let reason = RejectReason::UnknownShape("Results is not an array".into());
        out.push(Record::Rejected(RecordError { origin: origin(1), reason }));
        return Some(());
    };
    if !has_schema {
        return None;
    }
    for (i, row) in rows.into_iter().enumerate() {
        let position = i as u64 + 1;
        read_value(row, &|| origin(position), SourceFormat::DefenderApi, false, out);
    }
    Some(())
}
