//! Sigma's values and their modifiers, as pySigma (`sigma/types.py`, `sigma/modifiers.py`)
//! defines them: a string is parsed into text and wildcards, the modifiers turn one value into
//! one or more (an expansion), and each becomes a test of the pack.

use base64::Engine as _;
use rulehost_sigma::ir::{Check, Pattern, Piece, folded};

use super::Unsupported;

/// A part of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Text(String),
    /// `*`
    AnyRun,
    /// `?`
    AnyChar,
}

/// A Sigma string: text and wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SigmaString(pub Vec<Part>);

impl SigmaString {
    /// Parses `text` as `SigmaString` does: `*` and `?` are wildcards; a backslash before `*`,
    /// `?` or a backslash makes that character plain, before anything else it is kept as it is,
    /// and a backslash at the end is kept too.
    pub(super) fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut escaped = false;
        for c in text.chars() {
            if escaped {
                if !matches!(c, '*' | '?' | '\\') {
                    literal.push('\\');
                }
                literal.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '*' || c == '?' {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(if c == '*' { Part::AnyRun } else { Part::AnyChar });
            } else {
                literal.push(c);
            }
        }
        if escaped {
            literal.push('\\');
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        SigmaString(parts)
    }

    fn plain(text: String) -> Self {
        SigmaString(if text.is_empty() { Vec::new() } else { vec![Part::Text(text)] })
    }

    fn has_wildcards(&self) -> bool {
        self.0.iter().any(|p| !matches!(p, Part::Text(_)))
    }

    /// The text, for a string without wildcards.
    fn text(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                _ => "",
            })
            .collect()
    }

    fn starts_with_any(&self) -> bool {
        matches!(self.0.first(), Some(Part::AnyRun))
    }

    fn ends_with_any(&self) -> bool {
        matches!(self.0.last(), Some(Part::AnyRun))
    }

    /// The pattern of the pack: text folded, neighbouring texts joined, runs of `*` made one.
    pub(super) fn pattern(&self) -> Pattern {
        self.pattern_with(folded)
    }

    /// The pattern of a `cased` value: its text as written, not folded.
    pub(super) fn cased_pattern(&self) -> Pattern {
        self.pattern_with(str::to_owned)
    }

    fn pattern_with(&self, text_of: impl Fn(&str) -> String) -> Pattern {
        let mut pieces: Vec<Piece> = Vec::with_capacity(self.0.len());
        for part in &self.0 {
            match part {
                Part::Text(text) => match pieces.last_mut() {
                    Some(Piece::Text(last)) => last.push_str(&text_of(text)),
                    _ => pieces.push(Piece::Text(text_of(text))),
                },
                Part::AnyRun if pieces.last() == Some(&Piece::AnyRun) => {}
                Part::AnyRun => pieces.push(Piece::AnyRun),
                Part::AnyChar => pieces.push(Piece::AnyChar),
            }
        }
        Pattern(pieces)
    }
}

/// A modifier of a field, in the order written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Windash,
    Base64,
    Base64Offset,
    /// `wide` (`utf16le`): UTF-16LE.
    Wide,
    /// `utf16be`: UTF-16BE.
    Utf16Be,
    /// `utf16`: UTF-16LE after a byte order mark.
    Utf16,
    /// `cased`: matched case-sensitively.
    Cased,
    /// `neq`: the item negated (see `super::field`); nothing here.
    Neq,
    Re,
    ReIgnoreCase,
    ReMultiLine,
    ReDotAll,
    FieldRef,
    Exists,
}

