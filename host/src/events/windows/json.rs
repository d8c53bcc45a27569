//! Windows events in JSON: evtx_dump's rendering, Winlogbeat, flat HELK/NXLog rows and
//! Microsoft Sentinel's `WindowsEvent` / `SecurityEvent` exports.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{EventData, WinEvent, normalize, xml};
use crate::events::json_tree::{JsonTree, read_evtx_dump_event};
use crate::events::{Origin, Record, RecordError, RejectReason, SourceFormat};

/// evtx_dump's (and the evtx crate's) rendering: `{"Event": {"System": {..}, "EventData":
/// {..}}}`, XML attributes under `#attributes`, element text under `#text`; or, as
/// `evtx_dump --separate-json-attributes` (and tools built on the crate's
/// `separate_json_attributes`) write it, attributes beside their element, under
/// `<element>_attributes` (`"Provider_attributes": {"Name": ..}`, `"Provider": null`).
pub(in crate::events) fn evtx_dump(
    root: &Map<String, Value>,
    origin: Origin,
    format: SourceFormat,
) -> Record {
    let event = get(root, "Event");
    evtx_dump_event(event.get("System"), event.get("EventData"), origin, format)
}

/// evtx_dump's rendering read straight from its text (a line, or a record the evtx crate
/// rendered), without a `Value`: the same reader over a [`BorrowedJson`] of `System` and
/// `EventData`. Gives `origin` back when the text is not one evtx_dump record, or not JSON:
/// the general reader then takes it, with its own messages. The text is `str`: members
/// passed over are not checked for UTF-8 again, which the general reader would reject.
pub(in crate::events) fn read_evtx_dump(
    text: &str,
    origin: Origin,
    format: SourceFormat,
) -> Result<Record, Origin> {
    match read_evtx_dump_event(text) {
        Ok(Some(event)) if event.system.is_some() => {
            Ok(evtx_dump_event(event.system.as_ref(), event.event_data.as_ref(), origin, format))
        }
        _ => Err(origin),
    }
}

/// The reader of evtx_dump's `System` and `EventData`, over any JSON tree.
fn evtx_dump_event<J: JsonTree>(
    system: Option<&J>,
    event_data: Option<&J>,
    origin: Origin,
    format: SourceFormat,
) -> Record {
    let member = |element: &str| system.and_then(|s| s.member(element));
    // `beside` is where `--separate-json-attributes` puts the element's attributes.
    let attribute = |element: &str, beside: &str, name: &str| {
        text_of(member(element).and_then(|e| e.member("#attributes")).and_then(|a| a.member(name)))
            .or_else(|| text_of(member(beside).and_then(|a| a.member(name))))
            .map(Cow::into_owned)
    };
    let mut win = WinEvent {
        provider: attribute("Provider", "Provider_attributes", "Name").unwrap_or_default(),
        channel: text_of(member("Channel")).map(Cow::into_owned).unwrap_or_default(),
        event_id: number_of(member("EventID")).map(|n| n as u32),
        version: number_of(member("Version")).map(|n| n as u32),
        computer: text_of(member("Computer")).map(Cow::into_owned).unwrap_or_default(),
        record_id: number_of(member("EventRecordID")),
        system_time: attribute("TimeCreated", "TimeCreated_attributes", "SystemTime"),
        data: EventData::default(),
    };
    if let Some(data) = event_data
        && let Some(members) = data.members()
    {
        for (name, value) in members {
            if name == "#attributes"
                || name.ends_with("_attributes") && data.member(&name[..name.len() - 11]).is_some()
            {
                continue;
            }
            if let Some(value) = text_of(Some(value)) {
                win.data.insert(name, value);
            }
        }
    }
    normalize(win, origin, format)
}

