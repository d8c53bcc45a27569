//! Microsoft Defender `DeviceProcessEvents` in its export shapes: flat JSON rows, streaming
//! API records, Advanced Hunting API responses and the portal's CSV.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json_value::kind_of;
use super::{
    FIELD_COUNT, Field, Origin, ProcessEvent, Record, RecordError, RejectReason, Skipped, SourceFormat, time,
};

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

/// Keys that tell a JSON object is not a flat row of [`TABLE`]: another shape's
/// (Windows events, streaming records, `{"records": [..]}`) or a table's name.
const NOT_FLAT_ROW_KEYS: &[&str] = &[
    "records",
    "Event",
    "winlog",
    "EventData",
    "EventID",
    "Channel",
    "SourceName",
    "category",
    "properties",
];

/// Reads `line` as a flat row of [`TABLE`] straight from its text, as [`super::json::read_value`]
/// would read it, without building a `Value`: the columns the event holds are borrowed
/// from the line where they have no escapes, every other key is checked and skipped.
///
/// Gives `origin` back when the line may be anything else (another shape, a table name other than
/// [`TABLE`], a column twice, a column that is no scalar, a syntax error): the general
/// reader then takes it, with its own messages. Most Defender exports are such rows, and
/// this is what a full read of one costs most: a map of every key, a string of every value.
pub(super) fn read_flat_row(line: &str, origin: Origin) -> Result<Record, Origin> {
    match serde_json::from_str::<FlatRow<'_>>(line) {
        Ok(FlatRow(columns)) if !columns.is_empty() => {
            Ok(build_event(columns, origin, SourceFormat::DefenderJson))
        }
        _ => Err(origin),
    }
}

/// The columns of a flat row, in the order of the line (`TimeGenerated` last, as
/// `Timestamp`, when there is no `Timestamp`); see [`read_flat_row`].
struct FlatRow<'a>(Vec<(Field, Cow<'a, str>)>);

/// Why a line is left to the general reader (the message is never shown).
const NOT_FLAT: &str = "not a flat DeviceProcessEvents row";

impl<'de> de::Deserialize<'de> for FlatRow<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FlatRowVisitor)
    }
}

struct FlatRowVisitor;

impl<'de> Visitor<'de> for FlatRowVisitor {
    type Value = FlatRow<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlatRow<'de>, A::Error> {
        let mut columns = Vec::with_capacity(FIELD_COUNT);
        let mut time_generated = None;
        // The columns read so far, one bit each.
        let mut seen = 0u64;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if let Some(field) = Field::from_name(&key) {
                let bit = 1u64 << field as usize;
                if seen & bit != 0 {
                    return Err(de::Error::custom(NOT_FLAT));
                }
                seen |= bit;
                columns.push((field, map.next_value::<Text<'de>>()?.0));
            } else if key == "TimeGenerated" {
                if time_generated.replace(map.next_value::<Text<'de>>()?.0).is_some() {
                    return Err(de::Error::custom(NOT_FLAT));
                }
            } else if TABLE_KEYS.contains(&&*key) {
                if map.next_value::<Text<'de>>()?.0 != TABLE {
                    return Err(de::Error::custom(NOT_FLAT));
                }
            } else if NOT_FLAT_ROW_KEYS.contains(&&*key) {
                return Err(de::Error::custom(NOT_FLAT));
            } else {
                map.next_value::<Unread>()?;
            }
        }
        if seen & (1u64 << Field::Timestamp as usize) == 0
            && let Some(time) = time_generated
        {
            columns.push((Field::Timestamp, time));
        }
        Ok(FlatRow(columns))
    }
}

/// A value of a key that no column reads, checked as a `Value` would check it but kept
/// nowhere. (serde's `IgnoredAny` would skip faster, but it lets a lone UTF-16 surrogate
/// escape through, which the general reader rejects.) It is its own visitor.
struct Unread;

impl<'de> de::Deserialize<'de> for Unread {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Unread)
    }
}

