//! Microsoft Defender `DeviceProcessEvents` in its export shapes: flat JSON rows, streaming
//! API records, Advanced Hunting API responses and the portal's CSV.

use serde_json::{Map, Value};

use super::json::{self, kind_of};
use super::{Field, Origin, ProcessEvent, Record, RecordError, RejectReason, Skipped, SourceFormat, time};

/// The table this reader takes; records of any other table are skipped.
const TABLE: &str = "DeviceProcessEvents";
/// The streaming API's `category` for [`TABLE`].
const STREAMING_CATEGORY: &str = "AdvancedHunting-DeviceProcessEvents";
/// Keys under which exports name a row's table.
const TABLE_KEYS: &[&str] = &["Type", "$table", "TableName"];
/// Columns that hold whole numbers.
const INTEGER_COLUMNS: &[Field] =
    &[Field::ProcessId, Field::InitiatingProcessId, Field::InitiatingProcessParentId, Field::ReportId];
/// Columns that hold times, normalized like `Timestamp`.
const TIME_COLUMNS: &[Field] = &[Field::ProcessCreationTime, Field::InitiatingProcessCreationTime];

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
        out.push(reject(origin(1), RejectReason::UnknownShape("Results is not an array".into())));
        return Some(());
    };
    if !has_schema {
        return None;
    }
    for (i, row) in rows.into_iter().enumerate() {
        let position = i as u64 + 1;
        json::read_value(row, &|| origin(position), SourceFormat::DefenderApi, false, out);
    }
    Some(())
}

/// Reads one Defender JSON object: a streaming record or a flat row.
pub(super) fn read_object(mut object: Map<String, Value>, origin: Origin, format: SourceFormat) -> Record {
    if let (Some(Value::String(category)), Some(Value::Object(_))) =
        (object.get("category"), object.get("properties"))
    {
        if !category.eq_ignore_ascii_case(STREAMING_CATEGORY) {
            let kind = category.strip_prefix("AdvancedHunting-").unwrap_or(category);
            return Record::Skipped(Skipped { origin, kind: kind.to_owned() });
        }
        let Some(Value::Object(mut properties)) = object.remove("properties") else {
            unreachable!("checked above")
        };
        if !properties.contains_key("Timestamp")
            && let Some(time) = object.remove("time")
        {
            properties.insert("Timestamp".into(), time);
        }
        return read_row(properties, origin, SourceFormat::DefenderStreaming);
    }
    for key in TABLE_KEYS {
        if let Some(Value::String(table)) = object.get(*key)
            && table != TABLE
        {
            return Record::Skipped(Skipped { origin, kind: table.clone() });
        }
    }
    read_row(object, origin, format)
}

/// Reads a flat row of `DeviceProcessEvents` columns.
fn read_row(mut row: Map<String, Value>, origin: Origin, format: SourceFormat) -> Record {
    if !row.contains_key("Timestamp")
        && let Some(time) = row.remove("TimeGenerated")
    {
        row.insert("Timestamp".into(), time);
    }
    let mut columns = Vec::with_capacity(row.len());
    for (name, value) in row {
        let Some(field) = Field::from_name(&name) else {
            continue;
        };
        let text = match value {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                let problem = format!("expected a string or a number, found {}", kind_of(&other));
                return reject(origin, RejectReason::WrongType { column: field.name(), problem });
            }
        };
        columns.push((field, text));
    }
    if columns.is_empty() {
        let reason = RejectReason::UnknownShape(format!("no {TABLE} column in the object"));
        return reject(origin, reason);
    }
    build_event(columns, origin, format)
}

/// Maps a CSV header to the column it holds: the column name, optionally followed by a
/// unit such as ` [UTC]`; `TimeGenerated` stands for `Timestamp` when there is no
/// `Timestamp` column.
pub(super) fn csv_columns(headers: &csv::StringRecord) -> Vec<Option<Field>> {
    let name = |h: &str| h.split(" [").next().unwrap_or(h).trim().to_owned();
    let has_timestamp = headers.iter().any(|h| name(h) == "Timestamp");
    headers
        .iter()
        .map(|h| match name(h).as_str() {
            "TimeGenerated" if !has_timestamp => Some(Field::Timestamp),
            other => Field::from_name(other),
        })
        .collect()
}

/// Reads one CSV row whose columns are `columns`.
pub(super) fn read_csv_row(columns: &[Option<Field>], row: &csv::StringRecord, origin: Origin) -> Record {
    let values = columns
        .iter()
        .zip(row.iter())
        .filter_map(|(field, value)| field.map(|f| (f, value.to_owned())))
        .collect();
    build_event(values, origin, SourceFormat::DefenderCsv)
}

/// Checks and normalizes a row's columns into an event.
fn build_event(columns: Vec<(Field, String)>, origin: Origin, format: SourceFormat) -> Record {
    let Some(timestamp) = columns.iter().find(|(f, _)| *f == Field::Timestamp).map(|(_, v)| v.as_str())
    else {
        return reject(origin, RejectReason::MissingTimestamp);
    };
    if timestamp.is_empty() {
        return reject(origin, RejectReason::MissingTimestamp);
    }
    let Some(time) = time::parse(timestamp) else {
        return reject(origin, RejectReason::BadTimestamp(timestamp.to_owned()));
    };
    let mut event = ProcessEvent::new(time, origin, format);
    for (field, value) in columns {
        if field == Field::Timestamp || field.is_source() || value.is_empty() {
            continue;
        }
        if INTEGER_COLUMNS.contains(&field) && value.trim().parse::<i64>().is_err() {
            let problem = format!("expected a whole number, found {value:?}");
            return reject(event.origin().clone(), RejectReason::WrongType { column: field.name(), problem });
        }
        if TIME_COLUMNS.contains(&field) {
            let Some(t) = time::parse(&value) else {
                let problem = format!("expected a time, found {value:?}");
                return reject(
                    event.origin().clone(),
                    RejectReason::WrongType { column: field.name(), problem },
                );
            };
            event.set(field, time::format(t));
            continue;
        }
        event.set(field, value);
    }
    Record::Event(Box::new(event))
}

fn reject(origin: Origin, reason: RejectReason) -> Record {
    Record::Rejected(RecordError { origin, reason })
}
