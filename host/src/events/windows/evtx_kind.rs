//! A binary EVTX record's kind told from its binary XML, before it is rendered.
//!
//! A record is a template instance: a reference to a template definition held in its chunk
//! (the XML's shape, with numbered substitutions) and the substitution values. Where
//! `Event/System/EventID`, `Channel` and `Provider/@Name` sit in a template is read once
//! per template and chunk; each record then gives its kind from two or three of its
//! values. A record that is not a process creation is counted as skipped, with the kind
//! the full parse gives it, without being rendered to JSON and read back.
//!
//! Like the JSON lines' dismissal, this only ever dismisses: whenever a record or its
//! template is not plainly one `Event` whose kind these values decide (another token
//! shape, a value whose decoding the crate might place differently, an element that a
//! NULL value may leave out, a name given twice), the record is rendered and read as
//! before. Records it dismisses are not rendered, so a failure to render the rest of them
//! goes unseen; `--parse-all` renders every record.

use std::collections::HashMap;
use std::rc::Rc;

use evtx::EvtxRecord;

use super::{SECURITY_PROCESS_CREATE, SYSMON_PROCESS_CREATE, WinEvent};

/// The kinds of one chunk's records: the templates read so far, by their offset.
#[derive(Default)]
pub(super) struct RecordKinds {
    templates: HashMap<u32, Option<Rc<Template>>>,
    /// The values of the record being read, kept for the next.
    values: Vec<Value>,
}

/// Where a template's `System` facts are: `None` for a template this does not read.
#[derive(Debug, Default, Clone, PartialEq)]
struct Template {
    event_id: Option<Content>,
    channel: Option<Content>,
    /// `Provider/@Name`: `Some(None)` for a provider without a name.
    provider: Option<Option<Content>>,
    /// The substitutions whose NULL value leaves out `Event`, `System` or one of the above.
    dependencies: Vec<u16>,
    /// Whether `Event/System` was seen.
    system: Option<()>,
    /// The names of the template's root elements.
    roots: Vec<Known>,
    /// Whether a substitution, text or other content lies outside every element.
    loose: bool,
    /// The substitutions right in `Event`: fragments of elements of their own, which must
    /// not hold another `System`.
    fragments: Vec<u16>,
}

/// What an element or attribute holds.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    Empty,
    /// Text: its UTF-16 at a place in the chunk.
    Text(std::ops::Range<usize>),
    Substitution(u16),
}

impl RecordKinds {
    /// The template defined at `offset` in the chunk's `data`, read once.
    fn template(&mut self, data: &[u8], offset: u32) -> Option<Rc<Template>> {
        self.templates.entry(offset).or_insert_with(|| read_template(data, offset).map(Rc::new)).clone()
    }

    /// What `record`'s binary XML tells of its kind: `None` when it does not tell it.
    pub(super) fn kind(&mut self, record: &EvtxRecord<'_>) -> Option<Told> {
        let data = record.chunk.data;
        let start = usize::try_from(record.binxml_offset).ok()?;
        let end = start.checked_add(record.binxml_size as usize)?;
        let mut values = std::mem::take(&mut self.values);
        let kind = self.kind_of(data, start, end, &mut values);
        self.values = values;
        kind
    }

