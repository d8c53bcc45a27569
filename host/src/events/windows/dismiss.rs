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

use memchr::memmem::Finder;

use super::{SECURITY_CHANNEL, SECURITY_PROCESS_CREATE, SYSMON_CHANNEL, SYSMON_PROCESS_CREATE};

/// The skipped kind of `line` (without its newline) when the scan can tell that it is one
/// evtx_dump record that is not a process creation; `None` when it must be parsed.
pub(in crate::events) fn dismiss(line: &[u8]) -> Option<String> {
    let line = line.trim_ascii();
    if !line.starts_with(b"{\"Event\":{") || !line.ends_with(b"}") {
        return None;
    }
    let id_at = only_one(line, &EVENT_ID)?;
    let id = number_after(line, id_at)?;
    if id == SYSMON_PROCESS_CREATE || id == SECURITY_PROCESS_CREATE {
        return None;
    }
    let channel_at = only_one(line, &CHANNEL)?;
    let channel = string_after(line, channel_at)?;
    // The full parse reads both from `Event/System`: keys found anywhere else (a `Channel`
    // in EventData, an `EventID` after `System` has closed) would give another kind.
    let keys = [id_at - EVENT_ID.needle().len(), channel_at - CHANNEL.needle().len()];
    if !members_of_system(line, only_one(line, &SYSTEM)? - SYSTEM.needle().len(), keys) {
        return None;
    }
    // The kind's name follows `WinEvent::kind`, which asks "Sysmon?" first, of the channel
    // or the provider: a Security line whose provider may be Sysmon is left to the parser.
    // Another channel names the kind itself, unless the provider may make it Sysmon or
    // Security (an empty channel gives way to the provider's name: left to the parser).
    let source = if channel.eq_ignore_ascii_case(SYSMON_CHANNEL.as_bytes()) {
        "Sysmon"
    } else if channel.eq_ignore_ascii_case(SECURITY_CHANNEL.as_bytes()) && !provider_may_be_sysmon(line) {
        "Security"
    } else if !channel.is_empty()
        && !channel.iter().any(|&b| b < 0x20)
        && !provider_may_be_sysmon(line)
        && !provider_may_be_security(line)
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
    let (mut digits, mut at, mut rest) = ([0u8; 5], 5, id);
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    kind.push_str(std::str::from_utf8(&digits[at..]).ok()?);
    Some(kind)
}

static SYSTEM: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"System\":"));
static EVENT_ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"EventID\":"));
static CHANNEL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"Channel\":"));
/// evtx_dump's provider element, its name first as the evtx crate writes it.
static PROVIDER_NAME: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"Provider\":{\"#attributes\":{\"Name\":"));
/// The same, as `--separate-json-attributes` writes it.
static SEPARATE_PROVIDER_NAME: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"Provider_attributes\":{\"Name\":"));
static TEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"#text\":"));

/// The end of the one occurrence of `key` in `line`; `None` if it occurs never or twice.
fn only_one(line: &[u8], key: &Finder<'_>) -> Option<usize> {
    let at = key.find(line)?;
    let end = at + key.needle().len();
    key.find(&line[at + 1..]).is_none().then_some(end)
}

/// Whether the keys whose opening quotes are at `keys` are members of the `System` object
/// whose key starts at `system`, itself a member of the `Event` object (`{"Event":{..}}`).
/// A walk over the line's braces and strings up to the last of them: strings are skipped
/// (with their escapes), so a key-like text inside a value is not a key.
fn members_of_system(line: &[u8], system: usize, keys: [usize; 2]) -> bool {
    let (mut depth, mut system_depth, mut seen, mut at) = (0usize, None, 0, 0);
    while let Some(found) = memchr::memchr3(b'"', b'{', b'}', &line[at..]) {
        at += found;
        match line[at] {
            b'{' => depth += 1,
            b'}' => {
                if system_depth == Some(depth) {
                    return false;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {
                if at == system {
                    let value = skip_space(&line[at + SYSTEM.needle().len()..]);
                    if depth != 2 || !value.starts_with(b"{") {
                        return false;
                    }
                    system_depth = Some(depth + 1);
                } else if keys.contains(&at) {
                    if system_depth != Some(depth) {
                        return false;
                    }
                    seen += 1;
                    if seen == keys.len() {
                        return true;
                    }
                }
                // To the string's closing quote.
                at += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &line[at..]) {
                        None => return false,
                        Some(end) if line[at + end] == b'\\' => at += end + 2,
                        Some(end) => {
                            at += end;
                            break;
                        }
                    }
                    if at >= line.len() {
                        return false;
                    }
                }
            }
        }
        at += 1;
    }
    false
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

/// Whether the provider may be Sysmon: the one provider name says so, or, where the
/// provider is not written the usual way, "sysmon" occurs anywhere in any case.
fn provider_may_be_sysmon(line: &[u8]) -> bool {
    provider_may_be(line, b"Microsoft-Windows-Sysmon", b"sysmon")
}

/// Whether the provider may be Security-Auditing, as [`provider_may_be_sysmon`] tells Sysmon.
fn provider_may_be_security(line: &[u8]) -> bool {
    provider_may_be(line, b"Microsoft-Windows-Security-Auditing", b"security-auditing")
}

/// Whether the provider may be `provider`: the one provider name is it (in any case), or,
/// where the provider is not written the usual way, `word` occurs anywhere in any case.
fn provider_may_be(line: &[u8], provider: &[u8], word: &[u8]) -> bool {
    let name = |finder| only_one(line, finder).and_then(|at| string_after(line, at));
    let names = (name(&PROVIDER_NAME), name(&SEPARATE_PROVIDER_NAME));
    let named = match names {
        (Some(name), None) | (None, Some(name)) => Some(name),
        _ => None,
    };
    match named {
        Some(name) => name.eq_ignore_ascii_case(provider),
        None => mentions(line, word),
    }
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
    }

    #[test]
    fn anything_else_is_left_to_the_parser() {
        for system in [
            // Process creations.
            r##""Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1"##,
            r##""Channel":"Security","EventID":4688"##,
            r##""Channel":"Security","EventID":"4688""##,
            // Another channel whose provider may be Sysmon or Security-Auditing, or none.
            r##""Channel":"System","Provider":{"Name":"Microsoft-Windows-Security-Auditing"},"EventID":7036"##,
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
            r##""Provider":{"Name":"Microsoft-Windows-SYSMON"},"Channel":"Security","EventID":4624"##,
            r##""Provider":{"#attributes":{"Name":"microsoft-windows-sysmon"}},"Channel":"Security","EventID":4624"##,
            r##""Provider":null,"Provider_attributes":{"Name":"Microsoft-Windows-Sysmon"},"Channel":"Security","EventID":4624"##,
        ] {
            assert_eq!(dismiss(line(system).as_bytes()), None, "{system}");
        }
        // Not evtx_dump's shape, cut short, or not UTF-8.
        assert_eq!(dismiss(br##"{"EventID":4624,"Channel":"Security"}"##), None);
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
