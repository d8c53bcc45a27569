//! Cutting an alert or a match to fit a Kafka message (`fit_json`), whatever the JSON (a
//! log line's texts reach it) and the bound: it ends; the members named uncut are left
//! whole; every member stays; a list cut keeps at most its values and `Cut` names its whole
//! length; and the result fits unless nothing more could be cut (no cuttable list of two
//! values, no text longer than 256 bytes left in a cuttable member).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rulehost::sinks::{SHORTEST_CUT_TEXT, fit_json};
use serde_json::Value;

fn longest_text(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(list) => list.iter().map(longest_text).max().unwrap_or(0),
        Value::Object(members) => members.values().map(longest_text).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((bound, text)) = bytes.split_first_chunk::<2>() else { return };
    let max_bytes = 64 + usize::from(u16::from_le_bytes(*bound)) * 8;
    let Ok(Value::Object(original)) = serde_json::from_slice::<Value>(text) else { return };
    if original.contains_key("Cut") {
        return;
    }
    let uncut = ["rule", "source"];
    let mut object = original.clone();
    let any = fit_json(&mut object, max_bytes, &uncut);
    let size = serde_json::to_vec(&object).expect("serializes").len();
    let cut = object.remove("Cut");
    assert_eq!(object.len(), original.len(), "every member stays");
    assert_eq!(any, object != original || cut.is_some(), "says whether it cut");
    for name in uncut {
        assert_eq!(object.get(name), original.get(name), "{name} is left whole");
    }
    if let Some(cut) = &cut {
        for (name, whole) in cut.as_object().expect("Cut is an object") {
            let before = original[name].as_array().expect("a list was cut").len();
            assert_eq!(whole.as_u64(), Some(before as u64), "Cut names {name}'s whole length");
            assert!(object[name].as_array().expect("still a list").len() < before);
        }
    }
    if size > max_bytes {
        for (name, value) in object.iter().filter(|(name, _)| !uncut.contains(&name.as_str())) {
            assert!(value.as_array().is_none_or(|list| list.len() < 2), "{name} could be cut further");
            assert!(longest_text(value) <= SHORTEST_CUT_TEXT, "{name} has a text that could be cut further");
        }
    }
});
