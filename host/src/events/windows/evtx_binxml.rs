//! Binary EVTX records read from their binary XML, before (and mostly instead of)
//! rendering them.
//!
//! A record is a template instance: a reference to a template definition held in its chunk
//! (the XML's shape, with numbered substitutions) and the substitution values. What a
//! template holds where (`Event/System/EventID`, `Channel`, `Provider/@Name`, the other
//! `System` facts, `EventData/Data[@Name]`) is read once per template and chunk; a record
//! is then read from its values:
//! - one that is not a process creation is counted as skipped, with the kind the full parse
//!   gives it;
//! - a process creation is read into the same [`WinEvent`] that rendering it as evtx_dump's
//!   JSON and reading that back gives, each value written as the renderer writes it.
//!
//! Whenever a record or its template is not plainly one `Event` that this reads (another
//! token shape, a value whose decoding the crate might place differently, an element that a
//! NULL value may leave out, a name given twice or one JSON would have to escape, a value
//! type not read here), the record is rendered and read as before. The tests hold both ways
//! to the same records on every shared EVTX file and on thousands of damaged chunks, where
//! rendering does not fail. What a record read here is not checked for is whether the rest
//! of it (what neither its kind nor its event holds) would parse and render: the crate, which
//! builds a record's whole tree, refuses a record whose template is damaged anywhere, and
//! this reads it when the damage lies outside what it reads. `--parse-all` renders every
//! record.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use evtx::EvtxRecord;
use evtx::binxml::value_variant::{BinXmlValue, FileTime};

use super::{
    DataName, EventData, SECURITY_PROCESS_CREATE, SYSMON_PROCESS_CREATE, WinEvent, decimal, push_decimal,
};

/// The hasher of the tables keyed by a place in a chunk: foldhash, seeded per process (the
/// places come from the file; SipHash was 0.8% of the instructions of reading a folder of
/// EVTX files).
type Offsets = foldhash::fast::RandomState;

/// The records of one chunk, read from their binary XML: the templates read so far, by
/// their offset in the chunk.
#[derive(Default)]
pub(super) struct RecordReader {
    templates: HashMap<u32, Option<Rc<Template>>, Offsets>,
    /// The values of the record being read, kept for the next.
    values: Vec<Value>,
    /// The values of a fragment of it.
    fragment_values: Vec<Value>,
    /// The values of its `EventData` fragment, kept for reading the event.
    data_values: Vec<Value>,
}

thread_local! {
    /// The templates this thread read in its earlier chunks. Every chunk defines its templates
    /// anew, and the chunks of one log (and the logs of one kind) mostly begin with the same
    /// record kinds: the same template, defined at the same place, in the same bytes. Reading
    /// those again was an eighth of a run's time over a folder of EVTX files.
    static SEEN_TEMPLATES: std::cell::RefCell<SeenTemplates> = Default::default();
}

/// Templates read in earlier chunks, by where their chunk defined them; each with the bytes
/// its reading looked at, so that it is taken again only where a chunk holds those same
/// bytes: the reading of a template is a function of those bytes alone.
#[derive(Default)]
struct SeenTemplates {
    by_offset: HashMap<u32, Vec<SeenTemplate>, Offsets>,
    /// The bytes the kept templates hold, at most [`SEEN_TEMPLATE_BYTES`].
    bytes: usize,
    #[cfg(test)]
    taken: usize,
}

/// Forgets the templates this thread has read, and tells how many times one was taken
/// from an earlier chunk.
#[cfg(test)]
pub(super) fn forget_seen_templates() -> usize {
    SEEN_TEMPLATES.with(|seen| std::mem::take(&mut *seen.borrow_mut()).taken)
}

/// The bytes of templates one thread keeps; past it, it forgets them all and starts again.
const SEEN_TEMPLATE_BYTES: usize = 1 << 20;
/// The templates kept for one place in a chunk: the newest.
const SEEN_TEMPLATES_AT_ONE_OFFSET: usize = 4;

struct SeenTemplate {
    /// The bytes from the definition on, as far as its reading went.
    definition: Box<[u8]>,
    /// The names it links to elsewhere in the chunk: where, and their bytes.
    linked_names: Vec<(usize, Box<[u8]>)>,
    template: Rc<Template>,
}

impl SeenTemplate {
    fn held_in(&self, data: &[u8], offset: usize) -> bool {
        let same = |at: usize, bytes: &[u8]| data.get(at..at + bytes.len()) == Some(bytes);
        same(offset, &self.definition) && self.linked_names.iter().all(|(at, name)| same(*at, name))
    }

    /// The bytes it holds, about: those it compares, and its reading's (a few hundred).
    fn size(&self) -> usize {
        let compared =
            self.definition.len() + self.linked_names.iter().map(|(_, name)| name.len()).sum::<usize>();
        compared + std::mem::size_of::<Self>() + std::mem::size_of::<Template>() + 256
    }
}

impl SeenTemplates {
    /// The template defined at `offset` in the chunk's `data`, read ([`read_template`]) or
    /// taken from an earlier chunk.
    fn template(&mut self, data: &[u8], offset: u32) -> Option<Rc<Template>> {
        let at = offset as usize;
        if let Some(seen) =
            self.by_offset.get(&offset).and_then(|seen| seen.iter().find(|s| s.held_in(data, at)))
        {
            #[cfg(test)]
            {
                self.taken += 1;
            }
            return Some(seen.template.clone());
        }
        let mut reader = Reader::new(data, at);
        // Only a template read whole is kept: a reading that failed may have failed at the
        // end of this chunk's data, which another chunk's may pass.
        let template = Rc::new(read_template(&mut reader)?);
        let seen = SeenTemplate {
            definition: data.get(at..reader.reach)?.into(),
            linked_names: reader
                .linked_names
                .iter()
                .map(|name| Some((name.start, data.get(name.clone())?.into())))
                .collect::<Option<_>>()?,
            template: template.clone(),
        };
        let size = seen.size();
        if size <= SEEN_TEMPLATE_BYTES {
            if self.bytes + size > SEEN_TEMPLATE_BYTES {
                self.by_offset.clear();
                self.bytes = 0;
            }
            let kept = self.by_offset.entry(offset).or_default();
            if kept.len() == SEEN_TEMPLATES_AT_ONE_OFFSET {
                self.bytes -= kept.remove(0).size();
            }
            kept.push(seen);
            self.bytes += size;
        }
        Some(template)
    }
}