/// Winlogbeat / Elastic: `winlog.*` holds the raw event; the Sysmon and Security modules
/// move some EventData fields to ECS names, which fill the raw names they replace.
pub(in crate::events) fn winlogbeat(root: &Map<String, Value>, origin: Origin) -> Record {
    let winlog = &get(root, "winlog");
    let mut win = WinEvent {
        provider: text(&winlog["provider_name"]).unwrap_or_default(),
        channel: text(&winlog["channel"]).unwrap_or_default(),
        event_id: number(&winlog["event_id"]).map(|n| n as u32),
        version: number(&winlog["version"]).map(|n| n as u32),
        computer: text(&winlog["computer_name"])
            .or_else(|| text(&get(root, "host")["name"]))
            .unwrap_or_default(),
        record_id: number(&winlog["record_id"]),
        system_time: text(get(root, "@timestamp")),
        data: EventData::default(),
    };
    if let Some(data) = winlog["event_data"].as_object() {
        for (name, value) in data {
            if let Some(value) = text(value) {
                win.data.insert(name, value);
            }
        }
    }
    let process = &get(root, "process");
    let parent = &process["parent"];
    let ecs: &[(&str, &Value)] = if win.event_id == Some(4688) {
        &[
            ("NewProcessName", &process["executable"]),
            ("NewProcessId", &process["pid"]),
            ("CommandLine", &process["command_line"]),
            ("ParentProcessName", &parent["executable"]),
            ("ProcessId", &parent["pid"]),
        ]
    } else {
        &[
            ("Image", &process["executable"]),
            ("ProcessId", &process["pid"]),
            ("ProcessGuid", &process["entity_id"]),
            ("CommandLine", &process["command_line"]),
            ("ParentImage", &parent["executable"]),
            ("ParentProcessId", &parent["pid"]),
            ("ParentProcessGuid", &parent["entity_id"]),
            ("ParentCommandLine", &parent["command_line"]),
        ]
    };
    for (raw, value) in ecs {
        if !win.data.contains_key(raw)
            && let Some(value) = text(value).filter(|v| !v.is_empty())
        {
            win.data.insert(raw, value);
        }
    }
    if !win.data.contains_key("User")
        && let Some(name) = text(&get(root, "user")["name"])
    {
        let user = match text(&get(root, "user")["domain"]) {
            Some(domain) if !domain.is_empty() => format!("{domain}\\{name}"),
            _ => name,
        };
        win.data.insert("User", user);
    }
    if !win.data.contains_key("Hashes") {
        let hashes: Vec<String> = ["sha1", "md5", "sha256"]
            .iter()
            .filter_map(|a| text(&process["hash"][*a]).map(|h| format!("{}={h}", a.to_uppercase())))
            .collect();
        if !hashes.is_empty() {
            win.data.insert("Hashes", hashes.join(","));
        }
    }
    normalize(win, origin, SourceFormat::Winlogbeat)
}

/// Flat rows (HELK, NXLog): every EventData field at the top level beside `EventID`,
/// `Channel` (possibly in lower case) and `Hostname`.
pub(in crate::events) fn flat(root: &Map<String, Value>, origin: Origin) -> Record {
    let first =
        |names: &[&str]| names.iter().find_map(|n| root.get(*n).and_then(text)).filter(|v| !v.is_empty());
    let win = WinEvent {
        provider: first(&["SourceName", "ProviderName", "Provider"]).unwrap_or_default(),
        channel: first(&["Channel"]).unwrap_or_default(),
        event_id: root.get("EventID").and_then(number).map(|n| n as u32),
        version: root.get("Version").and_then(number).map(|n| n as u32),
        computer: first(&["Hostname", "Computer", "ComputerName"]).unwrap_or_default(),
        record_id: ["RecordNumber", "EventRecordID"].iter().find_map(|n| root.get(*n).and_then(number)),
        // `EventTime` is the collector's local time without a zone: the last resort.
        system_time: first(&["TimeCreated", "TimeGenerated", "@timestamp", "EventTime"]),
        data: root.iter().filter_map(|(name, value)| Some((name, text_of(Some(value))?))).collect(),
    };
    normalize(win, origin, SourceFormat::FlatWindowsJson)
}

/// Microsoft Sentinel exports: `WindowsEvent` carries EventData as a JSON string,
/// `SecurityEvent` as an XML string for some events and as columns of its own for others
/// (4688 among them); both are read, the EventData string first.
pub(in crate::events) fn sentinel(root: &Map<String, Value>, origin: Origin) -> Record {
    let event_data = root.get("EventData").and_then(Value::as_str).unwrap_or_default().trim();
    let security_event =
        root.get("Type").is_some_and(|t| t == "SecurityEvent") || event_data.starts_with('<');
    let (format, parsed) = if event_data.is_empty() {
        let format = if security_event {
            SourceFormat::SentinelSecurityEvent
        } else {
            SourceFormat::SentinelWindowsEvent
        };
        (format, Ok(EventData::default()))
    } else if event_data.starts_with('<') {
        (SourceFormat::SentinelSecurityEvent, xml::parse_event_data(event_data))
    } else {
        let parsed = serde_json::from_str::<Map<String, Value>>(event_data)
            .map(|map| map.iter().filter_map(|(k, v)| Some((k, text(v)?))).collect())
            .map_err(|e| e.to_string());
        (SourceFormat::SentinelWindowsEvent, parsed)
    };
    let mut data: EventData<'_> = match parsed {
        Ok(data) => data,
        Err(message) => {
            return Record::Rejected(RecordError {
                origin,
                reason: RejectReason::MalformedEventData(message),
            });
        }
    };
    for (name, value) in root {
        if !data.contains_key(name.as_str())
            && name != "EventData"
            && let Some(value) = text_of(Some(value))
        {
            data.insert(name, value);
        }
    }
    let first =
        |names: &[&str]| names.iter().find_map(|n| root.get(*n).and_then(text)).filter(|v| !v.is_empty());
    let win = WinEvent {
        provider: first(&["Provider", "EventSourceName"]).unwrap_or_default(),
        channel: first(&["Channel"]).unwrap_or_default(),
        event_id: root.get("EventID").and_then(number).map(|n| n as u32),
        version: root.get("Version").and_then(number).map(|n| n as u32),
        computer: first(&["Computer"]).unwrap_or_default(),
        record_id: ["EventRecordId", "EventRecordID"].iter().find_map(|n| root.get(*n).and_then(number)),
        system_time: first(&["TimeCreated", "TimeGenerated"]),
        data,
    };
    normalize(win, origin, format)
}

