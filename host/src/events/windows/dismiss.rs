//! Dismissing evtx_dump JSON lines that are not process creations without parsing them.
//!
//! In a Windows log few events are process creations (322 of 53,698 in one OTRF capture),
//! and a full JSON parse of every line costs far more than the rest of the run. A line of
//! evtx_dump's shape names its kind in `System/EventID` and `System/Channel`: a scan for
//! those two keys tells most lines apart at memory speed. The scan only ever dismisses:
//! whenever a line is not plainly one evtx_dump record of a known channel with one
//! `EventID` that is not a process creation, it says "parse it", and the full parser
//! decides as it always did. A dismissed line is counted as skipped with the same kind the
//! full parse gives (`Sysmon 3`, `Security 4624`); the difference is that its JSON syntax
//! beyond those keys is not checked, which `--parse-all` restores.

use std::sync::LazyLock;

use aho_corasick::packed;
use memchr::memmem::Finder;

use super::{SECURITY_CHANNEL, SECURITY_PROCESS_CREATE, SYSMON_CHANNEL, SYSMON_PROCESS_CREATE, push_decimal};

/// The skipped kind of `line` (without its newline) when the scan can tell that it is one
/// evtx_dump record that is not a process creation; `None` when it must be parsed.
pub(in crate::events) fn dismiss(line: &[u8]) -> Option<String> {
    let line = line.trim_ascii();
    if !line.starts_with(b"{\"Event\":{") || !line.ends_with(b"}") {
        return None;
    }
    let (system, system_end) = event_system(line, b"{\"Event\":".len())?;
    // What follows `System` is not walked (most of a line is its EventData), only searched:
    // a second `System` or `Event`, a `records` member (whose records the full parse reads
    // instead) or a key written with `\u` (which may stand for those) leave the line to it.
    let rest = &line[system_end..];
    if holds_later_key_or_unicode_escape(rest) {
        return None;
    }
    let id = number_after(line, system.event_id?)?;
    if id == SYSMON_PROCESS_CREATE || id == SECURITY_PROCESS_CREATE {
        return None;
    }
    let channel = string_after(line, system.channel?)?;
    let provider_may_be = |name: &[u8], word: &[u8]| match system.provider {
        Provider::Absent => false,
        Provider::Named(start, end) => line[start..end].eq_ignore_ascii_case(name),
        Provider::Unknown => mentions(line, word),
    };
    let may_be_sysmon = || provider_may_be(b"Microsoft-Windows-Sysmon", b"sysmon");
    let may_be_security = || provider_may_be(b"Microsoft-Windows-Security-Auditing", b"security-auditing");
    // The kind's name follows `WinEvent::kind`, which asks "Sysmon?" first, of the channel
    // or the provider: a Security line whose provider may be Sysmon is left to the parser.
    // Another channel names the kind itself, unless the provider may make it Sysmon or
    // Security (an empty channel gives way to the provider's name: left to the parser).
    let source = if channel.eq_ignore_ascii_case(SYSMON_CHANNEL.as_bytes()) {
        "Sysmon"
    } else if channel.eq_ignore_ascii_case(SECURITY_CHANNEL.as_bytes()) && !may_be_sysmon() {
        "Security"
    } else if !channel.is_empty()
        && !channel.iter().any(|&b| b < 0x20)
        && !may_be_sysmon()
        && !may_be_security()
    {
        std::str::from_utf8(channel).ok()?
    } else {
        return None;
    };
    // Invalid UTF-8 is rejected by the parser, so it is never dismissed.
    simdutf8::basic::from_utf8(line).ok()?;
    // As `format!("{source} {id}")` would write it, without its machinery: this runs for
    // most lines of a Windows log.
    let mut kind = String::with_capacity(source.len() + 6);
    kind.push_str(source);
    kind.push(' ');
    push_decimal(&mut kind, u64::from(id));
    Some(kind)
}

static TEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"#text\":"));

/// What the full parse reads of `Event/System`, where the scan found it plainly: where the
/// values of `EventID` and `Channel` start, and the provider's name.
#[derive(Default)]
struct SystemFacts {
    event_id: Option<usize>,
    channel: Option<usize>,
    provider: Provider,
}

/// `Provider/#attributes/Name` (or `Provider_attributes/Name`) as the full parse reads it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Provider {
    /// Not given (the full parse reads an empty name).
    #[default]
    Absent,
    /// A plain string, at `line[start..end]`.
    Named(usize, usize),
    /// Given some other way (twice, not a plain string, under both names).
    Unknown,
}