/// The fragments of a record that hold `EventData`.
enum DataFragment {
    None,
    /// One: its template (its values are in [`RecordReader::data_values`]).
    One(Rc<Template>),
    /// More than one: left to the renderer.
    Several,
}

/// Whether the substitution of any of `indices` is NULL (or missing) in `values`.
fn any_null(values: &[Value], indices: &[u16]) -> bool {
    indices.iter().any(|&index| values.get(usize::from(index)).is_none_or(|v| v.kind == NULL))
}

/// What a record's binary XML tells.
#[derive(Debug, PartialEq)]
// An event is its values in place (see `EventData`); each is made once per record and taken
// at once, where a box would be one more allocation per process creation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Told {
    /// Not a process creation: the skipped kind the full parse names (`Sysmon 3`).
    Skipped(String),
    /// A process creation, read.
    Event(WinEvent<'static>),
    /// A process creation (Sysmon 1, Security 4688) that is to be rendered and read.
    ProcessCreation,
}

/// What a template holds where. `None` (in the cache) for a template this does not read.
#[derive(Debug, Default)]
struct Template {
    /// The names of its root elements.
    roots: Vec<Known>,
    /// Whether a substitution, text or other content lies outside every element.
    loose: bool,
    /// Whether `Event/System` was seen.
    system: Option<()>,
    event_id: Option<Content>,
    channel: Option<Content>,
    /// `Provider/@Name`: `Some(None)` for a provider without a name.
    provider: Option<Option<Content>>,
    /// The substitutions whose NULL value leaves out `Event`, `System` or one of the above.
    dependencies: Vec<u16>,
    /// The substitutions right in `Event`: fragments of elements of their own, which must
    /// not hold another `System`.
    fragments: Vec<u16>,
    /// The other `System` facts, which only the event needs.
    computer: Slot,
    record_id: Slot,
    version: Slot,
    /// `TimeCreated/@SystemTime`.
    system_time: Slot,
    /// The substitutions whose NULL value leaves out one of the other facts or `EventData`
    /// or one of its `Data`.
    event_dependencies: Vec<u16>,
    /// `EventData` (in `Event`, or as this template's root).
    event_data: DataShape,
    /// The `Data` elements of the `EventData` being read.
    pending_data: Vec<DataItem>,
}

/// What an element or attribute holds.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    Empty,
    /// Text: its UTF-16 at a place in the chunk.
    Text(Range<usize>),
    Substitution(u16),
}

/// A fact of `System` that the event reads.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Missing,
    Once(Content),
    /// Given twice, or as more than one piece.
    Unread,
}

impl Slot {
    fn note(&mut self, content: Option<Content>) {
        *self = match (&*self, content) {
            (Slot::Missing, Some(content)) => Slot::Once(content),
            _ => Slot::Unread,
        };
    }
}

/// `EventData` as a template holds it.
#[derive(Debug, Default)]
enum DataShape {
    #[default]
    Absent,
    /// Its `Data` elements, each named by a literal `Name`.
    Data(Vec<DataItem>),
    /// Anything else: other elements or content, twice, a name given twice.
    Unread,
}

/// `<Data Name="name">content</Data>`.
#[derive(Debug)]
struct DataItem {
    name: String,
    /// Its name, if the normalization reads it: the key its value is kept under.
    read_as: Option<DataName>,
    content: Content,
}

impl RecordReader {
    /// The template defined at `offset` in the chunk's `data`, read once: taken from an
    /// earlier chunk of this thread's where that chunk held the same bytes everywhere the
    /// reading looked ([`SEEN_TEMPLATES`]).
    fn template(&mut self, data: &[u8], offset: u32) -> Option<Rc<Template>> {
        if let Some(template) = self.templates.get(&offset) {
            return template.clone();
        }
        let template = SEEN_TEMPLATES.with(|seen| seen.borrow_mut().template(data, offset));
        self.templates.insert(offset, template.clone());
        template
    }

    /// What `record`'s binary XML tells: `None` when it tells nothing.
    pub(super) fn read(&mut self, record: &EvtxRecord<'_>) -> Option<Told> {
        let start = usize::try_from(record.binxml_offset).ok()?;
        let end = start.checked_add(record.binxml_size as usize)?;
        self.read_at(record.chunk.data, start..end)
    }

    /// What the binary XML at `binxml` in the chunk's `data` tells (see [`Self::read`]).
    pub(super) fn read_at(&mut self, data: &[u8], binxml: Range<usize>) -> Option<Told> {
        let (start, end) = (binxml.start, binxml.end);
        let mut values = std::mem::take(&mut self.values);
        let told = self.read_values(data, start, end, &mut values);
        self.values = values;
        told
    }