    fn kind_of(&mut self, data: &[u8], start: usize, end: usize, values: &mut Vec<Value>) -> Option<Told> {
        let template_offset = single_instance(data, start, end, values)?;
        let template = self.template(data, template_offset)?;
        if template.roots != [Known::Event] || template.loose || template.event_id.is_none() {
            return None;
        }
        let value = |index: u16| values.get(usize::from(index));
        if template.dependencies.iter().any(|&index| value(index).is_none_or(|v| v.kind == NULL)) {
            return None;
        }
        for &index in &template.fragments {
            let fragment = value(index)?;
            match fragment.kind {
                NULL => {}
                BINXML => {
                    let mut nested_values = Vec::new();
                    let end = fragment.start + fragment.size;
                    let nested = single_instance(data, fragment.start, end, &mut nested_values)?;
                    let nested = self.template(data, nested)?;
                    if nested.loose || nested.roots.contains(&Known::System) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        let bytes = |value: &Value| &data[value.start..value.start + value.size];
        let event_id = match template.event_id.as_ref()? {
            Content::Text(text) => utf16(data.get(text.clone())?)?.trim().parse::<u64>().ok()?,
            Content::Substitution(index) => {
                let value = value(*index)?;
                let width = match value.kind {
                    0x04 => 1,
                    0x06 => 2,
                    0x08 => 4,
                    0x0a => 8,
                    _ => return None,
                };
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(&bytes(value)[..width]);
                u64::from_le_bytes(le)
            }
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
                        STRING => utf16(bytes(value))?,
                        _ => return None,
                    }
                }
            };
            // Control characters are written as escapes and may be trimmed by the renderer.
            (!text.chars().any(char::is_control)).then_some(text)
        };
        let event = WinEvent {
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
        Some(if process_creation { Told::ProcessCreation } else { Told::Skipped(event.kind()) })
    }
}

/// What a record's binary XML tells of its kind.
#[derive(Debug, PartialEq)]
pub(super) enum Told {
    /// Not a process creation: the skipped kind the full parse names (`Sysmon 3`).
    Skipped(String),
    /// A process creation (Sysmon 1, Security 4688): to be rendered and read.
    ProcessCreation,
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

/// Reads the template defined at `offset` in the chunk's `data`: its root elements and
/// where its `System` facts are. `None` when it holds what this does not read.
fn read_template(data: &[u8], offset: u32) -> Option<Template> {
    let mut at = offset as usize;
    let size = u32::from_le_bytes(data.get(at + 20..at + 24)?.try_into().ok()?) as usize;
    at += 24;
    let end = at.checked_add(size)?.min(data.len());
    let mut reader = Reader { data, at };
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
                // Only `Event`, `Event/System` and the facts under it are looked into.
                let path: Vec<Known> = open.iter().map(|e| e.name).chain([name]).collect();
                let kept = matches!(
                    path.as_slice(),
                    [Known::Event]
                        | [Known::Event, Known::System]
                        | [Known::Event, Known::System, Known::EventId | Known::Channel | Known::Provider]
                );
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
                    element.place(open.len(), &mut template)?;
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
                element.attribute = Some(name);
                if element.kept && name == Known::ProviderName {
                    element.names += 1;
                }
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
    /// The attribute `Name` (the provider's name, where it is read).
    ProviderName,
    #[default]
    Other,
}

/// An element of a template as it is read.
#[derive(Default)]
struct Element {
    name: Known,
    dependency: Option<u16>,
    /// Whether its content is kept: it is one this reads.
    kept: bool,
    content: Vec<Piece>,
    /// The attribute being read, while in its start tag.
    attribute: Option<Known>,
    /// The value of its `Name` attribute, and how many it has.
    name_value: Vec<Piece>,
    names: usize,
    in_tag: bool,
}

enum Piece {
    /// Text: its UTF-16 at a place in the chunk.
    Text(std::ops::Range<usize>),
    Substitution(u16),
    Other,
}

impl Element {
    fn push(&mut self, piece: Piece) {
        if !self.kept {
            return;
        }
        match self.attribute {
            Some(Known::ProviderName) if self.in_tag => self.name_value.push(piece),
            Some(_) if self.in_tag => {}
            _ => self.content.push(piece),
        }
    }

    /// Notes this element, closed `depth` elements deep, in `template`: `None` when it
    /// makes the template one this does not read.
    fn place(self, depth: usize, template: &mut Template) -> Option<()> {
        match (depth, self.name) {
            (0, _) => {
                for piece in &self.content {
                    match piece {
                        Piece::Text(_) => {}
                        Piece::Substitution(index) => template.fragments.push(*index),
                        Piece::Other => return None,
                    }
                }
            }
            (1, _) => {
                // A substitution right in it may be a fragment of elements of its own.
                if self.content.iter().any(|p| !matches!(p, Piece::Text(_))) {
                    return None;
                }
                set(&mut template.system, ())?;
            }
            (_, Known::EventId) => set(&mut template.event_id, content(&self.content)?)?,
            (_, Known::Channel) => set(&mut template.channel, content(&self.content)?)?,
            _ => {
                let name = match self.names {
                    0 => None,
                    1 => Some(content(&self.name_value)?),
                    _ => return None,
                };
                set(&mut template.provider, name)?;
            }
        }
        template.dependencies.extend(self.dependency);
        Some(())
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
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let range = self.at..self.at.checked_add(n)?;
        self.data.get(range.clone())?;
        self.at = range.end;
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
        let name = name_at(self.data, offset)?;
        if offset == self.at {
            let count =
                usize::from(u16::from_le_bytes(self.data.get(offset + 6..offset + 8)?.try_into().ok()?));
            self.skip(8 + count * 2 + 2)?;
        }
        Some(name)
    }
}

/// The name stored at `offset` (its link, 4 bytes; hash, 2; length, 2; then UTF-16), when
/// it is well formed and needs no JSON escape (the renderer writes names as they are: a
/// name with a quote, a backslash or a control character makes no JSON).
fn name_at(data: &[u8], offset: usize) -> Option<Known> {
    let count = usize::from(u16::from_le_bytes(data.get(offset + 6..offset + 8)?.try_into().ok()?));
    let bytes = data.get(offset + 8..offset + 8 + count * 2)?;
    let units = bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    for c in char::decode_utf16(units.clone()) {
        let c = c.ok()?;
        if c.is_control() || c == '"' || c == '\\' {
            return None;
        }
    }
    let is = |name: &str| name.len() == count && units.clone().eq(name.bytes().map(u16::from));
    Some(if is("Event") {
        Known::Event
    } else if is("System") {
        Known::System
    } else if is("EventID") {
        Known::EventId
    } else if is("Channel") {
        Known::Channel
    } else if is("Provider") {
        Known::Provider
    } else if is("Name") {
        Known::ProviderName
    } else {
        Known::Other
    })
}

fn utf16(bytes: &[u8]) -> Option<String> {
    char::decode_utf16(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])))
        .collect::<Result<_, _>>()
        .ok()
}