/// Every modifier by its names in a rule: the first of a modifier is the one its messages
/// use; pySigma's long names of the regex flags and the specification's `utf16le` follow.
const MODIFIER_NAMES: [(&str, Modifier); 22] = [
    ("contains", Modifier::Contains),
    ("startswith", Modifier::StartsWith),
    ("endswith", Modifier::EndsWith),
    ("all", Modifier::All),
    ("windash", Modifier::Windash),
    ("base64", Modifier::Base64),
    ("base64offset", Modifier::Base64Offset),
    ("wide", Modifier::Wide),
    ("utf16be", Modifier::Utf16Be),
    ("utf16", Modifier::Utf16),
    ("cased", Modifier::Cased),
    ("neq", Modifier::Neq),
    ("re", Modifier::Re),
    ("i", Modifier::ReIgnoreCase),
    ("m", Modifier::ReMultiLine),
    ("s", Modifier::ReDotAll),
    ("fieldref", Modifier::FieldRef),
    ("exists", Modifier::Exists),
    ("utf16le", Modifier::Wide),
    ("ignorecase", Modifier::ReIgnoreCase),
    ("multiline", Modifier::ReMultiLine),
    ("dotall", Modifier::ReDotAll),
];

impl Modifier {
    pub(super) fn parse(name: &str) -> Result<Self, Unsupported> {
        if let Some((_, modifier)) = MODIFIER_NAMES.iter().find(|(n, _)| *n == name) {
            return Ok(*modifier);
        }
        let reason = match name {
            "cidr" | "gt" | "gte" | "lt" | "lte" | "expand" | "minute" | "hour" | "day" | "week"
            | "month" | "year" => {
                format!(
                    "the `{name}` modifier is not supported (the process-creation catalog does not use it)"
                )
            }
            _ => format!("`{name}` is not a Sigma modifier"),
        };
        Err(Unsupported { construct: format!("|{name}"), reason })
    }

    /// The modifier's name in a rule (the first, where it has several).
    fn name(self) -> &'static str {
        MODIFIER_NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(name, _)| *name)
            .expect("every modifier is named")
    }
}

/// The three shifted encodings of `base64offset`, cut as pySigma cuts them.
fn base64_offsets(data: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    // pySigma's end offsets (None, -3, -2): characters dropped from the end.
    const END: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut shifted = vec![b' '; i];
            shifted.extend_from_slice(data);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&shifted);
            let end = encoded.len() - END[(data.len() + i) % 3];
            encoded[START[i].min(end)..end].to_owned()
        })
        .collect()
}

/// pySigma's `windash`: every dash or slash that starts a word after a non-word character (the
/// regular expression `\B[-/]\b`, with Unicode word characters, in each text part) takes each
/// of `-`, `/`, en dash, em dash and horizontal bar; at most three positions a value.
fn windash(value: &SigmaString) -> Result<Vec<SigmaString>, Unsupported> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    // Parts with a placeholder (None) at each expanded position.
    let mut pieces: Vec<Option<Part>> = Vec::new();
    let mut positions = 0;
    for part in &value.0 {
        let Part::Text(text) = part else {
            pieces.push(Some(part.clone()));
            continue;
        };
        let chars: Vec<char> = text.chars().collect();
        let mut literal = String::new();
        for (i, &c) in chars.iter().enumerate() {
            // `\B` before a non-word character: the one before is not a word character either
            // (or there is none); `\b` after it: the next one is a word character.
            let before_is_word = i > 0 && is_word(chars[i - 1]);
            let after_is_word = chars.get(i + 1).is_some_and(|&n| is_word(n));
            if (c == '-' || c == '/') && !before_is_word && after_is_word {
                if !literal.is_empty() {
                    pieces.push(Some(Part::Text(std::mem::take(&mut literal))));
                }
                pieces.push(None);
                positions += 1;
            } else {
                literal.push(c);
            }
        }
        if !literal.is_empty() {
            pieces.push(Some(Part::Text(literal)));
        }
    }
    if positions > 3 {
        return Err(Unsupported::new(
            "|windash",
            "windash expands at most three dash occurrences in one value (as pySigma)",
        ));
    }
    let mut variants: Vec<Vec<Part>> = vec![Vec::new()];
    for piece in pieces {
        variants = match piece {
            Some(part) => variants
                .into_iter()
                .map(|mut v| {
                    v.push(part.clone());
                    v
                })
                .collect(),
            None => variants
                .into_iter()
                .flat_map(|v| {
                    DASHES.iter().map(move |d| {
                        let mut v = v.clone();
                        v.push(Part::Text(d.to_string()));
                        v
                    })
                })
                .collect(),
        };
    }
    // Neighbouring texts are joined by `pattern()`; the parts are kept as built.
    Ok(variants.into_iter().map(SigmaString).collect())
}