    fn read_values(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        values: &mut Vec<Value>,
    ) -> Option<Told> {
        let template_offset = single_instance(data, start, end, values)?;
        let template = self.template(data, template_offset)?;
        if template.roots != [Known::Event] || template.loose || template.event_id.is_none() {
            return None;
        }
        if any_null(values, &template.dependencies) {
            return None;
        }
        // The fragments right in `Event`: none may hold a `System`; one may be `EventData`.
        let mut data_fragment = DataFragment::None;
        for &index in &template.fragments {
            let fragment = values.get(usize::from(index))?;
            match fragment.kind {
                NULL => {}
                BINXML => {
                    let mut nested_values = std::mem::take(&mut self.fragment_values);
                    let nested = single_instance(
                        data,
                        fragment.start,
                        fragment.start + fragment.size,
                        &mut nested_values,
                    );
                    let nested = nested.and_then(|offset| self.template(data, offset));
                    let Some(nested) = nested.filter(|n| !n.loose && !n.roots.contains(&Known::System))
                    else {
                        self.fragment_values = nested_values;
                        return None;
                    };
                    if nested.roots.contains(&Known::EventData) {
                        data_fragment = match data_fragment {
                            DataFragment::None => {
                                std::mem::swap(&mut self.data_values, &mut nested_values);
                                DataFragment::One(nested)
                            }
                            _ => DataFragment::Several,
                        };
                    }
                    self.fragment_values = nested_values;
                }
                _ => return None,
            }
        }
        let value = |index: u16| values.get(usize::from(index));
        let event_id = match template.event_id.as_ref()? {
            Content::Text(text) => until_nul(data.get(text.clone())?)?.trim().parse::<u64>().ok()?,
            Content::Substitution(index) => unsigned(data, value(*index)?)?,
            Content::Empty => return None,
        };
        let text = |content: Option<&Content>| -> Option<String> {
            let text = match content {
                None | Some(Content::Empty) => String::new(),
                Some(Content::Text(text)) => utf16(data.get(text.clone())?)?,
                Some(Content::Substitution(index)) => {
                    let value = value(*index)?;
                    match value.kind {
                        NULL => String::new(),
                        STRING => utf16(bytes(data, value))?,
                        _ => return None,
                    }
                }
            };
            // Control characters are written as escapes and may be trimmed by the renderer.
            (!text.chars().any(char::is_control)).then_some(text)
        };
        let mut event = WinEvent {
            provider: text(template.provider.as_ref().and_then(Option::as_ref))?,
            channel: text(template.channel.as_ref())?,
            // As the full parse reads a number.
            event_id: Some(event_id as u32),
            ..WinEvent::default()
        };
        let process_creation = match event.event_id {
            Some(SYSMON_PROCESS_CREATE) => event.is_sysmon(),
            Some(SECURITY_PROCESS_CREATE) => event.is_security(),
            _ => false,
        };
        if !process_creation {
            return Some(Told::Skipped(event.kind()));
        }
        let read = self.read_event(data, &template, values, data_fragment, &mut event);
        Some(if read.is_some() { Told::Event(event) } else { Told::ProcessCreation })
    }

    /// Reads the rest of a process creation into `event`: the other `System` facts and
    /// `EventData`, from this template or its one `EventData` fragment. `None` when
    /// something is not read here.
    fn read_event(
        &mut self,
        data: &[u8],
        template: &Template,
        values: &[Value],
        data_fragment: DataFragment,
        event: &mut WinEvent<'static>,
    ) -> Option<()> {
        if any_null(values, &template.event_dependencies) {
            return None;
        }
        let fact = |slot: &Slot| -> Option<Option<Written>> {
            match slot {
                Slot::Missing => Some(None),
                Slot::Once(content) => written(data, values, content),
                Slot::Unread => None,
            }
        };
        event.computer = fact(&template.computer)?.map(Written::into_text).unwrap_or_default();
        event.record_id = fact(&template.record_id)?.and_then(Written::number);
        event.version = fact(&template.version)?.and_then(Written::number).map(|n| n as u32);
        event.system_time = fact(&template.system_time)?.map(Written::into_text);
        // `EventData` from one place only.
        let items = match (&template.event_data, &data_fragment) {
            (DataShape::Absent, DataFragment::None) => return Some(()),
            (DataShape::Data(items), DataFragment::None) => items,
            (DataShape::Absent, DataFragment::One(nested)) => {
                if any_null(&self.data_values, &nested.event_dependencies) {
                    return None;
                }
                let DataShape::Data(items) = &nested.event_data else { return None };
                return read_data(data, &self.data_values, items, &mut event.data);
            }
            _ => return None,
        };
        read_data(data, values, items, &mut event.data)
    }
}

/// Reads `items` (with the `values` they refer to) into `into`, as the JSON reader keeps them
/// (the members whose value is not null), those the normalization reads.
fn read_data(data: &[u8], values: &[Value], items: &[DataItem], into: &mut EventData<'static>) -> Option<()> {
    for item in items {
        // Every value is written, read or not: one this reader cannot write sends the record
        // to the crate's rendering, whatever its name.
        let value = written(data, values, &item.content)?;
        if let (Some(name), Some(value)) = (item.read_as, value) {
            into.set(name, Cow::Owned(value.into_text()));
        }
    }
    Some(())
}

/// A value as the renderer writes it into JSON: text, or a number.
enum Written {
    Text(String),
    Number(u64),
}

impl Written {
    /// The value's text, as the JSON reader takes a string or a number.
    fn into_text(self) -> String {
        match self {
            Written::Text(text) => text,
            Written::Number(n) => decimal(n),
        }
    }

    /// The value as the JSON reader reads a number: a number, or a decimal string.
    fn number(self) -> Option<u64> {
        match self {
            Written::Text(text) => text.trim().parse().ok(),
            Written::Number(n) => Some(n),
        }
    }
}