/// The value at `key`, null when absent (indexing a `Map` directly panics).
fn get<'a>(object: &'a Map<String, Value>, key: &str) -> &'a Value {
    object.get(key).unwrap_or(&Value::Null)
}

/// A scalar, or an element rendered as `{"#text": ..}`.
fn text(value: &Value) -> Option<String> {
    text_of(Some(value)).map(Cow::into_owned)
}

/// [`text`] of any JSON tree, borrowed where the tree has the text.
fn text_of<J: JsonTree>(value: Option<&J>) -> Option<Cow<'_, str>> {
    let value = value?;
    if value.is_object() {
        value.member("#text").and_then(J::scalar_text)
    } else {
        value.scalar_text().filter(|_| !value.is_null())
    }
}

/// A whole number given as a number, a decimal string, or `{"#text": ..}`.
fn number(value: &Value) -> Option<u64> {
    number_of(Some(value))
}

/// [`number`] of any JSON tree.
fn number_of<J: JsonTree>(value: Option<&J>) -> Option<u64> {
    let value = value?;
    if let Some(s) = value.as_str() {
        s.trim().parse().ok()
    } else if value.is_object() {
        number_of(value.member("#text"))
    } else {
        value.as_u64()
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use evtx::{EvtxParser, ParserSettings};
    use serde_json::{Map, Value, json};

    use crate::events::input::typed_and_general_read;

    /// Every record of the shared EVTX files as evtx_dump renders it, both ways, and the
    /// evtx_dump lines of the tests' own data.
    fn real_records() -> Vec<String> {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/evtx");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&shared).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut records = Vec::new();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "evtx")) {
            for separate in [false, true] {
                let settings = ParserSettings::new().separate_json_attributes(separate);
                let mut parser = EvtxParser::from_path(file).unwrap().with_configuration(settings);
                for record in parser.records_json() {
                    let text = record.unwrap().data;
                    records
                        .push(serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap()).unwrap());
                }
            }
        }
        let ours =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/windows/scenario.evtx-dump.jsonl");
        records.extend(std::fs::read_to_string(ours).unwrap().lines().map(str::to_owned));
        records
    }

    /// What the general reader makes of `line`, and what the typed read makes of it (`None`
    /// when it leaves the line to the general reader), each as its debug text.
    fn both(line: &str) -> (Vec<String>, Option<String>) {
        let (typed, general) = typed_and_general_read(line.as_bytes());
        (general.iter().map(|r| format!("{r:?}")).collect(), typed.map(|r| format!("{r:?}")))
    }

    /// Values of every JSON kind, and the shapes an element takes.
    fn replacements(value: &Value) -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(4688),
            json!(1),
            json!(-7),
            json!(1.5),
            json!(18446744073709551615u64),
            json!(" 4688 "),
            json!("0x1a2c"),
            json!(""),
            json!([value.clone()]),
            json!({ "#text": value.clone() }),
            json!({ "#text": null }),
            json!({ "#attributes": { "Qualifiers": 0 }, "#text": value.clone() }),
            json!({ "other": value.clone() }),
        ]
    }

    /// Mutations of one record: every member of `System` and `EventData` replaced by values
    /// of every kind or removed, and the shapes around them changed.
    fn mutations(record: &str) -> Vec<String> {
        let root: Map<String, Value> = serde_json::from_str(record).unwrap();
        let mut out = Vec::new();
        for part in ["System", "EventData"] {
            let Some(Value::Object(members)) = root["Event"].get(part) else { continue };
            for (key, value) in members {
                for replacement in replacements(value) {
                    let mut mutated = root.clone();
                    mutated["Event"][part][key] = replacement;
                    out.push(serde_json::to_string(&mutated).unwrap());
                }
                let mut removed = root.clone();
                removed["Event"][part].as_object_mut().unwrap().remove(key);
                out.push(serde_json::to_string(&removed).unwrap());
                // The key given twice (the later value counts) and written with an escape.
                let line = serde_json::to_string(&root).unwrap();
                let member = format!("{}:", serde_json::to_string(key).unwrap());
                out.push(line.replacen(&member, &format!("{member}\"first\",{member}"), 1));
                out.push(line.replacen(&member, &format!("{member}[],{member}"), 1));
                out.push(
                    line.replacen(
                        &member,
                        &format!("{member}{},{member}", serde_json::to_string(value).unwrap()),
                        1,
                    )
                    .replacen(&member, &format!("{member}{{}},"), 1),
                );
                if let Some(first) = key.chars().next() {
                    let escaped = format!("\"\\u{:04x}{}\":", first as u32, &key[first.len_utf8()..]);
                    out.push(line.replacen(&member, &escaped, 1));
                }
                let mut beside = root.clone();
                beside["Event"][part][format!("{key}_attributes")] = json!({ "Name": "x" });
                out.push(serde_json::to_string(&beside).unwrap());
            }
            for replacement in [Value::Null, json!("text"), json!([]), json!({})] {
                let mut mutated = root.clone();
                mutated["Event"][part] = replacement;
                out.push(serde_json::to_string(&mutated).unwrap());
            }
        }
        let line = serde_json::to_string(&root).unwrap();
        let event = serde_json::to_string(&root["Event"]).unwrap();
        out.extend([
            line.replacen("{\"Event\":", "{\"records\":[],\"Event\":", 1),
            line.replacen("{\"Event\":", "{\"records\":5,\"Event\":", 1),
            line.replacen("{\"Event\":", "{\"Event\":\"none\",\"Event\":", 1),
            line.replacen("{\"Event\":", "{\"other\":{\"Event\":1},\"Event\":", 1),
            format!("{{\"Event\":{event},\"Event\":7}}"),
            format!("{{\"Event\":{event},\"winlog\":{{}}}}"),
            format!("[{line},{line}]"),
            format!("{{\"Event\":{event}"),
            line.replacen("\"System\":", "\"System\":null,\"System\":", 1),
            line.replacen("\"System\":", "\"Sys\":", 1),
        ]);
        out
    }

    #[test]
    fn the_typed_read_gives_what_the_general_reader_gives_on_every_real_record_and_its_mutations() {
        let records = real_records();
        assert!(records.len() > 400, "{} records", records.len());
        let (mut compared, mut left) = (0, 0);
        for record in &records {
            let (general, typed) = both(record);
            assert_eq!(typed.as_ref(), general.first(), "a real record read another way:\n{record}");
            assert_eq!(general.len(), 1);
            for line in mutations(record) {
                let (general, typed) = both(&line);
                match typed {
                    Some(typed) => {
                        assert_eq!(general, [typed], "the typed read differs on\n{line}");
                        compared += 1;
                    }
                    None => left += 1,
                }
            }
        }
        // Most mutations stay evtx_dump records, which the typed read must take.
        assert!(compared > 10 * left, "{compared} compared, {left} left to the general reader");
    }

    #[test]
    fn invalid_utf8_in_a_member_passed_over_leaves_the_line_to_the_general_reader() {
        // Found by the `dismissal` fuzz target: members the typed read passes over are not
        // checked for UTF-8, so it reads only text already known to be UTF-8.
        let line = b"{\"Event\":{\"#attributes\":{\"xmlns\":\"\xcf\"},\"System\":{\"EventID\":1}}}";
        let (typed, general) = typed_and_general_read(line);
        assert!(typed.is_none(), "{typed:?}");
        assert!(matches!(general[..], [crate::events::Record::Rejected(_)]), "{general:?}");
    }

    #[test]
    fn an_object_of_many_members_is_left_to_the_general_reader() {
        // The typed read finds a key among those before it: thousands of keys would cost
        // their square, where the general reader hashes them.
        let data: Vec<String> = (0..2000).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let line = format!(
            "{{\"Event\":{{\"System\":{{\"Channel\":\"Security\",\"EventID\":4624}},\"EventData\":{{{}}}}}}}",
            data.join(",")
        );
        let (typed, general) = typed_and_general_read(line.as_bytes());
        assert!(typed.is_none(), "{typed:?}");
        assert!(
            matches!(&general[..], [crate::events::Record::Skipped(s)] if s.kind == "Security 4624"),
            "{general:?}"
        );
    }
}
