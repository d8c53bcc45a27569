//! JSON records of every shape: each object is told apart by its keys and handed to the
//! reader of its shape, so one file may mix shapes line by line.

use serde_json::{Map, Value};

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

/// The text of a JSON scalar: strings as they are, numbers and booleans written out, null
/// empty; `None` for arrays and objects.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// "a number", "an object", ... for messages.
pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