/// What `content` holds, with `values`: `Some(None)` for nothing (JSON's null), `None`
/// for a value not read here.
fn written(data: &[u8], values: &[Value], content: &Content) -> Option<Option<Written>> {
    let value = match content {
        Content::Empty => return Some(None),
        Content::Text(text) => return Some(Some(Written::Text(until_nul(data.get(text.clone())?)?))),
        Content::Substitution(index) => values.get(usize::from(*index))?,
    };
    let bytes = bytes(data, value);
    let le = |n: usize| -> u64 {
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(le)
    };
    // The renderer's text of each type, through the crate's own `Display` where the value
    // can be made.
    let text = |value: BinXmlValue<'_>| Some(Some(Written::Text(value.to_string())));
    match value.kind {
        NULL => Some(None),
        // An empty string is no content: JSON's null.
        STRING => Some(
            Some(Written::Text(until_nul(bytes)?)).filter(|w| !matches!(w, Written::Text(t) if t.is_empty())),
        ),
        0x04 | 0x06 | 0x08 | 0x0a => unsigned(data, value).map(|n| Some(Written::Number(n))),
        0x0f => Some(Some(Written::Text(guid(bytes[..16].try_into().ok()?)))),
        0x11 => text(BinXmlValue::FileTimeType(FileTime(le(8)))),
        0x13 => Some(Some(Written::Text(sid(bytes)?))),
        0x14 => Some(Some(Written::Text(hex(le(4))))),
        0x15 => Some(Some(Written::Text(hex(le(8))))),
        _ => None,
    }
}

/// An unsigned value (UInt8 to UInt64); `None` for another type.
fn unsigned(data: &[u8], value: &Value) -> Option<u64> {
    let width = match value.kind {
        0x04 => 1,
        0x06 => 2,
        0x08 => 4,
        0x0a => 8,
        _ => return None,
    };
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(&bytes(data, value)[..width]);
    Some(u64::from_le_bytes(le))
}

/// A value's bytes.
fn bytes<'a>(data: &'a [u8], value: &Value) -> &'a [u8] {
    &data[value.start..value.start + value.size]
}