impl<'de> Visitor<'de> for Unread {
    type Value = Unread;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_str<E>(self, _: &str) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_unit<E>(self) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unread, A::Error> {
        while seq.next_element::<Unread>()?.is_some() {}
        Ok(Unread)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unread, A::Error> {
        while map.next_entry::<Unread, Unread>()?.is_some() {}
        Ok(Unread)
    }
}

/// A JSON scalar's text as the general reader writes it (see the `Value` arms of
/// `read_row`), borrowed from the line when it is a string without escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number, a boolean or null")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text<'de>, E> {
        // Written as a `Value` writes it.
        let number = serde_json::Number::from_f64(v).ok_or_else(|| E::custom(NOT_FLAT))?;
        Ok(Text(Cow::Owned(number.to_string())))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
    }

    fn visit_unit<E>(self) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed("")))
    }
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
fn build_event<S: AsRef<str>>(columns: Vec<(Field, S)>, origin: Origin, format: SourceFormat) -> Record {
    let Some(timestamp) = columns.iter().find(|(f, _)| *f == Field::Timestamp).map(|(_, v)| v.as_ref())
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
        let value = value.as_ref();
        if field == Field::Timestamp || field.is_source() || value.is_empty() {
            continue;
        }
        if INTEGER_COLUMNS.contains(&field) && value.trim().parse::<i64>().is_err() {
            let problem = format!("expected a whole number, found {value:?}");
            return reject(event.origin().clone(), RejectReason::WrongType { column: field.name(), problem });
        }
        if TIME_COLUMNS.contains(&field) {
            let Some(t) = time::parse(value) else {
                let problem = format!("expected a time, found {value:?}");
                return reject(
                    event.origin().clone(),
                    RejectReason::WrongType { column: field.name(), problem },
                );
            };
            event.set_time(field, t);
            continue;
        }
        event.set(field, value);
    }
    Record::Event(Box::new(event))
}

