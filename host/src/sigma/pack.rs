//! Sigma packs as artifacts: the bundled evaluator's core module with the compiled rules
//! written into it as data, its matcher built ahead (see [`super::snapshot`]), wrapped into
//! a component of contract 0.3.0.
//!
//! The evaluator (`rules-wasm/sigma-pack`) is built with this binary and holds no rule. A pack
//! is a copy of it whose linear memory starts larger by the pages the rules take, with the
//! rules ([`rulehost_sigma::Pack`], encoded) placed there by one more active data segment, and
//! whose `PACK_DATA` marker is followed by the data's offset and length. That copy's
//! initialization (reading the rules, building their matcher) is then run once and its state
//! kept as the pack's initial state ([`super::snapshot`]). The code is never changed, so
//! every pack runs the same, reviewed code; the same rules give the same bytes, so the same
//! digest (and the compile cache finds them again).

use std::ops::Range;

use rulehost_sigma::ir::{FORMAT, Pack, Rule};
use wasmparser::{Parser, Payload};

/// The evaluator's core module, built with this binary.
pub const EVALUATOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sigma-pack.core.wasm"));

/// The marker of the evaluator's `PACK_DATA` static, followed by eight bytes of all ones.
const MARKER: &[u8; 16] = b"\xd1rhpack\x01\xff\xff\xff\xff\xff\xff\xff\xff";
const PAGE: u64 = 65536;

/// A pack that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The evaluator module is not what this code expects.
    #[error("the bundled evaluator cannot take rules: {0}")]
    Evaluator(String),
    /// The rules do not fit.
    #[error("the compiled rules take {0} bytes, more than a pack can hold")]
    TooLarge(usize),
    /// The pack's matcher could not be built ahead.
    #[error(transparent)]
    Snapshot(#[from] super::snapshot::SnapshotError),
}

/// The artifact of a pack holding `rules`.
pub fn build(rules: &[Rule]) -> Result<Vec<u8>, PackError> {
    let pack = Pack { format: FORMAT, rules: rules.to_vec() };
    let data = pack.encode();
    let module = with_data(EVALUATOR, &data)?;
    let module = super::snapshot::preinitialize(&module)?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| PackError::Evaluator(format!("{e:#}")))
}

/// `module` with `data` placed in new pages of its memory, and its marker pointing at them.
fn with_data(module: &[u8], data: &[u8]) -> Result<Vec<u8>, PackError> {
    let evaluator = |reason: &str| PackError::Evaluator(reason.to_owned());
    // The marker must be the evaluator's one static: it is patched where it is found.
    match memchr::memmem::find_iter(module, MARKER).count() {
        1 => {}
        0 => return Err(evaluator("no PACK_DATA marker")),
        _ => return Err(evaluator("the PACK_DATA marker appears twice")),
    }
    let length = u32::try_from(data.len()).map_err(|_| PackError::TooLarge(data.len()))?;
    let mut sections: Vec<(u8, Range<usize>)> = Vec::new();
    let mut memory = None;
    let mut data_section = None;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| PackError::Evaluator(e.to_string()))?;
        match &payload {
            Payload::MemorySection(reader) => {
                let memories: Vec<_> = reader
                    .clone()
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(|e| PackError::Evaluator(e.to_string()))?;
                let [only] = memories.as_slice() else { return Err(evaluator("not one memory")) };
                memory = Some(*only);
            }
            Payload::DataSection(reader) => data_section = Some((reader.count(), reader.range())),
            _ => {}
        }
        let section = match &payload {
            Payload::CustomSection(reader) => Some((0, reader.range())),
            other => other.as_section(),
        };
        if let Some(section) = section {
            sections.push(section);
        }
    }
    let memory = memory.ok_or_else(|| evaluator("no memory"))?;
    if memory.memory64 || memory.shared || memory.page_size_log2.is_some() {
        return Err(evaluator("an unusual memory"));
    }
    let (segments, data_range) = data_section.ok_or_else(|| evaluator("no data section"))?;
    let offset = memory.initial * PAGE;
    let pages = u64::from(length).div_ceil(PAGE);
    let minimum = memory.initial + pages;
    if memory.maximum.is_some_and(|max| max < minimum) || offset + u64::from(length) > u64::from(u32::MAX) {
        return Err(PackError::TooLarge(data.len()));
    }
    let mut out = wasm_encoder::Module::new();
    for (id, range) in sections {
        match id {
            5 => {
                let mut memories = wasm_encoder::MemorySection::new();
                memories.memory(wasm_encoder::MemoryType {
                    minimum,
                    maximum: memory.maximum,
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                });
                out.section(&memories);
            }
            11 => {
                // The segments as they were, the rules' segment after them.
                let mut content = Vec::new();
                leb128(&mut content, u64::from(segments) + 1);
                let original = &module[data_range.clone()];
                content.extend_from_slice(&original[leb128_len(original)..]);
                content.push(0x00); // active, memory 0
                content.push(0x41); // i32.const offset
                sleb128(&mut content, offset as i64 as i32 as i64);
                content.push(0x0b); // end
                leb128(&mut content, u64::from(length));
                content.extend_from_slice(data);
                out.section(&wasm_encoder::RawSection { id, data: &content });
            }
            12 => {
                let mut content = Vec::new();
                leb128(&mut content, u64::from(segments) + 1);
                out.section(&wasm_encoder::RawSection { id, data: &content });
            }
            _ => {
                out.section(&wasm_encoder::RawSection { id, data: &module[range] });
            }
        }
    }
    let mut bytes = out.finish();
    // The rules' data is JSON, which holds no 0xff byte: the first marker is the static's.
    let at = memchr::memmem::find(&bytes, MARKER).ok_or_else(|| evaluator("the marker was lost"))?;
    bytes[at + 8..at + 12].copy_from_slice(&(offset as u32).to_le_bytes());
    bytes[at + 12..at + 16].copy_from_slice(&length.to_le_bytes());
    Ok(bytes)
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn leb128_len(bytes: &[u8]) -> usize {
    bytes.iter().position(|b| b & 0x80 == 0).map_or(bytes.len(), |i| i + 1)
}

fn sleb128(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips() {
        for value in [0u64, 1, 127, 128, 300, 1 << 20, u64::from(u32::MAX)] {
            let mut out = Vec::new();
            leb128(&mut out, value);
            assert_eq!(leb128_len(&out), out.len());
        }
        let mut out = Vec::new();
        sleb128(&mut out, 1_114_112);
        assert_eq!(out, [0x80, 0x80, 0xc4, 0x00]);
    }

    #[test]
    fn the_same_rules_give_the_same_bytes_and_the_data_sits_past_the_original_memory() {
        let a = build(&[]).unwrap();
        let b = build(&[]).unwrap();
        assert_eq!(a, b);
        let module = with_data(EVALUATOR, b"hello").unwrap();
        let at = memchr::memmem::find(&module, &MARKER[..8]).unwrap();
        let offset = u32::from_le_bytes(module[at + 8..at + 12].try_into().unwrap());
        let length = u32::from_le_bytes(module[at + 12..at + 16].try_into().unwrap());
        assert_eq!(length, 5);
        assert_eq!(u64::from(offset) % PAGE, 0);
        wasmparser::Validator::new().validate_all(&module).unwrap();
    }
}
