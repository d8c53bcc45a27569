//! Windows events in JSON: evtx_dump's rendering, Winlogbeat, flat HELK/NXLog rows and
//! Microsoft Sentinel's `WindowsEvent` / `SecurityEvent` exports.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{WinEvent, normalize, xml};
use crate::events::json_value::scalar_text;
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
    let event = &get(root, "Event");
    let system = &event["System"];
    let attribute = |element: &str, name: &str| {
        text(&system[element]["#attributes"][name])
            .or_else(|| text(&system[format!("{element}_attributes").as_str()][name]))
    };
    let mut win = WinEvent {
        provider: attribute("Provider", "Name").unwrap_or_default(),
        channel: text(&system["Channel"]).unwrap_or_default(),
        event_id: number(&system["EventID"]).map(|n| n as u32),
        version: number(&system["Version"]).map(|n| n as u32),
        computer: text(&system["Computer"]).unwrap_or_default(),
        record_id: number(&system["EventRecordID"]),
        system_time: attribute("TimeCreated", "SystemTime"),
        data: HashMap::new(),
    };
    if let Some(data) = event.get("EventData").and_then(Value::as_object) {
        for (name, value) in data {
            if name == "#attributes"
                || name.ends_with("_attributes") && data.contains_key(&name[..name.len() - 11])
            {
                continue;
            }
            if let Some(value) = text(value) {
                win.data.insert(name.clone(), value);
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
        data: HashMap::new(),
    };
    if let Some(data) = winlog["event_data"].as_object() {
        for (name, value) in data {
            if let Some(value) = text(value) {
                win.data.insert(name.clone(), value);
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
        if !win.data.contains_key(*raw)
            && let Some(value) = text(value).filter(|v| !v.is_empty())
        {
            win.data.insert((*raw).to_owned(), value);
        }
    }
    if !win.data.contains_key("User")
        && let Some(name) = text(&get(root, "user")["name"])
    {
        let user = match text(&get(root, "user")["domain"]) {
            Some(domain) if !domain.is_empty() => format!("{domain}\\{name}"),
            _ => name,
        };
        win.data.insert("User".into(), user);
    }
    if !win.data.contains_key("Hashes") {
        let hashes: Vec<String> = ["sha1", "md5", "sha256"]
            .iter()
            .filter_map(|a| text(&process["hash"][*a]).map(|h| format!("{}={h}", a.to_uppercase())))
            .collect();
        if !hashes.is_empty() {
            win.data.insert("Hashes".into(), hashes.join(","));
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
        data: root.iter().filter_map(|(name, value)| Some((name.clone(), text(value)?))).collect(),
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
        (format, Ok(HashMap::new()))
    } else if event_data.starts_with('<') {
        (SourceFormat::SentinelSecurityEvent, xml::parse_event_data(event_data))
    } else {
        let parsed = serde_json::from_str::<Map<String, Value>>(event_data)
            .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), text(v)?))).collect())
            .map_err(|e| e.to_string());
        (SourceFormat::SentinelWindowsEvent, parsed)
    };
    let mut data: HashMap<String, String> = match parsed {
        Ok(data) => data,
        Err(message) => {
            return Record::Rejected(RecordError {
                origin,
                reason: RejectReason::MalformedEventData(message),
            });
        }
    };
    for (name, value) in root {
        if !data.contains_key(name)
            && name != "EventData"
            && let Some(value) = text(value)
        {
            data.insert(name.clone(), value);
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
    match value {
        Value::Object(map) => map.get("#text").and_then(scalar_text),
        other => scalar_text(other).filter(|_| !other.is_null()),
    }
}

/// A whole number given as a number, a decimal string, or `{"#text": ..}`.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(map) => map.get("#text").and_then(number),
        _ => None,
    }
}
