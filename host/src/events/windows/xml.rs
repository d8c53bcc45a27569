//! EVTX as XML: `<Events><Event>..</Event>..` as `wevtutil qe /f:xml` or Event Viewer
//! write it, and the `<EventData>` strings of Sentinel's `SecurityEvent`.
//!
//! The file is cut into `<Event>` elements by scanning for their tags, and each element is
//! parsed on its own: a broken event is rejected with its line, and the next one is read.

use std::io::BufRead;
use std::sync::Arc;

use quick_xml::events::Event as XmlEvent;

use super::{EventData, WinEvent, normalize};
use crate::events::{Origin, Position, Record, RecordError, RejectReason, SourceFormat};

/// The longest `<Event>` element read; a longer one is rejected (a file that is not
/// EVTX XML would otherwise be buffered whole).
const MAX_EVENT_BYTES: usize = 16 << 20;

/// The records of an EVTX XML stream.
pub(in crate::events) struct XmlEvents<R> {
    name: Arc<str>,
    stream: R,
    /// Bytes read, of which those from `at` on are not yet cut into events.
    buffer: Vec<u8>,
    /// Where the bytes not yet cut start. Events are cut by moving it, and the buffer is
    /// compacted once per read: compacting it for each event moved the rest of a 256 KiB
    /// read once per event, a quarter of the time of a large file.
    at: usize,
    /// The line at which `buffer[at..]` starts.
    buffer_line: u64,
    /// Where the search for the end of the event that starts at `at` resumes: the bytes
    /// before it were searched (0: nothing searched yet).
    end_searched: usize,
    done: bool,
}

impl<R: BufRead> XmlEvents<R> {
    pub(in crate::events) fn new(name: Arc<str>, stream: R) -> Self {
        Self { name, stream, buffer: Vec::new(), at: 0, buffer_line: 1, end_searched: 0, done: false }
    }

    fn reject(&self, line: u64, reason: RejectReason) -> Record {
        Record::Rejected(RecordError {
            origin: Origin { file: self.name.clone(), position: Position::Line(line) },
            reason,
        })
    }

    /// Passes over `count` bytes, counting their lines. What follows starts anew, so the
    /// search for an event's end starts anew too.
    fn consume(&mut self, count: usize) {
        let consumed = &self.buffer[self.at..self.at + count];
        self.buffer_line += memchr::memchr_iter(b'\n', consumed).count() as u64;
        self.at += count;
        self.end_searched = 0;
    }
}

/// Where the next `<Event` start tag is (not `<Events`).
fn find_event_start(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&bytes[from..], b"<Event").map(|i| i + from) {
        match bytes.get(at + 6) {
            Some(b' ' | b'>' | b'\t' | b'\r' | b'\n' | b'/') => return Some(at),
            None => return None,
            _ => from = at + 6,
        }
    }
    None
}

const EVENT_END: &[u8] = b"</Event>";

impl<R: BufRead> Iterator for XmlEvents<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(start) = find_event_start(&self.buffer[self.at..]) {
                // What comes before the event is passed over now: the event starts at `at`
                // (at 0 already, it is the one whose end was being searched for).
                if start > 0 {
                    self.consume(start);
                }
                let from = self.end_searched.max(self.at);
                if let Some(end) =
                    memchr::memmem::find(&self.buffer[from..], EVENT_END).map(|e| from + e + EVENT_END.len())
                {
                    let line = self.buffer_line;
                    let record = match parse_event(&self.buffer[self.at..end]) {
                        Ok(event) => normalize(
                            event,
                            Origin { file: self.name.clone(), position: Position::Line(line) },
                            SourceFormat::EvtxXml,
                        ),
                        Err(message) => self.reject(line, RejectReason::MalformedXml(message)),
                    };
                    self.consume(end - self.at);
                    return Some(record);
                }
                // The end may be cut by the read: its first bytes are searched again.
                self.end_searched = self.buffer.len().saturating_sub(EVENT_END.len() - 1).max(self.at);
                if self.buffer.len() - self.at > MAX_EVENT_BYTES {
                    let line = self.buffer_line;
                    self.consume(self.buffer.len() - self.at);
                    return Some(self.reject(
                        line,
                        RejectReason::MalformedXml(format!("an <Event> longer than {MAX_EVENT_BYTES} bytes")),
                    ));
                }
            } else if self.buffer.len() - self.at > 16 {
                // Keep a tail that may hold the start of a tag cut by the read.
                self.consume(self.buffer.len() - self.at - 16);
            }
            if self.done {
                let rest = String::from_utf8_lossy(&self.buffer[self.at..]).into_owned();
                let line = self.buffer_line;
                self.buffer.clear();
                self.at = 0;
                return find_event_start(rest.as_bytes()).map(|_| {
                    self.reject(line, RejectReason::Truncated("the input ends inside an <Event>".into()))
                });
            }
            // Compacted before each read, not after each event.
            if self.at > 0 {
                self.buffer.drain(..self.at);
                self.end_searched = self.end_searched.saturating_sub(self.at);
                self.at = 0;
            }
            let chunk = match self.stream.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) => {
                    self.done = true;
                    return Some(
                        self.reject(self.buffer_line, RejectReason::Truncated(format!("read error: {e}"))),
                    );
                }
            };
            if chunk.is_empty() {
                self.done = true;
                continue;
            }
            self.buffer.extend_from_slice(chunk);
            let read = chunk.len();
            self.stream.consume(read);
        }
    }
}