fn reject(origin: Origin, reason: RejectReason) -> Record {
    Record::Rejected(RecordError { origin, reason })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::Position;

    fn origin() -> Origin {
        Origin { file: Arc::from("rows.jsonl"), position: Position::Line(7) }
    }

    /// What the general reader makes of `line`: a `Value`, then its shape's reader.
    fn general(line: &str) -> Vec<Record> {
        let mut records = Vec::new();
        match serde_json::from_str::<Value>(line) {
            Ok(value) => crate::events::json::read_value(
                value,
                &origin,
                SourceFormat::DefenderJson,
                true,
                &mut records,
            ),
            Err(e) => records.push(reject(origin(), RejectReason::MalformedJson(e.to_string()))),
        }
        records
    }

    fn same(a: &Record, b: &Record) -> bool {
        match (a, b) {
            (Record::Event(a), Record::Event(b)) => a == b,
            _ => format!("{a:?}") == format!("{b:?}"),
        }
    }

    /// Whether `line` is read by the flat-row reader, which must then give what the
    /// general reader gives.
    fn read_flat(line: &str) -> bool {
        match read_flat_row(line, origin()) {
            Ok(record) => {
                let expected = general(line);
                assert!(
                    expected.len() == 1 && same(&record, &expected[0]),
                    "{line}\nflat row: {record:?}\ngeneral: {expected:?}"
                );
                true
            }
            Err(given_back) => {
                assert_eq!(given_back, origin());
                false
            }
        }
    }

    fn lines_of(file: &str) -> Vec<String> {
        let path = format!("{}/../tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn exported_rows_are_read_as_flat_rows_as_the_general_reader_reads_them() {
        let rows = lines_of("defender-rows.jsonl");
        assert!(rows.len() >= 9);
        for row in &rows {
            assert!(read_flat(row), "not read as a flat row: {row}");
        }
    }

    #[test]
    fn rows_with_any_column_changed_read_as_the_general_reader_reads_them() {
        // Every real row with each of its keys removed or given a value of every kind:
        // either the flat-row reader gives what the general reader gives, or leaves it.
        let replacements = [
            Value::Null,
            Value::from(12345),
            Value::from(-7),
            Value::from(1.5),
            Value::from(true),
            Value::from("a\"b\u{e9}\n\u{1F600}"),
            Value::from(""),
            serde_json::json!({"x": [1, {"y": null}]}),
            serde_json::json!(["a"]),
        ];
        let (mut read, mut left) = (0, 0);
        for row in lines_of("defender-rows.jsonl") {
            let Value::Object(object) = serde_json::from_str::<Value>(&row).unwrap() else { panic!("{row}") };
            for key in object.keys() {
                let mut variants = Vec::new();
                let mut removed = object.clone();
                removed.shift_remove(key);
                variants.push(removed);
                for value in &replacements {
                    let mut changed = object.clone();
                    changed.insert(key.clone(), value.clone());
                    variants.push(changed);
                }
                for variant in variants {
                    match read_flat(&serde_json::to_string(&variant).unwrap()) {
                        true => read += 1,
                        false => left += 1,
                    }
                }
            }
        }
        // Most variants are flat rows still; those with an object or array in a column are not.
        assert!(read > 1000 && left > 100, "{read} read as flat rows, {left} left");
    }

    #[test]
    fn other_shapes_are_left_to_the_general_reader() {
        for file in [
            "defender-streaming.jsonl",
            "windows/scenario.evtx-dump.jsonl",
            "windows/scenario.helk.jsonl",
            "windows/scenario.sentinel.jsonl",
            "windows/scenario.winlogbeat.jsonl",
        ] {
            for line in lines_of(file) {
                assert!(!read_flat(&line), "{file}: read as a flat row: {line}");
            }
        }
    }

    #[test]
    fn scalars_times_and_table_names_read_as_in_a_value() {
        let t = r#""Timestamp":"2024-05-01T10:00:00Z""#;
        let read = [
            // Escapes in values and keys, numbers of each kind, null, booleans.
            format!(
                r#"{{{t},"FileName":"c\u006dd.exe","File\u0050ath":1,"ProcessId":5120,"ReportId":-5,"ProcessIntegrityLevel":1.0,"AccountName":1e3,"ProcessCommandLine":null,"ProcessTokenElevation":true}}"#
            ),
            // Unknown keys of any kind are skipped.
            format!(r#"{{"AdditionalFields":{{"a":[1,{{"b":null}}]}},{t},"Other":[1,2],"FileName":"a"}}"#),
            // The table named as the reader's.
            format!(r#"{{"Type":"DeviceProcessEvents",{t},"$table":"DeviceProcessEvents"}}"#),
            // TimeGenerated stands for a missing Timestamp only.
            r#"{"TimeGenerated":"2024-05-01T10:00:00Z","FileName":"a"}"#.to_owned(),
            format!(r#"{{"TimeGenerated":"2023-01-01T00:00:00Z",{t}}}"#),
            // Rejected the same way: no Timestamp, a bad one, a number out of range.
            r#"{"FileName":"a"}"#.to_owned(),
            r#"{"Timestamp":5,"FileName":"a"}"#.to_owned(),
            format!(r#"{{{t},"ReportId":123456789012345678901234}}"#),
            format!(r#"{{{t},"ProcessId":"12x"}}"#),
            format!(r#"{{{t},"ProcessCreationTime":"yesterday"}}"#),
        ];
        for line in &read {
            assert!(read_flat(line), "not read as a flat row: {line}");
        }
        let left = [
            // Another table, another shape, a column twice, a column that is no scalar,
            // no column at all, not an object, not JSON.
            format!(r#"{{"Type":"DeviceFileEvents",{t}}}"#),
            format!(r#"{{{t},"Type":"SecurityEvent"}}"#),
            format!(r#"{{{t},"category":"AdvancedHunting-DeviceProcessEvents","properties":{{}}}}"#),
            format!(r#"{{"records":[{{{t}}}]}}"#),
            format!(r#"{{{t},"EventID":4688,"Channel":"Security"}}"#),
            format!(r#"{{{t},"FileName":"a","FileName":"b"}}"#),
            format!(r#"{{"TimeGenerated":"x","TimeGenerated":"y",{t}}}"#),
            format!(r#"{{{t},"FileName":{{"a":1}}}}"#),
            format!(r#"{{{t},"FileName":["a"]}}"#),
            r#"{"Other":1}"#.to_owned(),
            format!("[{{{t}}}]"),
            format!("{{{t}}} trailing"),
            // Bad escapes and control characters, also in a key that is skipped.
            format!(r#"{{{t},"Other":"\q"}}"#),
            format!(r#"{{{t},"Other":"\ud800"}}"#),
            format!(r#"{{{t},"Other":"\u12"}}"#),
            format!("{{{t},\"Other\":\"a\tb\"}}"),
            format!(r#"{{{t},"Other":[1,}}"#),
            format!(r#"{{{t},"Other":01}}"#),
            format!(r#"{{{t},"Other":1e400}}"#),
            format!(r#"{{{t},"Other":{{"\udc00":1}}}}"#),
            format!(r#"{{{t},"Other":["\ud800x"]}}"#),
            format!("{{{t},"),
        ];
        for line in &left {
            assert!(!read_flat(line), "read as a flat row: {line}");
        }
    }
}