/// A SID as the renderer writes it: `S-revision-authority-sub-...`. Written digit by digit:
/// through `format!` a SID cost about 1,850 instructions, written here about 680.
fn sid(bytes: &[u8]) -> Option<String> {
    let &[revision, count, a0, a1, a2, a3, a4, a5, ref subs @ ..] = bytes else { return None };
    let authority = u64::from_be_bytes([0, 0, a0, a1, a2, a3, a4, a5]);
    let subs = subs.chunks_exact(4).take(usize::from(count));
    // Each number at most 20 digits and its dash.
    let mut text = String::with_capacity(2 + 21 * (2 + subs.len()));
    text.push_str("S-");
    push_decimal(&mut text, u64::from(revision));
    text.push('-');
    push_decimal(&mut text, authority);
    for sub in subs {
        text.push('-');
        push_decimal(&mut text, u64::from(u32::from_le_bytes(sub.try_into().ok()?)));
    }
    Some(text)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A GUID as the renderer writes it: `{d1-d2-d3-d4[0..2]-d4[2..8]}` in lowercase, its first
/// three parts little-endian. Through the crate's `Display` (a renderer, a buffer and a
/// formatter for each value), a GUID cost about 900 instructions; Sysmon records hold three.
fn guid(bytes: &[u8; 16]) -> String {
    const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut out = [b'-'; 38];
    (out[0], out[37]) = (b'{', b'}');
    let mut at = 1;
    for (i, &byte) in ORDER.iter().map(|&i| &bytes[i]).enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX_DIGITS[usize::from(byte >> 4)];
        out[at + 1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        at += 2;
    }
    std::str::from_utf8(&out).expect("hex digits, dashes and braces").to_owned()
}

/// A HexInt32 or HexInt64 as the renderer writes it: `0x`, then lowercase digits without
/// leading zeros.
fn hex(n: u64) -> String {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    let mut out = String::with_capacity(2 + digits as usize);
    out.push_str("0x");
    for shift in (0..digits).rev() {
        out.push(char::from(HEX_DIGITS[((n >> (4 * shift)) & 0xf) as usize]));
    }
    out
}

/// A substitution value of a template instance: its type and where its bytes are.
struct Value {
    kind: u8,
    start: usize,
    size: usize,
}

/// The value types read here (MS-EVEN6 2.2.3): NULL, UTF-16 text, a binary XML fragment.
const NULL: u8 = 0x00;
const STRING: u8 = 0x01;
const BINXML: u8 = 0x21;

/// For binary XML at `start..end` in the chunk's `data` that is one template instance and
/// nothing else: its template's offset, and its `values`. `None` for any other shape, or
/// when a value's decoding by the crate may end elsewhere than its size says (then each
/// value is where the sizes before it say, as the crate reads it).
fn single_instance(data: &[u8], start: usize, end: usize, values: &mut Vec<Value>) -> Option<u32> {
    values.clear();
    let token = match data.get(start..end)? {
        [0x0f, _, _, _, 0x0c, ..] => 4,
        [0x0c, ..] => 0,
        _ => return None,
    };
    let mut at = start + token + 1;
    let u32_at =
        |at: usize| data.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
    // An unknown byte, the template's id and its offset.
    let template_offset = u32_at(at + 5)?;
    at += 9;
    if template_offset as usize == at {
        // The definition itself follows: its header and data.
        at = at.checked_add(24)?.checked_add(u32_at(at + 20)? as usize)?;
    }
    let count = u32_at(at)? as usize;
    at += 4;
    let descriptors = data.get(at..at.checked_add(count.checked_mul(4)?)?)?;
    at += descriptors.len();
    for descriptor in descriptors.chunks_exact(4) {
        let size = usize::from(u16::from_le_bytes([descriptor[0], descriptor[1]]));
        if !decodes_within(descriptor[2], size, data.get(at..at + size)?) {
            return None;
        }
        values.push(Value { kind: descriptor[2], start: at, size });
        at += size;
    }
    // The end of the stream, or its end token.
    (at == end || at < end && data[at] == 0).then_some(template_offset)
}

/// Whether the crate's decoding of a value of `kind` and `size` (whose bytes are `bytes`)
/// reads no more than its size, so that the next value starts where the sizes say: the
/// crate moves on to there when it reads less, not when it reads more.
fn decodes_within(kind: u8, size: usize, bytes: &[u8]) -> bool {
    match kind {
        // NULL, and the sized strings and bytes (UTF-16 of an even size, ANSI, binary, a
        // binary XML fragment).
        0x00 | 0x02 | 0x0e | 0x21 => true,
        0x01 => size.is_multiple_of(2),
        0x03 | 0x04 => size >= 1,
        0x05 | 0x06 => size >= 2,
        0x07 | 0x08 | 0x0b | 0x0d | 0x14 => size >= 4,
        0x09 | 0x0a | 0x0c | 0x11 | 0x15 => size >= 8,
        0x0f | 0x12 => size >= 16,
        0x10 => size == 4 || size == 8,
        // A SID: 8 bytes and 4 for each of its sub-authorities (the count is its second byte).
        0x13 => bytes.get(1).is_some_and(|&n| size >= 8 + 4 * usize::from(n)),
        _ => false,
    }
}

/// Reads the template defined where `reader` stands in its chunk's data: what it holds
/// where. `None` when it holds what this does not read. The reader tells afterwards which
/// bytes the reading looked at.
fn read_template(reader: &mut Reader<'_>) -> Option<Template> {
    let data = reader.data;
    let mut at = reader.at;
    let size = u32::from_le_bytes(data.get(at + 20..at + 24)?.try_into().ok()?) as usize;
    at += 24;
    // A template that the chunk's data does not hold whole is not read: the crate refuses it
    // ("template data out of bounds"), and a chunk read up to its free space would cut it.
    let end = at.checked_add(size)?;
    if end > data.len() {
        return None;
    }
    reader.at = at;
    reader.reach = reader.reach.max(end);
    let mut template = Template::default();
    let mut open: Vec<Element> = Vec::new();
    while reader.at < end {
        let token = reader.u8()?;
        match token {
            0x00 => break,
            0x0f => reader.skip(3)?,
            0x01 | 0x41 => {
                let dependency = reader.u16()?;
                reader.skip(4)?;
                let name = reader.name()?;
                if token & 0x40 != 0 {
                    reader.skip(4)?;
                }
                let path: Vec<Known> = open.iter().map(|e| e.name).chain([name]).collect();
                let kept = kept(&path);
                if let Some(parent) = open.last_mut() {
                    parent.children = true;
                }
                if open.is_empty() {
                    template.roots.push(name);
                }
                let dependency = (dependency != 0xffff).then_some(dependency);
                open.push(Element { name, dependency, kept, in_tag: true, ..Element::default() });
            }
            0x02 => open.last_mut()?.in_tag = false,
            0x03 | 0x04 => {
                let element = open.pop()?;
                if element.kept {
                    let path: Vec<Known> = open.iter().map(|e| e.name).collect();
                    element.place(data, &path, &mut template)?;
                }
            }
            0x05 | 0x45 => {
                // A literal value: only UTF-16 text is read.
                if reader.u8()? != STRING {
                    return None;
                }
                let text = reader.utf16()?;
                push(&mut open, &mut template, Piece::Text(text));
            }
            0x06 | 0x46 => {
                let name = reader.name()?;
                let element = open.last_mut()?;
                if !element.in_tag {
                    return None;
                }
                let key = element.kept && Some(name) == key_attribute(element.name);
                element.attribute_is_key = Some(key);
                element.keys += usize::from(key);
            }
            0x0d | 0x0e => {
                let index = reader.u16()?;
                reader.skip(1)?;
                push(&mut open, &mut template, Piece::Substitution(index));
            }
            // Character data, references and processing instructions: other content.
            0x07 | 0x47 | 0x0b => {
                reader.utf16()?;
                push(&mut open, &mut template, Piece::Other);
            }
            0x08 | 0x48 => {
                reader.skip(2)?;
                push(&mut open, &mut template, Piece::Other);
            }
            0x09 | 0x49 | 0x0a => {
                reader.name()?;
                push(&mut open, &mut template, Piece::Other);
            }
            _ => return None,
        }
    }
    open.is_empty().then_some(template)
}

/// Whether the element at `path` is looked into.
fn kept(path: &[Known]) -> bool {
    use Known::*;
    matches!(
        path,
        [Event]
            | [Event, System]
            | [
                Event,
                System,
                EventId | Channel | Provider | Computer | EventRecordId | Version | TimeCreated
            ]
            | [Event, EventData]
            | [Event, EventData, _]
            | [EventData]
            | [EventData, _]
    )
}

/// The attribute of an element that is read: `Provider/@Name`, `Data/@Name`,
/// `TimeCreated/@SystemTime`.
fn key_attribute(element: Known) -> Option<Known> {
    match element {
        Known::Provider | Known::Data => Some(Known::Name),
        Known::TimeCreated => Some(Known::SystemTime),
        _ => None,
    }
}

/// Adds `piece` to the open element, or notes content outside every element.
fn push(open: &mut [Element], template: &mut Template, piece: Piece) {
    match open.last_mut() {
        Some(element) => element.push(piece),
        None => template.loose = true,
    }
}

/// The names this reads, and any other.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Known {
    Event,
    System,
    EventId,
    Channel,
    Provider,
    Computer,
    EventRecordId,
    Version,
    TimeCreated,
    EventData,
    Data,
    /// The attribute `Name`.
    Name,
    SystemTime,
    #[default]
    Other,
}

/// An element of a template as it is read.
#[derive(Default)]
struct Element {
    name: Known,
    dependency: Option<u16>,
    /// Whether it is looked into.
    kept: bool,
    content: Vec<Piece>,
    /// Whether the attribute being read (in the start tag) is the one read, if any is.
    attribute_is_key: Option<bool>,
    /// The value of the attribute read, and how many times it is given.
    key: Vec<Piece>,
    keys: usize,
    in_tag: bool,
    /// Whether it holds elements.
    children: bool,
}

enum Piece {
    /// Text: its UTF-16 at a place in the chunk.
    Text(Range<usize>),
    Substitution(u16),
    Other,
}