/// What one field's modifiers make of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Compiled {
    /// Each value a set of alternatives (OR), the values joined by OR, or by AND with `all`.
    Checks { all: bool, values: Vec<Vec<Check>> },
    /// `fieldref`: equal to the fields named.
    FieldRefs { all: bool, fields: Vec<String> },
}

/// A value as PyYAML gives it to pySigma (see `super::pyyaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    String(String),
    /// An integer or a float, as Python prints it (`8` for `010`, `1.5` for `1.50`): matched
    /// as that text, whole; pySigma takes no string modifier on it.
    Number(String),
    Null,
    Bool(bool),
}

impl Value {
    /// What Python's `str` makes of it: the text of a regular expression that is not a string.
    fn python_str(&self) -> String {
        match self {
            Value::String(text) | Value::Number(text) => text.clone(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Null => "None".into(),
        }
    }

    /// What it is, for a message, when it is not a string.
    fn kind(&self) -> Option<String> {
        match self {
            Value::String(_) => None,
            Value::Number(text) => Some(format!("the number {text}")),
            Value::Bool(b) => Some(format!("the boolean {b}")),
            Value::Null => Some("null".into()),
        }
    }
}

/// Applies `modifiers` to `values`.
pub(super) fn compile(modifiers: &[Modifier], values: &[Value]) -> Result<Compiled, Unsupported> {
    // `neq` negates the item as a whole (the caller does); the value's modifiers are the
    // others. pySigma takes `re` only first, before `neq` too.
    if let (Some(neq), Some(re)) = (
        modifiers.iter().position(|m| *m == Modifier::Neq),
        modifiers.iter().position(|m| *m == Modifier::Re),
    ) && neq < re
    {
        return Err(Unsupported::new(
            "|re",
            "`re` applies to the value as written: write it before `neq` (as pySigma)",
        ));
    }
    let modifiers: Vec<Modifier> = modifiers.iter().copied().filter(|m| *m != Modifier::Neq).collect();
    let modifiers = modifiers.as_slice();
    let all = modifiers.contains(&Modifier::All);
    if all && values.len() < 2 {
        return Err(Unsupported::new(
            "|all",
            "`all` on a single value is invalid (Sigma modifiers appendix)",
        ));
    }
    let has = |m| modifiers.contains(&m);
    if has(Modifier::FieldRef) {
        if modifiers.iter().any(|m| !matches!(m, Modifier::FieldRef | Modifier::All)) {
            return Err(Unsupported::new(
                "|fieldref",
                "fieldref combined with other modifiers is not supported",
            ));
        }
        let fields = values
            .iter()
            .map(|v| match v {
                Value::String(name) => Ok(name.clone()),
                _ => Err(Unsupported::new("|fieldref", "fieldref takes field names")),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Compiled::FieldRefs { all, fields });
    }
    if has(Modifier::Exists) {
        if modifiers.len() != 1 {
            return Err(Unsupported::new("|exists", "exists takes no other modifier"));
        }
        let checks = values
            .iter()
            .map(|v| match v {
                // `exists: true` is "not empty", which the caller negates; see `super`.
                Value::Bool(_) => Ok(vec![Check::Empty]),
                _ => Err(Unsupported::new("|exists", "exists takes true or false")),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Compiled::Checks { all, values: checks });
    }
    if has(Modifier::Re) {
        let flag = |m| modifiers.contains(&m);
        if modifiers.iter().any(|m| {
            !matches!(
                m,
                Modifier::Re
                    | Modifier::ReIgnoreCase
                    | Modifier::ReMultiLine
                    | Modifier::ReDotAll
                    | Modifier::All
            )
        }) {
            return Err(Unsupported::new("|re", "re combined with string modifiers is not supported"));
        }
        let checks = values
            .iter()
            .map(|value| {
                // The expression is the string as written: Sigma's escapes are not applied. A
                // value of another type is what Python's `str` makes of it, as pySigma takes it
                // (`re: 010` is the expression `8`, `re: yes` is `True`).
                let pattern = value.python_str();
                validate_regex(&pattern)?;
                Ok(vec![Check::Regex {
                    pattern,
                    ignore_case: flag(Modifier::ReIgnoreCase),
                    multi_line: flag(Modifier::ReMultiLine),
                    dot_all: flag(Modifier::ReDotAll),
                }])
            })
            .collect::<Result<_, _>>()?;
        return Ok(Compiled::Checks { all, values: checks });
    }
    if let Some(flag) = modifiers
        .iter()
        .find(|m| matches!(m, Modifier::ReIgnoreCase | Modifier::ReMultiLine | Modifier::ReDotAll))
    {
        return Err(Unsupported::new("|re", &format!("{flag:?} is a flag of `re` and needs it")));
    }
    cased_is_kept(modifiers)?;
    // pySigma's string modifiers take strings only (their `modify` says so, and pySigma
    // checks it): on a number, a boolean or null they are an error.
    if let Some(modifier) = modifiers.iter().find(|m| **m != Modifier::All)
        && let Some(kind) = values.iter().find_map(Value::kind)
    {
        return Err(Unsupported::new(
            &format!("|{}", modifier.name()),
            &format!(
                "{} takes strings, and the value is {kind} (YAML 1.1, as pySigma reads it: quote a value to match it as text)",
                modifier.name()
            ),
        ));
    }
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let mut strings = match value {
            Value::Null => {
                out.push(vec![Check::Empty]);
                continue;
            }
            Value::Bool(b) => vec![SigmaString::plain(b.to_string())],
            Value::Number(text) => vec![SigmaString::plain(text.clone())],
            Value::String(text) => vec![SigmaString::parse(text)],
        };
        for modifier in modifiers {
            strings = match modifier {
                Modifier::All => strings,
                Modifier::Contains => strings
                    .into_iter()
                    .map(|mut s| {
                        if !s.starts_with_any() {
                            s.0.insert(0, Part::AnyRun);
                        }
                        if !s.ends_with_any() {
                            s.0.push(Part::AnyRun);
                        }
                        s
                    })
                    .collect(),
                Modifier::StartsWith => strings
                    .into_iter()
                    .map(|mut s| {
                        if !s.ends_with_any() {
                            s.0.push(Part::AnyRun);
                        }
                        s
                    })
                    .collect(),
                Modifier::EndsWith => strings
                    .into_iter()
                    .map(|mut s| {
                        if !s.starts_with_any() {
                            s.0.insert(0, Part::AnyRun);
                        }
                        s
                    })
                    .collect(),
                Modifier::Windash => {
                    let mut expanded = Vec::new();
                    for s in &strings {
                        expanded.extend(windash(s)?);
                    }
                    expanded
                }
                Modifier::Wide | Modifier::Utf16Be | Modifier::Utf16 => {
                    strings.into_iter().map(|s| utf16(*modifier, s)).collect::<Result<_, _>>()?
                }
                Modifier::Cased => strings,
                Modifier::Base64 | Modifier::Base64Offset => {
                    let mut encoded = Vec::new();
                    for s in &strings {
                        if s.has_wildcards() {
                            return Err(Unsupported::new(
                                "|base64",
                                "base64 encoding of strings with wildcards is not allowed (as pySigma)",
                            ));
                        }
                        let mut data = s.text().into_bytes();
                        // pySigma's `_base64_input_bytes`: after `utf16`, its byte order mark
                        // (U+FEFF, EF BB BF in UTF-8) is encoded as UTF-16LE's FF FE.
                        if modifiers.contains(&Modifier::Utf16) && data.starts_with(UTF8_BOM) {
                            data.splice(..UTF8_BOM.len(), [0xff, 0xfe]);
                        }
                        if *modifier == Modifier::Base64 {
                            encoded.push(SigmaString::plain(
                                base64::engine::general_purpose::STANDARD.encode(&data),
                            ));
                        } else {
                            encoded.extend(base64_offsets(&data).into_iter().map(SigmaString::plain));
                        }
                    }
                    encoded
                }
                Modifier::Re
                | Modifier::ReIgnoreCase
                | Modifier::ReMultiLine
                | Modifier::ReDotAll
                | Modifier::FieldRef
                | Modifier::Exists
                | Modifier::Neq => unreachable!("handled above"),
            };
        }
        let cased = modifiers.contains(&Modifier::Cased);
        let mut checks: Vec<Check> = Vec::with_capacity(strings.len());
        for s in strings {
            let check =
                if cased { Check::CasedPattern(s.cased_pattern()) } else { Check::Pattern(s.pattern()) };
            if !checks.contains(&check) {
                checks.push(check);
            }
        }
        out.push(checks);
    }
    Ok(Compiled::Checks { all, values: out })
}

/// U+FEFF in UTF-8: the byte order mark `utf16` puts before a value.
const UTF8_BOM: &[u8] = "\u{feff}".as_bytes();

/// `wide`, `utf16be` and `utf16` as pySigma makes them: each text part encoded in UTF-16, and
/// the bytes read back as UTF-8 (a NUL beside each ASCII character); `utf16` puts a byte order
/// mark first. A part whose bytes are not UTF-8 (most characters past ASCII) is refused, as
/// pySigma refuses it.
fn utf16(modifier: Modifier, value: SigmaString) -> Result<SigmaString, Unsupported> {
    let (name, big_endian) = (modifier.name(), modifier == Modifier::Utf16Be);
    let mut parts = Vec::with_capacity(value.0.len() + 1);
    if modifier == Modifier::Utf16 {
        parts.push(Part::Text("\u{feff}".into()));
    }
    for part in value.0 {
        let Part::Text(text) = part else {
            parts.push(part);
            continue;
        };
        let bytes: Vec<u8> = text
            .encode_utf16()
            .flat_map(|unit| if big_endian { unit.to_be_bytes() } else { unit.to_le_bytes() })
            .collect();
        let text = String::from_utf8(bytes).map_err(|_| {
            Unsupported::new(
                &format!("|{name}"),
                &format!(
                    "{name} takes text whose UTF-16 bytes read as UTF-8, in practice ASCII (as pySigma)"
                ),
            )
        })?;
        parts.push(Part::Text(text));
    }
    Ok(SigmaString(parts))
}

/// Refuses `cased` where pySigma would drop it: a modifier that makes new strings from the
/// value (`windash`, `base64`, `base64offset`, `wide`, `utf16`, `utf16be`) after it gives plain,
/// case-insensitive strings again. Written after them, `cased` holds.
fn cased_is_kept(modifiers: &[Modifier]) -> Result<(), Unsupported> {
    let Some(at) = modifiers.iter().position(|m| *m == Modifier::Cased) else {
        return Ok(());
    };
    let remakes = |m: &&Modifier| {
        matches!(
            m,
            Modifier::Windash
                | Modifier::Base64
                | Modifier::Base64Offset
                | Modifier::Wide
                | Modifier::Utf16
                | Modifier::Utf16Be
        )
    };
    match modifiers[at..].iter().find(remakes) {
        Some(later) => Err(Unsupported::new(
            "|cased",
            &format!(
                "`cased` before `{}` is dropped by pySigma (the strings it makes are matched \
                 case-insensitively): write `cased` after it",
                later.name()
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses an expression Rust's `regex` does not take (lookaround, backreferences) with the
/// engine's own words.
fn validate_regex(pattern: &str) -> Result<(), Unsupported> {
    regex::RegexBuilder::new(pattern)
        .size_limit(rulehost_sigma::matcher::REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| Unsupported {
            construct: "|re".into(),
            reason: format!("regular expression {pattern:?} is not supported by Rust's regex: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(strings: &[SigmaString]) -> Vec<String> {
        strings
            .iter()
            .map(|s| {
                s.0.iter()
                    .map(|p| match p {
                        Part::Text(t) => t.clone(),
                        Part::AnyRun => "*".into(),
                        Part::AnyChar => "?".into(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn escapes_are_parsed_as_sigma_string_does() {
        use Part::*;
        let t = |s: &str| Text(s.into());
        assert_eq!(SigmaString::parse("a\\*b").0, vec![t("a*b")]);
        assert_eq!(SigmaString::parse("a\\\\*b").0, vec![t("a\\"), AnyRun, t("b")]);
        assert_eq!(SigmaString::parse("a\\\\\\*b").0, vec![t("a\\*b")]);
        assert_eq!(SigmaString::parse("C:\\Windows\\cmd.exe").0, vec![t("C:\\Windows\\cmd.exe")]);
        assert_eq!(SigmaString::parse("a\\?").0, vec![t("a?")]);
        assert_eq!(SigmaString::parse("end\\").0, vec![t("end\\")]);
        assert_eq!(SigmaString::parse("x?y*").0, vec![t("x"), AnyChar, t("y"), AnyRun]);
    }

    #[test]
    fn windash_expands_as_pysigma() {
        let v = windash(&SigmaString::parse(" -foo -bar-baz")).unwrap();
        // Two positions (the dash inside `bar-baz` follows a word character): 25 variants.
        assert_eq!(v.len(), 25);
        let t = texts(&v);
        assert!(t.contains(&" -foo -bar-baz".to_string()));
        assert!(t.contains(&" /foo \u{2015}bar-baz".to_string()));
        // A dash before a non-word character is kept.
        assert_eq!(texts(&windash(&SigmaString::parse("a - b")).unwrap()), vec!["a - b"]);
        // At the start of a text part (after a wildcard) it is expanded.
        assert_eq!(windash(&SigmaString::parse("*-x")).unwrap().len(), 5);
        assert!(windash(&SigmaString::parse(" -a -b -c -d")).is_err());
    }

    #[test]
    fn base64offset_cuts_as_pysigma() {
        // pySigma 2.0.1: SigmaBase64OffsetModifier over "/c" and "http".
        assert_eq!(base64_offsets(b"/c"), vec!["L2", "9j", "vY"]);
        assert_eq!(base64_offsets(b"http"), vec!["aHR0c", "h0dH", "odHRw"]);
        assert_eq!(base64_offsets(b"IEX ("), vec!["SUVYIC", "lFWCAo", "JRVggK"]);
    }

    /// The texts of a field's checks, one list a value.
    fn check_texts(modifiers: &[&str], value: &str) -> Result<Vec<String>, Unsupported> {
        let modifiers = modifiers.iter().map(|m| Modifier::parse(m)).collect::<Result<Vec<_>, _>>()?;
        let Compiled::Checks { values, .. } = compile(&modifiers, &[Value::String(value.into())])? else {
            panic!("checks")
        };
        Ok(values[0]
            .iter()
            .map(|check| {
                let (Check::Pattern(p) | Check::CasedPattern(p)) = check else { panic!("{check:?}") };
                let cased = if matches!(check, Check::CasedPattern(_)) { "cased " } else { "" };
                let text: String =
                    p.0.iter()
                        .map(|piece| match piece {
                            Piece::Text(t) => t.as_str(),
                            Piece::AnyRun => "*",
                            Piece::AnyChar => "?",
                        })
                        .collect();
                format!("{cased}{text}")
            })
            .collect())
    }

    #[test]
    fn utf16_encodings_are_pysigmas() {
        // pySigma 2.0.1's SQLite backend on `utf16|base64offset|contains: ping` and
        // `utf16be|base64: ping` (the texts of its query, folded here as every pattern is).
        assert_eq!(
            check_texts(&["utf16", "base64offset", "contains"], "ping").unwrap(),
            ["*//5wagkabgbna*", "*/+cabpag4azw*", "*//naaaqbuagca*"]
        );
        assert_eq!(check_texts(&["utf16be", "base64"], "ping").unwrap(), ["ahaaaqbuagc="]);
        assert_eq!(
            check_texts(&["wide", "base64"], "ping").unwrap(),
            check_texts(&["utf16le", "base64"], "ping").unwrap()
        );
        assert_eq!(check_texts(&["utf16be"], "a*b").unwrap(), ["\0a*\0b"]);
        assert_eq!(check_texts(&["utf16"], "a").unwrap(), ["\u{feff}a\0"]);
        // U+0100's UTF-16LE bytes (00 01) are UTF-8, as pySigma takes them; U+00E9's are not.
        assert_eq!(check_texts(&["wide"], "\u{100}").unwrap(), ["\0\u{1}"]);
        assert_eq!(check_texts(&["wide"], "\u{e9}").unwrap_err().construct, "|wide");
        assert_eq!(check_texts(&["utf16be"], "p\u{e9}").unwrap_err().construct, "|utf16be");
    }

    #[test]
    fn cased_holds_where_pysigma_keeps_it_and_is_refused_where_pysigma_drops_it() {
        assert_eq!(check_texts(&["cased"], "Foo*").unwrap(), ["cased Foo*"]);
        assert_eq!(check_texts(&["contains", "cased"], "Foo").unwrap(), ["cased *Foo*"]);
        assert_eq!(check_texts(&["cased", "endswith"], "\\X.exe").unwrap(), ["cased *\\X.exe"]);
        assert_eq!(check_texts(&["base64", "cased"], "ab").unwrap(), ["cased YWI="]);
        assert_eq!(check_texts(&["windash", "cased"], "-a").unwrap().len(), 5);
        for later in ["windash", "base64", "base64offset", "wide", "utf16", "utf16be"] {
            let refused = check_texts(&["cased", later], "-ab").unwrap_err();
            assert_eq!(refused.construct, "|cased", "cased before {later}");
            assert!(refused.reason.contains(&format!("`{later}`")), "{}", refused.reason);
        }
        // With a regular expression, pySigma refuses it (a string modifier beside `re`).
        assert!(check_texts(&["re", "cased"], "a").is_err());
    }

    #[test]
    fn neq_leaves_the_values_to_the_other_modifiers_and_re_must_come_before_it() {
        assert_eq!(check_texts(&["contains", "neq"], "a").unwrap(), check_texts(&["contains"], "a").unwrap());
        assert_eq!(check_texts(&["neq", "endswith"], "a").unwrap(), check_texts(&["endswith"], "a").unwrap());
        assert!(compile(&[Modifier::Re, Modifier::Neq], &[Value::String("a.b".into())]).is_ok());
        assert_eq!(check_texts(&["neq", "re"], "a.b").unwrap_err().construct, "|re");
    }

    #[test]
    fn pysigmas_long_names_of_the_regex_flags_are_its_short_ones_and_others_are_named() {
        for (long, short) in [("ignorecase", "i"), ("multiline", "m"), ("dotall", "s")] {
            assert_eq!(Modifier::parse(long).unwrap(), Modifier::parse(short).unwrap());
        }
        let lt = Modifier::parse("lt").unwrap_err();
        assert!(lt.reason.contains("not supported"), "{}", lt.reason);
        assert!(Modifier::parse("neqq").unwrap_err().reason.contains("not a Sigma modifier"));
    }

    #[test]
    fn all_on_one_value_is_refused() {
        let err = compile(&[Modifier::Contains, Modifier::All], &[Value::String("x".into())]).unwrap_err();
        assert_eq!(err.construct, "|all");
    }
}