/// Texts whose presence after `System` leaves a line to the full parse: a second `System` or
/// `Event`, a `records` member, and `\u` (an escape, which may stand for those), searched for
/// in one pass of a packed searcher: four `memmem` passes over each line's rest took 8% more
/// of Soft Cell's instructions over real-record lines.
static LATER_KEYS: LazyLock<packed::Searcher> = LazyLock::new(|| {
    packed::Config::new()
        .match_kind(packed::MatchKind::LeftmostFirst)
        .builder()
        .extend([&b"\"System\""[..], b"\"Event\"", b"\"records\"", b"\\u"])
        .build()
        .expect("four short patterns")
});

/// Whether `text` holds `"System"`, `"Event"`, `"records"` or a `\u` escape (a `\u` after an
/// even number of backslashes; after an odd number it is an escaped backslash and a `u`).
fn holds_later_key_or_unicode_escape(text: &[u8]) -> bool {
    LATER_KEYS.find_iter(text).any(|found| {
        text[found.start()] != b'\\'
            || text[..found.start()].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

/// Walks the members of the `Event` object whose value starts at `at` (after spaces) up to
/// its first `System`, and reads that: its facts, and the index past it. `None` when anything is
/// not plain: a key written with an escape (it may stand for `System` or `EventID`), one of
/// `System`'s keys given twice, a value cut short, no `System`.
fn event_system(line: &[u8], at: usize) -> Option<(SystemFacts, usize)> {
    let mut system = None;
    // The walk ends at `System`, once read: what follows it is only searched.
    let _ = members(line, skip_space_at(line, at), |key, value| {
        if key == b"System" {
            system = system_facts(line, value);
            return None;
        }
        skip_value(line, value)
    });
    system
}

/// The members of the `System` object that opens at `open`, and the index past it.
fn system_facts(line: &[u8], open: usize) -> Option<(SystemFacts, usize)> {
    let mut facts = SystemFacts::default();
    let (mut provider, mut beside) = (None, None);
    let end = members(line, open, |key, value| {
        let end = skip_value(line, value)?;
        let slot = match key {
            b"EventID" => &mut facts.event_id,
            b"Channel" => &mut facts.channel,
            b"Provider" => {
                // `Provider/#attributes/Name`; a provider given twice is not plain.
                let name = attribute(line, value, end, Some(b"#attributes"));
                provider = Some(if provider.is_some() { Provider::Unknown } else { name });
                return Some(end);
            }
            b"Provider_attributes" => {
                let name = attribute(line, value, end, None);
                beside = Some(if beside.is_some() { Provider::Unknown } else { name });
                return Some(end);
            }
            _ => return Some(end),
        };
        if slot.replace(value).is_some() {
            return None;
        }
        Some(end)
    })?;
    // As the full parse takes the name: from `Provider` first, then from beside it.
    facts.provider = match (provider.unwrap_or_default(), beside.unwrap_or_default()) {
        (Provider::Absent, other) | (other, Provider::Absent) => other,
        _ => Provider::Unknown,
    };
    Some((facts, end))
}

/// The `Name` of the object at `line[value..end]` (under its `within` member, if given).
fn attribute(line: &[u8], value: usize, end: usize, within: Option<&[u8]>) -> Provider {
    if line.get(value) != Some(&b'{') {
        // `null`, or a value of which the full parse reads no name.
        return Provider::Absent;
    }
    let mut found = None;
    let walked = members(line, value, |key, inner| {
        let inner_end = skip_value(line, inner)?;
        let name = match within {
            Some(within) if key == within => attribute(line, inner, inner_end, None),
            None if key == b"Name" => match line[inner] {
                b'"' => match plain_string(line, inner) {
                    Some((_, after)) => Provider::Named(inner + 1, after - 1),
                    None => Provider::Unknown,
                },
                b'n' => Provider::Absent,
                _ => Provider::Unknown,
            },
            _ => return Some(inner_end),
        };
        found = Some(if found.is_some() { Provider::Unknown } else { name });
        Some(inner_end)
    });
    match walked {
        Some(walked_end) if walked_end == end => found.unwrap_or_default(),
        _ => Provider::Unknown,
    }
}

/// Walks the members of the object that opens at `open`, handing `each` every key (a plain
/// string) and where its value starts; `each` gives back where the value ends (or `None`,
/// which ends the walk). The index past the object's end; `None` when a key has an
/// escape, the object is not plainly one, or `each` ended the walk.
fn members(line: &[u8], open: usize, mut each: impl FnMut(&[u8], usize) -> Option<usize>) -> Option<usize> {
    if line.get(open) != Some(&b'{') {
        return None;
    }
    let mut at = skip_space_at(line, open + 1);
    if line.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    loop {
        let (key, after) = plain_string(line, at)?;
        at = skip_space_at(line, after);
        if line.get(at) != Some(&b':') {
            return None;
        }
        let value = skip_space_at(line, at + 1);
        at = skip_space_at(line, each(key, value)?);
        match line.get(at)? {
            b',' => at = skip_space_at(line, at + 1),
            b'}' => return Some(at + 1),
            _ => return None,
        }
    }
}

/// The index past the JSON value that starts at `at`: a string, an object or array (by its
/// brackets, strings skipped), or a scalar.
fn skip_value(line: &[u8], at: usize) -> Option<usize> {
    let (open, close) = match *line.get(at)? {
        b'"' => return skip_string(line, at),
        b'{' => (b'{', b'}'),
        b'[' => (b'[', b']'),
        _ => {
            let len = line[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(line.len() - at);
            return (len > 0).then_some(at + len);
        }
    };
    let (mut depth, mut i) = (0usize, at);
    loop {
        let found = i + memchr::memchr3(b'"', open, close, &line[i..])?;
        match line[found] {
            b'"' => i = skip_string(line, found)?,
            b if b == open => {
                depth += 1;
                i = found + 1;
            }
            _ => {
                depth -= 1;
                i = found + 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
    }
}

/// The index past the string whose opening quote is at `at`, escapes and all.
fn skip_string(line: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        let found = i + memchr::memchr2(b'"', b'\\', line.get(i..)?)?;
        if line[found] == b'"' {
            return Some(found + 1);
        }
        i = found + 2;
    }
}

/// The text of the string whose opening quote is at `at`, when it has no escape, and the
/// index past its closing quote.
fn plain_string(line: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if line.get(at) != Some(&b'"') {
        return None;
    }
    let end = at + 1 + memchr::memchr2(b'"', b'\\', &line[at + 1..])?;
    (line[end] == b'"').then(|| (&line[at + 1..end], end + 1))
}

/// `at` moved past JSON whitespace.
fn skip_space_at(line: &[u8], at: usize) -> usize {
    at + line
        .get(at..)
        .map_or(0, |rest| rest.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')).count())
}

/// The event id written at `at`: `4624`, `"4624"` or `{"#attributes":{..},"#text":4624}`,
/// followed by the end of its value. Ids are 16-bit in Windows; anything else is `None`.
fn number_after(line: &[u8], at: usize) -> Option<u32> {
    let rest = skip_space(&line[at..]);
    let (digits, after) = match rest.first()? {
        b'0'..=b'9' => split_digits(rest),
        b'"' => {
            let (digits, after) = split_digits(&rest[1..]);
            (digits, after.strip_prefix(b"\"")?)
        }
        b'{' => {
            // `{"#text":N}`, or `{"#attributes":{..},"#text":N}` with flat attributes.
            let text = TEXT.find(rest)?;
            let head = &rest[1..text];
            let flat_attributes = head.starts_with(b"\"#attributes\":{")
                && head.ends_with(b"},")
                && memchr::memchr(b'{', head) == memchr::memrchr(b'{', head)
                && memchr::memchr(b'}', head) == Some(head.len() - 2);
            if !head.is_empty() && !flat_attributes {
                return None;
            }
            let (digits, after) = split_digits(skip_space(&rest[text + 8..]));
            (digits, skip_space(after).strip_prefix(b"}")?)
        }
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 5 || !matches!(skip_space(after).first(), Some(b',' | b'}')) {
        return None;
    }
    let id: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (id <= u32::from(u16::MAX)).then_some(id)
}

/// The text of the plain string value at `at` (one without escapes).
fn string_after(line: &[u8], at: usize) -> Option<&[u8]> {
    let rest = skip_space(&line[at..]).strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then_some(&rest[..end])
}

fn split_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    bytes.split_at(n)
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii_start()
}

/// Whether `word` (lower case) occurs in `line` in any case.
fn mentions(line: &[u8], word: &[u8]) -> bool {
    let first = word[0];
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), line)
        .any(|at| line.get(at..at + word.len()).is_some_and(|w| w.eq_ignore_ascii_case(word)))
}

#[cfg(test)]
mod tests {
    use super::dismiss;

    fn line(system: &str) -> String {
        format!(r##"{{"Event":{{"EventData":{{"Image":"C:\\x.exe"}},"System":{{{system}}}}}}}"##)
    }

    #[test]
    fn non_process_records_of_known_channels_are_dismissed_by_kind() {
        let sysmon = r##""Channel":"Microsoft-Windows-Sysmon/Operational","EventID":3"##;
        assert_eq!(dismiss(line(sysmon).as_bytes()).as_deref(), Some("Sysmon 3"));
        let security = r##""EventID":{"#attributes":{"Qualifiers":0},"#text":4624},"Channel":"security""##;
        assert_eq!(dismiss(line(security).as_bytes()).as_deref(), Some("Security 4624"));
        let bare = r##""EventID":{"#text":4656},"Channel":"Security""##;
        assert_eq!(dismiss(line(bare).as_bytes()).as_deref(), Some("Security 4656"));
        let quoted = r##""EventID":"05156","Channel":"Security""##;
        let provider = r##""Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing"}},"##;
        let named = format!(r##"{provider}"EventID":4656,"Channel":"Security""##);
        assert_eq!(dismiss(line(&named).as_bytes()).as_deref(), Some("Security 4656"));
        assert_eq!(dismiss(line(quoted).as_bytes()).as_deref(), Some("Security 5156"));
        let separate = r##""Provider":null,"Provider_attributes":{"Name":"Microsoft-Windows-Security-Auditing"},"EventID":4624,"Channel":"Security""##;
        assert_eq!(dismiss(line(separate).as_bytes()).as_deref(), Some("Security 4624"));
        // Another channel names the kind itself.
        let system = r##""Provider":{"#attributes":{"Name":"Service Control Manager"}},"Channel":"System","EventID":7036"##;
        assert_eq!(dismiss(line(system).as_bytes()).as_deref(), Some("System 7036"));
        let powershell =
            r##""Provider_attributes":{"Name":"PowerShell"},"Channel":"Windows PowerShell","EventID":400"##;
        assert_eq!(dismiss(line(powershell).as_bytes()).as_deref(), Some("Windows PowerShell 400"));
        // A provider written where the full parse does not read one is no provider.
        let unread =
            r##""Provider":{"Name":"Microsoft-Windows-Sysmon"},"Channel":"Security","EventID":4624"##;
        assert_eq!(dismiss(line(unread).as_bytes()).as_deref(), Some("Security 4624"));
    }

    #[test]
    fn what_the_scan_dismisses_the_full_parse_skips_as_the_same_kind() {
        let systems = [
            r##""Provider":{"Name":"Microsoft-Windows-Sysmon"},"Channel":"Security","EventID":4624"##,
            r##""Provider":{"#attributes":{"Name":"Foo","Name":"Microsoft-Windows-Sysmon"}},"Channel":"Security","EventID":4624"##,
            r##""Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon","Name":"Foo"}},"Channel":"Security","EventID":4624"##,
            r##""Provider":{"#attributes":{"Name":null}},"Provider_attributes":{"Name":"Microsoft-Windows-Sysmon"},"Channel":"Security","EventID":4624"##,
            r##""Provider":null,"Provider_attributes":{"Name":"Service Control Manager"},"Channel":"System","EventID":7036"##,
            r##""Channel":"System","Provider":{"Name":"Microsoft-Windows-Security-Auditing"},"EventID":7036"##,
            r##""Channel":"Security","EventID":4624,"Event\u0049D":1"##,
            r##""Channel" : "Security" , "EventID" : { "#text" : 4625 } "##,
        ];
        let mut dismissed_any = 0;
        for system in systems {
            let line = line(system);
            let (dismissed, parsed) = crate::events::input::dismissal_and_full_parse(line.as_bytes());
            if let Some(kind) = dismissed {
                dismissed_any += 1;
                assert!(
                    matches!(&parsed[..], [crate::events::Record::Skipped(s)] if s.kind == kind),
                    "dismissed as {kind}: {parsed:?}\n{line}"
                );
            }
        }
        assert_eq!(dismissed_any, 3, "the first, fifth and sixth are dismissed");
    }

    #[test]
    fn anything_else_is_left_to_the_parser() {
        for system in [
            // Process creations.
            r##""Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1"##,
            r##""Channel":"Security","EventID":4688"##,
            r##""Channel":"Security","EventID":"4688""##,
            // Another channel whose provider may be Sysmon or Security-Auditing, or none.
            r##""Channel":"System","Provider_attributes":{"Name":"Microsoft-Windows-Security-Auditing"},"EventID":7036"##,
            r##""Channel":"System","Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon"}},"EventID":7036"##,
            r##""Channel":"","EventID":7036"##,
            r##""Channel":"Sys\ttem","EventID":7036"##,
            // Two ids, no id, an id that is not a plain number, an escaped channel.
            r##""Channel":"Security","EventID":4624,"EventID":1"##,
            r##""Channel":"Security""##,
            r##""Channel":"Security","EventID":46.24"##,
            r##""Channel":"Security","EventID":-4"##,
            r##""Channel":"Security","EventID":{"#text":4624,"x":1}"##,
            r##""Channel":"Security","EventID":{"a":{"b":{}},"#text":4624}"##,
            r##""Channel":"Security","EventID":99999999"##,
            r##""Channel":"Secu\u0072ity","EventID":4624"##,
            // Channel or EventID outside System: the full parse does not read them there.
            r##""EventID":4624},"Channel":"Security","S":{"##,
            r##""X":{"Channel":"Security"},"EventID":4624"##,
            r##""Data":"\"Channel\":\"Security\"","EventID":4624"##,
            // A Security record whose provider is Sysmon counts as Sysmon.
            r##""Provider":{"#attributes":{"Name":"microsoft-windows-sysmon"}},"Channel":"Security","EventID":4624"##,
            r##""Provider":null,"Provider_attributes":{"Name":"Microsoft-Windows-Sysmon"},"Channel":"Security","EventID":4624"##,
            // A provider given twice, or its name: the last counts, or whether it is Sysmon
            // is told from the whole line.
            r##""Provider":{"#attributes":{"Name":"Foo","Name":"Microsoft-Windows-Sysmon"}},"Channel":"Security","EventID":4624"##,
            r##""Provider":{"#attributes":{"Name":"Foo"}},"Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon"}},"Channel":"Security","EventID":4624"##,
            // A key of System written with an escape may be `EventID`.
            r##""Channel":"Security","EventID":4624,"Event\u0049D":1"##,
        ] {
            assert_eq!(dismiss(line(system).as_bytes()), None, "{system}");
        }
        // Not evtx_dump's shape, cut short, or not UTF-8; `System` or `Event` twice.
        assert_eq!(dismiss(br##"{"EventID":4624,"Channel":"Security"}"##), None);
        let security = r##""Channel":"Security","EventID":4624"##;
        let twice = format!(r##"{{"Event":{{"System":{{{security}}},"Sys\u0074em":{{"EventID":1}}}}}}"##);
        assert_eq!(dismiss(twice.as_bytes()), None);
        let twice =
            format!(r##"{{"Event":{{"System":{{{security}}}}},"Event":{{"System":{{"EventID":1}}}}}}"##);
        assert_eq!(dismiss(twice.as_bytes()), None);
        // Records beside `Event` are what the full parse reads.
        let records = format!(r##"{{"Event":{{"System":{{{security}}}}},"records":[{{"Timestamp":"x"}}]}}"##);
        assert_eq!(dismiss(records.as_bytes()), None);
        // A `\u` after an escaped backslash is no escape; one after an escape is.
        let plain =
            format!(r##"{{"Event":{{"System":{{{security}}},"EventData":{{"Path":"C:\\users"}}}}}}"##);
        assert_eq!(dismiss(plain.as_bytes()).as_deref(), Some("Security 4624"), "{plain}");
        let escaped =
            format!(r##"{{"Event":{{"System":{{{security}}},"EventData":{{"Path":"C:\\\u0075sers"}}}}}}"##);
        assert_eq!(dismiss(escaped.as_bytes()), None, "{escaped}");
        for line in [plain, escaped] {
            assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok(), "{line}");
        }
        let whole = line(r##""Channel":"Security","EventID":4624"##);
        assert_eq!(dismiss(&whole.as_bytes()[..whole.len() - 5]), None);
        let mut bad = whole.clone().into_bytes();
        bad[20] = 0xff;
        assert_eq!(dismiss(&bad), None);
    }

    #[test]
    fn a_channel_outside_system_is_left_to_the_parser() {
        // Found by the `dismissal` fuzz target: `System` closes before `Channel`, so the
        // full parse reads no channel and counts the line under another kind.
        let line = r##"{"Event":{ "#attributes": {"xmlns": "hvents/event"}, "System": {"Provider": {"#tatributes": {"Name": "Microsoft-Windows-Security-Auditing"}}, "EventID": 2344, "VersionventRecordID": {"SystemTime": "2024-04-2T:04916:31751Z"}}, "EventRecordID": 9004, "Correlation": null, "Channel": "Security", "Computer": "WEB00.condoso.com", "S": {"Subje#tUserSid": "S-1-5-82-300670077088"}}}"##;
        assert_eq!(dismiss(line.as_bytes()), None);
        let (dismissed, parsed) = crate::events::input::dismissal_and_full_parse(line.as_bytes());
        assert_eq!(dismissed, None);
        assert!(
            matches!(&parsed[..], [crate::events::Record::Skipped(s)] if s.kind == " 2344"),
            "{parsed:?}"
        );
    }
}