impl Element {
    fn push(&mut self, piece: Piece) {
        if !self.kept {
            return;
        }
        match self.attribute_is_key {
            Some(true) if self.in_tag => self.key.push(piece),
            Some(false) if self.in_tag => {}
            _ => self.content.push(piece),
        }
    }

    /// The attribute read: `None` when it is given more than once or is not one piece.
    fn key(&self) -> Option<Option<Content>> {
        match self.keys {
            0 => Some(None),
            1 => content(&self.key).map(Some),
            _ => None,
        }
    }

    /// Notes this element, closed inside the elements `parents`, in `template`: `None` when
    /// it makes the template one this does not read.
    fn place(self, data: &[u8], parents: &[Known], template: &mut Template) -> Option<()> {
        use Known::*;
        let dependencies = match (parents, self.name) {
            ([], Event) => {
                for piece in &self.content {
                    match piece {
                        Piece::Text(_) => {}
                        Piece::Substitution(index) => template.fragments.push(*index),
                        Piece::Other => return None,
                    }
                }
                &mut template.dependencies
            }
            ([Event], System) => {
                // A substitution right in it may be a fragment of elements of its own.
                if self.content.iter().any(|p| !matches!(p, Piece::Text(_))) {
                    return None;
                }
                set(&mut template.system, ())?;
                &mut template.dependencies
            }
            ([Event, System], EventId) => {
                set(&mut template.event_id, content(&self.content)?)?;
                &mut template.dependencies
            }
            ([Event, System], Channel) => {
                set(&mut template.channel, content(&self.content)?)?;
                &mut template.dependencies
            }
            ([Event, System], Provider) => {
                set(&mut template.provider, self.key()?)?;
                &mut template.dependencies
            }
            ([Event, System], Computer) => {
                template.computer.note(content(&self.content));
                &mut template.event_dependencies
            }
            ([Event, System], EventRecordId) => {
                template.record_id.note(content(&self.content));
                &mut template.event_dependencies
            }
            ([Event, System], Version) => {
                template.version.note(content(&self.content));
                &mut template.event_dependencies
            }
            ([Event, System], TimeCreated) => {
                template.system_time.note(self.key().flatten());
                &mut template.event_dependencies
            }
            ([Event], EventData) | ([], EventData) => {
                let items = std::mem::take(&mut template.pending_data);
                template.event_data = match template.event_data {
                    // Its own content (text, a fragment) would be a member of its own.
                    DataShape::Absent if self.content.is_empty() => DataShape::Data(items),
                    _ => DataShape::Unread,
                };
                &mut template.event_dependencies
            }
            ([Event, EventData] | [EventData], Data) => {
                match self.data_item(data) {
                    Some(item) if !template.pending_data.iter().any(|i| i.name == item.name) => {
                        template.pending_data.push(item)
                    }
                    _ => template.event_data = DataShape::Unread,
                }
                &mut template.event_dependencies
            }
            ([Event, EventData] | [EventData], _) => {
                template.event_data = DataShape::Unread;
                return Some(());
            }
            _ => return Some(()),
        };
        dependencies.extend(self.dependency);
        Some(())
    }

    /// A `Data` element named by a literal `Name` that JSON writes as it is, with one piece
    /// of content and no elements.
    fn data_item(&self, data: &[u8]) -> Option<DataItem> {
        let Some(Content::Text(name)) = self.key()? else { return None };
        let name = until_nul(data.get(name)?)?;
        let plain = !name.is_empty()
            && !name.chars().any(|c| c.is_control() || c == '"' || c == '\\')
            && !name.ends_with("_attributes")
            && !name.starts_with('#');
        (plain && !self.children).then_some(())?;
        Some(DataItem { read_as: DataName::of(&name), name, content: content(&self.content)? })
    }
}

/// Sets a fact that must be given once.
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// What pieces hold, when they are nothing, one text or one substitution.
fn content(pieces: &[Piece]) -> Option<Content> {
    match pieces {
        [] => Some(Content::Empty),
        [Piece::Text(text)] => Some(Content::Text(text.clone())),
        [Piece::Substitution(index)] => Some(Content::Substitution(*index)),
        _ => None,
    }
}

/// A cursor over a chunk's bytes; every read is checked.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    /// The end of what it has read from where it started.
    reach: usize,
    /// The names it read elsewhere in the chunk (linked to, not given where it read).
    linked_names: Vec<Range<usize>>,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], at: usize) -> Self {
        Reader { data, at, reach: at, linked_names: Vec::new() }
    }

    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let range = self.at..self.at.checked_add(n)?;
        self.data.get(range.clone())?;
        self.at = range.end;
        self.reach = self.reach.max(range.end);
        Some(range)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|r| self.data[r.start])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|r| u16::from_le_bytes([self.data[r.start], self.data[r.start + 1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|r| Some(u32::from_le_bytes(self.data[r].try_into().ok()?)))
    }

    /// A length-prefixed UTF-16 string: where its text is.
    fn utf16(&mut self) -> Option<std::ops::Range<usize>> {
        let count = usize::from(self.u16()?);
        self.take(count * 2)
    }

    /// A name: an offset into the chunk, where the name is (and, when it is right here, the
    /// name itself, skipped). `None` for a name that JSON must escape.
    fn name(&mut self) -> Option<Known> {
        let offset = self.u32()? as usize;
        let (name, read) = name_at(self.data, offset)?;
        if offset == self.at {
            self.skip(read.len() + 2)?;
        } else {
            self.linked_names.push(read);
        }
        Some(name)
    }
}