/// Parses one `<Event>` element.
pub(super) fn parse_event(element: &[u8]) -> Result<WinEvent<'static>, String> {
    let mut reader = quick_xml::Reader::from_reader(element);
    reader.config_mut().trim_text(false);
    let mut event = WinEvent::default();
    // The path of element names from the root, and the `Name` of the open `<Data>`.
    let mut path: Vec<String> = Vec::new();
    let mut data_name: Option<String> = None;
    let mut buffer = Vec::new();
    loop {
        let xml_event = reader.read_event_into(&mut buffer).map_err(|e| position_error(&reader, e))?;
        match xml_event {
            XmlEvent::Start(start) => {
                let name = local_name(start.name().as_ref());
                on_attributes(&mut event, &start, &name, &path, &mut data_name)?;
                path.push(name);
            }
            XmlEvent::Empty(start) => {
                let name = local_name(start.name().as_ref());
                on_attributes(&mut event, &start, &name, &path, &mut data_name)?;
                if name == "Data" {
                    data_name = None;
                }
            }
            XmlEvent::Text(text) => {
                let value = text.unescape().map_err(|e| e.to_string())?.into_owned();
                on_text(&mut event, &path, &data_name, value);
            }
            XmlEvent::CData(cdata) => {
                let value = String::from_utf8_lossy(&cdata.into_inner()).into_owned();
                on_text(&mut event, &path, &data_name, value);
            }
            XmlEvent::End(_) => {
                let closed = path.pop();
                if closed.as_deref() == Some("Data") {
                    data_name = None;
                }
            }
            XmlEvent::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    if !path.is_empty() {
        return Err(format!("<{}> is not closed", path.join("><")));
    }
    Ok(event)
}

fn position_error(reader: &quick_xml::Reader<&[u8]>, error: quick_xml::Error) -> String {
    format!("{error} (at byte {} of the event)", reader.buffer_position())
}

fn local_name(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    name.rsplit(':').next().unwrap_or(&name).to_owned()
}

fn on_attributes(
    event: &mut WinEvent<'_>,
    start: &quick_xml::events::BytesStart<'_>,
    name: &str,
    path: &[String],
    data_name: &mut Option<String>,
) -> Result<(), String> {
    let in_system = path.last().is_some_and(|p| p == "System");
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| e.to_string())?;
        let key = local_name(attribute.key.as_ref());
        let value = attribute.unescape_value().map_err(|e| e.to_string())?.into_owned();
        match (name, key.as_str()) {
            ("Provider", "Name") if in_system => event.provider = value,
            ("TimeCreated", "SystemTime") if in_system => event.system_time = Some(value),
            ("Data", "Name") => {
                // An element without content still gives its name a value: empty.
                let _ = event.data.value_mut(&value);
                *data_name = Some(value);
            }
            _ => {}
        }
    }
    Ok(())
}

fn on_text(event: &mut WinEvent<'_>, path: &[String], data_name: &Option<String>, value: String) {
    let Some(element) = path.last() else { return };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    match (parent, element.as_str()) {
        (Some("System"), "EventID") => event.event_id = value.trim().parse().ok(),
        (Some("System"), "Version") => event.version = value.trim().parse().ok(),
        (Some("System"), "Channel") => event.channel.push_str(&value),
        (Some("System"), "Computer") => event.computer.push_str(&value),
        (Some("System"), "EventRecordID") => event.record_id = value.trim().parse().ok(),
        (_, "Data") => {
            if let Some(name) = data_name
                && let Some(data) = event.data.value_mut(name)
            {
                data.to_mut().push_str(&value);
            }
        }
        _ => {}
    }
}

/// Parses an `<EventData>` element into its `Data` values.
pub(super) fn parse_event_data(text: &str) -> Result<EventData<'static>, String> {
    let wrapped = format!("<Event><EventData>{}</EventData></Event>", strip_event_data(text));
    parse_event(wrapped.as_bytes()).map(|event| event.data)
}