/// The names a template's elements and attributes are told by.
const KNOWN_NAMES: [(&str, Known); 13] = [
    ("Event", Known::Event),
    ("System", Known::System),
    ("EventID", Known::EventId),
    ("Channel", Known::Channel),
    ("Provider", Known::Provider),
    ("Computer", Known::Computer),
    ("EventRecordID", Known::EventRecordId),
    ("Version", Known::Version),
    ("TimeCreated", Known::TimeCreated),
    ("EventData", Known::EventData),
    ("Data", Known::Data),
    ("Name", Known::Name),
    ("SystemTime", Known::SystemTime),
];

/// The name stored at `offset` (its link, 4 bytes; hash, 2; length, 2; then UTF-16), when
/// it is well formed and needs no JSON escape (the renderer writes names as they are: a
/// name with a quote, a backslash or a control character makes no JSON).
fn name_at(data: &[u8], offset: usize) -> Option<(Known, Range<usize>)> {
    let count = usize::from(u16::from_le_bytes(data.get(offset + 6..offset + 8)?.try_into().ok()?));
    let read = offset..offset + 8 + count * 2;
    let bytes = data.get(offset + 8..read.end)?;
    Some((told_name(bytes, count)?, read))
}

/// The name whose UTF-16 (of `count` units) is `bytes` (see [`name_at`]).
fn told_name(bytes: &[u8], count: usize) -> Option<Known> {
    // Windows' own names are ASCII: told and compared unit by unit, without decoding them
    // (decoding each name of each template was a twentieth of reading a record). Any other
    // is none of the names below.
    let plain_ascii =
        |unit: &[u8]| unit[1] == 0 && matches!(unit[0], 0x20..=0x7e) && !matches!(unit[0], b'"' | b'\\');
    if !bytes.chunks_exact(2).all(plain_ascii) {
        let units = bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        for c in char::decode_utf16(units) {
            let c = c.ok()?;
            if c.is_control() || c == '"' || c == '\\' {
                return None;
            }
        }
        return Some(Known::Other);
    }
    let is = |name: &str| {
        name.len() == count && name.bytes().zip(bytes.chunks_exact(2)).all(|(b, unit)| b == unit[0])
    };
    Some(KNOWN_NAMES.iter().find(|(name, _)| is(name)).map_or(Known::Other, |&(_, known)| known))
}

/// UTF-16 text up to its first NUL, as the crate reads a string value: the text before it
/// read by [`utf16`].
fn until_nul(bytes: &[u8]) -> Option<String> {
    let units = &bytes[..bytes.len() & !1];
    utf16(&units[..first_nul(units)])
}

/// Where the first NUL unit of `units` (UTF-16LE, of an even length) starts: its length when
/// there is none. Its first bytes are looked at four units a turn, the rest by `memchr`'s
/// `memmem`: most values are short, and setting up a search for each took as much as
/// reading it.
fn first_nul(units: &[u8]) -> usize {
    /// The bytes looked at four units a turn.
    const HEAD_BYTES: usize = 128;
    let head = &units[..units.len().min(HEAD_BYTES)];
    let (words, rest) = head.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        let word = u64::from_le_bytes(*word);
        // A unit that is zero sets its top bit here; a borrow from it may set those of the
        // units after it, never one before.
        let zero = word.wrapping_sub(0x0001_0001_0001_0001) & !word & 0x8000_8000_8000_8000;
        if zero != 0 {
            return i * 8 + zero.trailing_zeros() as usize / 16 * 2;
        }
    }
    let at = words.len() * 8;
    if let Some(unit) = rest.chunks_exact(2).position(|unit| unit == [0, 0]) {
        return at + 2 * unit;
    }
    if units.len() <= HEAD_BYTES {
        return units.len();
    }
    static ZEROS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(&[0, 0]));
    let tail = &units[HEAD_BYTES..];
    for at in ZEROS.find_iter(tail) {
        if at % 2 == 0 {
            return HEAD_BYTES + at;
        }
        // Two zero bytes across two units (`a\0`, `\0…`): the second unit is NUL if the byte
        // after them is zero too (the search goes on past both).
        if tail.get(at + 2) == Some(&0) {
            return HEAD_BYTES + at + 1;
        }
    }
    units.len()
}