/// The content of `<EventData ...>...</EventData>`, or `text` if it is not wrapped.
fn strip_event_data(text: &str) -> &str {
    let text = text.trim();
    if text.starts_with("<EventData")
        && let (Some(open_end), Some(close)) = (text.find('>'), text.rfind("</EventData>"))
        && open_end < close
    {
        return &text[open_end + 1..close];
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Field;

    const EVENT: &str = r#"<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><Provider Name="Microsoft-Windows-Security-Auditing" Guid="{54849625-5478-4994-a5ba-3e3b0328c30d}"/><EventID>4688</EventID><Version>2</Version><TimeCreated SystemTime="2024-05-01T10:00:00.1234567Z"/><EventRecordID>42</EventRecordID><Channel>Security</Channel><Computer>WEB01.contoso.com</Computer></System><EventData><Data Name="NewProcessName">C:\Windows\System32\cmd.exe</Data><Data Name="CommandLine">cmd /c "a &amp; b"</Data><Data Name="ParentUser"/><Data Name="LogonId"></Data><Data Name="Unread">x</Data></EventData></Event>"#;

    #[test]
    fn an_event_element_parses() {
        let event = parse_event(EVENT.as_bytes()).unwrap();
        assert_eq!(event.provider, "Microsoft-Windows-Security-Auditing");
        assert_eq!(event.event_id, Some(4688));
        assert_eq!(event.version, Some(2));
        assert_eq!(event.channel, "Security");
        assert_eq!(event.computer, "WEB01.contoso.com");
        assert_eq!(event.record_id, Some(42));
        assert_eq!(event.system_time.as_deref(), Some("2024-05-01T10:00:00.1234567Z"));
        assert_eq!(event.data["NewProcessName"], "C:\\Windows\\System32\\cmd.exe");
        assert_eq!(event.data["CommandLine"], "cmd /c \"a & b\"");
        assert_eq!(event.data["ParentUser"], "");
        assert_eq!(event.data["LogonId"], "");
        // A name the normalization does not read is not kept.
        assert!(!event.data.contains_key("Unread"));
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(parse_event(b"<Event><System><EventID>1</EventID></Event>").is_err());
        assert!(parse_event(b"<Event><System>").is_err());
    }

    #[test]
    fn a_stream_is_cut_into_events_and_survives_a_broken_one() {
        let broken = "<Event><System><EventID>1</Event>";
        let text = format!("<Events>\n{EVENT}\n{broken}\n{EVENT}\n</Events>\n");
        let records: Vec<Record> = XmlEvents::new(Arc::from("x.xml"), text.as_bytes()).collect();
        assert_eq!(records.len(), 3);
        assert!(matches!(&records[0], Record::Event(e) if e.origin().position == Position::Line(2)));
        assert!(matches!(&records[1], Record::Rejected(r) if r.origin.position == Position::Line(3)));
        assert!(matches!(&records[2], Record::Event(_)));
    }

    #[test]
    fn events_are_cut_alike_whatever_the_reads_that_bring_them() {
        // Tags cut by a read at every place: an end tag, a start tag, `<Events>`.
        let broken = "<Event><System><EventID>1</Event>";
        let text = format!(
            "<?xml version=\"1.0\"?>\n<Events>\n{EVENT}{EVENT}\n{broken}\n<Eventual/>\n{EVENT}\n</Events>\n<Event>cut"
        );
        let described = |capacity: usize| -> Vec<String> {
            let stream = std::io::BufReader::with_capacity(capacity, text.as_bytes());
            XmlEvents::new(Arc::from("x.xml"), stream)
                .map(|record| match record {
                    Record::Event(e) => {
                        format!("event {:?} {:?}", e.origin().position, e.get(Field::ProcessCommandLine))
                    }
                    Record::Rejected(r) => format!("rejected {:?} {}", r.origin.position, r.reason),
                    Record::Skipped(s) => format!("skipped {:?}", s.origin.position),
                })
                .collect()
        };
        let whole = described(1 << 20);
        assert_eq!(whole.len(), 5, "{whole:?}");
        for capacity in (1..=40).chain([64, 255, 1000, 4096]) {
            assert_eq!(described(capacity), whole, "reads of {capacity} bytes");
        }
    }

    #[test]
    fn event_data_strings_parse() {
        let data = parse_event_data(
            "<EventData xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">\r\n  <Data Name=\"ProcessId\">0xf60</Data>\r\n</EventData>",
        )
        .unwrap();
        assert_eq!(data["ProcessId"], "0xf60");
        assert!(parse_event_data("<Data Name=\"a\">x").is_err());
    }
}