/// UTF-16 text; `None` when it is not well formed. Most text of a log is ASCII: it is told
/// (one OR over all the words) and narrowed in loops the compiler vectorizes (decoding each
/// character was a fifth of reading a record; narrowing eight units at a time still an
/// eighth).
fn utf16(bytes: &[u8]) -> Option<String> {
    let units = &bytes[..bytes.len() & !1];
    let (words, rest) = units.as_chunks::<8>();
    let high = words.iter().fold(0, |high, word| high | u64::from_le_bytes(*word)) & 0xff80_ff80_ff80_ff80;
    if high == 0 && rest.chunks_exact(2).all(|unit| unit[0] < 0x80 && unit[1] == 0) {
        let ascii: Vec<u8> = units.chunks_exact(2).map(|unit| unit[0]).collect();
        return String::from_utf8(ascii).ok();
    }
    let units = units.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    char::decode_utf16(units).collect::<Result<_, _>>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::drawn;

    #[test]
    fn guids_sids_and_hex_numbers_are_written_as_the_crate_renders_them() {
        let mut draw = drawn(0x9E37_79B9_7F4A_7C15u64);
        let mut next = move || draw(u64::MAX);
        let mut numbers: Vec<u64> = vec![0, 1, 9, 10, 15, 16, 255, 256, u64::from(u32::MAX), u64::MAX];
        numbers.extend((0..64).map(|bits| 1u64 << bits));
        numbers.extend((0..2_000).map(|i| next() >> (i % 64)));
        for &n in &numbers {
            assert_eq!(hex(n), BinXmlValue::HexInt64Type(n).to_string(), "{n:#x}");
            let n32 = n as u32;
            assert_eq!(hex(u64::from(n32)), BinXmlValue::HexInt32Type(n32).to_string(), "{n32:#x}");
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            bytes[8..].copy_from_slice(&next().to_le_bytes());
            assert_eq!(guid(&bytes), BinXmlValue::GuidType(bytes).to_string(), "{bytes:?}");
        }
        // SIDs: the form `SidRef`'s `Display` gives, written out by `format!`.
        let by_format = |bytes: &[u8]| -> Option<String> {
            let &[revision, count, a0, a1, a2, a3, a4, a5, ref subs @ ..] = bytes else { return None };
            let authority = u64::from_be_bytes([0, 0, a0, a1, a2, a3, a4, a5]);
            let mut text = format!("S-{revision}-{authority}");
            for sub in subs.chunks_exact(4).take(usize::from(count)) {
                text.push_str(&format!("-{}", u32::from_le_bytes(sub.try_into().ok()?)));
            }
            Some(text)
        };
        let well_known = [1u8, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xe8, 0x03, 0, 0];
        assert_eq!(sid(&well_known).as_deref(), Some("S-1-5-21-1000"));
        for len in 0..40 {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                assert_eq!(sid(&bytes), by_format(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn names_are_told_as_decoding_them_tells() {
        // The former reading: every name decoded, then compared.
        fn decoded(data: &[u8], offset: usize) -> Option<Known> {
            let count = usize::from(u16::from_le_bytes(data.get(offset + 6..offset + 8)?.try_into().ok()?));
            let bytes = data.get(offset + 8..offset + 8 + count * 2)?;
            let text: String =
                char::decode_utf16(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])))
                    .collect::<Result<_, _>>()
                    .ok()?;
            if text.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
                return None;
            }
            Some(KNOWN_NAMES.iter().find(|(name, _)| *name == text).map_or(Known::Other, |&(_, k)| k))
        }
        let mut next = drawn(0x9E37_79B9_7F4A_7C15u64);
        let names =
            ["Event", "System", "EventID", "Channel", "Data", "Name", "SystemTime", "EventData", "Nam"];
        // Units that change a name: the edges of ASCII, the quote and the backslash, a C1
        // control, accents, lone surrogates, a pair, and a unit whose low byte is a letter.
        let odd: [u16; 14] = [
            0,
            0x1f,
            0x20,
            0x22,
            0x5c,
            0x7e,
            0x7f,
            0x85,
            0xe9,
            0xd834,
            0xdd1e,
            0x4100 | 0x65,
            0x0165,
            0x2028,
        ];
        for _ in 0..20_000 {
            let mut units: Vec<u16> = names[next(names.len() as u64) as usize].encode_utf16().collect();
            for _ in 0..next(3) {
                let at = next(units.len() as u64 + 1) as usize;
                match next(3) {
                    0 => units.insert(at, odd[next(odd.len() as u64) as usize]),
                    1 if at < units.len() => units[at] = odd[next(odd.len() as u64) as usize],
                    _ if at < units.len() => units[at] ^= 0x20,
                    _ => {}
                }
            }
            let mut data = vec![0u8; 6];
            data.extend_from_slice(&(units.len() as u16).to_le_bytes());
            data.extend(units.iter().flat_map(|u| u.to_le_bytes()));
            assert_eq!(name_at(&data, 0).map(|(name, _)| name), decoded(&data, 0), "{units:x?}");
        }
    }

    #[test]
    fn utf16_up_to_its_first_nul_on_many_drawn_unit_sequences() {
        let mut next = drawn(0x2545_F491_4F6C_DD1Du64);
        // ASCII most of the time; NUL, the ASCII edge, two-byte and three-byte characters,
        // lone and paired surrogates now and then.
        let pool: [u16; 10] = [0, 0x7f, 0x80, 0xe9, 0x20ac, 0xd834, 0xdd1e, 0xffff, 0x0100, 0x7e00];
        for _ in 0..40_000 {
            // Short, as most values are, and now and then past the units looked at four a
            // turn (64), where the rest is searched otherwise.
            let len = if next(3) == 0 { next(200) } else { next(40) } as usize;
            let rare = next(4) == 0;
            let units: Vec<u16> = (0..len)
                .map(
                    |_| if rare && next(6) == 0 { pool[next(10) as usize] } else { 0x20 + next(0x5f) as u16 },
                )
                .collect();
            let mut bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
            if next(5) == 0 {
                bytes.push(next(256) as u8);
            }
            let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
            assert_eq!(until_nul(&bytes), String::from_utf16(&units[..end]).ok(), "{units:x?}");
        }
    }

    #[test]
    fn utf16_up_to_its_first_nul_as_the_crate_reads_it() {
        let cases = [
            "",
            "a",
            "abc",
            "abcd",
            "abcdefgh",
            "C:\\Windows\\System32\\cmd.exe /c whoami",
            "é",
            "aé€𝄞 x",
            "\u{7f}\u{80}",
            "0123456789abcdefghijé€ and on, past sixteen units",
        ];
        for text in cases {
            let units: Vec<u16> = text.encode_utf16().collect();
            for nul_at in [None, Some(0), Some(1), Some(3), Some(4), Some(5), Some(9), Some(17), Some(25)] {
                let mut with_nul = units.clone();
                if let Some(at) = nul_at.filter(|&at| at <= units.len()) {
                    with_nul.insert(at, 0);
                    with_nul.push(b'z'.into());
                }
                let bytes: Vec<u8> = with_nul.iter().flat_map(|u| u.to_le_bytes()).collect();
                let until_first_nul = String::from_utf16(
                    &with_nul[..with_nul.iter().position(|&u| u == 0).unwrap_or(with_nul.len())],
                )
                .ok();
                assert_eq!(until_nul(&bytes), until_first_nul, "{text:?} NUL at {nul_at:?}");
            }
        }
        // A lone surrogate is no text; an odd last byte is not read.
        assert_eq!(until_nul(&[0x00, 0xd8, b'a', 0]), None);
        assert_eq!(until_nul(&[b'a', 0, b'b']), Some("a".to_owned()));
    }
}
