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
        let mut pieces: Vec<Piece> = Vec::with_capacity(self.0.len());
        for part in &self.0 {
            match part {
                Part::Text(text) => match pieces.last_mut() {
                    Some(Piece::Text(last)) => last.push_str(&folded(text)),
                    _ => pieces.push(Piece::Text(folded(text))),
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
    Wide,
    Re,
    ReIgnoreCase,
    ReMultiLine,
    ReDotAll,
    FieldRef,
    Exists,
}

impl Modifier {
    pub(super) fn parse(name: &str) -> Result<Self, Unsupported> {
        Ok(match name {
            "contains" => Modifier::Contains,
            "startswith" => Modifier::StartsWith,
            "endswith" => Modifier::EndsWith,
            "all" => Modifier::All,
            "windash" => Modifier::Windash,
            "base64" => Modifier::Base64,
            "base64offset" => Modifier::Base64Offset,
            "wide" | "utf16le" => Modifier::Wide,
            "re" => Modifier::Re,
            "i" => Modifier::ReIgnoreCase,
            "m" => Modifier::ReMultiLine,
            "s" => Modifier::ReDotAll,
            "fieldref" => Modifier::FieldRef,
            "exists" => Modifier::Exists,
            "cased" | "cidr" | "gt" | "gte" | "lt" | "lte" | "expand" | "utf16" | "utf16be" | "minute"
            | "hour" | "day" | "week" | "month" | "year" => {
                return Err(Unsupported {
                    construct: format!("|{name}"),
                    reason: format!(
                        "the `{name}` modifier is not supported (the process-creation catalog does not use it)"
                    ),
                });
            }
            other => {
                return Err(Unsupported {
                    construct: format!("|{other}"),
                    reason: format!("`{other}` is not a Sigma modifier"),
                });
            }
        })
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

/// A value as YAML gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    String(String),
    Null,
    Bool(bool),
}

/// Applies `modifiers` to `values`.
pub(super) fn compile(modifiers: &[Modifier], values: &[Value]) -> Result<Compiled, Unsupported> {
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
            .map(|v| match v {
                // The expression is the string as written: Sigma's escapes are not applied.
                Value::String(pattern) => {
                    let check = Check::Regex {
                        pattern: pattern.clone(),
                        ignore_case: flag(Modifier::ReIgnoreCase),
                        multi_line: flag(Modifier::ReMultiLine),
                        dot_all: flag(Modifier::ReDotAll),
                    };
                    validate_regex(pattern)?;
                    Ok(vec![check])
                }
                _ => Err(Unsupported::new("|re", "a regular expression must be a string")),
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
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let mut strings = match value {
            Value::Null => {
                out.push(vec![Check::Empty]);
                continue;
            }
            Value::Bool(b) => vec![SigmaString::plain(b.to_string())],
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
                Modifier::Wide => strings
                    .into_iter()
                    .map(|s| {
                        let parts =
                            s.0.into_iter()
                                .map(|p| match p {
                                    Part::Text(t) if t.is_ascii() => {
                                        Ok(Part::Text(t.chars().flat_map(|c| [c, '\0']).collect()))
                                    }
                                    Part::Text(_) => Err(Unsupported::new(
                                        "|wide",
                                        "wide takes ASCII strings only (as pySigma)",
                                    )),
                                    other => Ok(other),
                                })
                                .collect::<Result<_, _>>()?;
                        Ok(SigmaString(parts))
                    })
                    .collect::<Result<_, _>>()?,
                Modifier::Base64 | Modifier::Base64Offset => {
                    let mut encoded = Vec::new();
                    for s in &strings {
                        if s.has_wildcards() {
                            return Err(Unsupported::new(
                                "|base64",
                                "base64 encoding of strings with wildcards is not allowed (as pySigma)",
                            ));
                        }
                        let data = s.text().into_bytes();
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
                | Modifier::Exists => unreachable!("handled above"),
            };
        }
        let mut checks: Vec<Check> = Vec::with_capacity(strings.len());
        for s in strings {
            let check = Check::Pattern(s.pattern());
            if !checks.contains(&check) {
                checks.push(check);
            }
        }
        out.push(checks);
    }
    Ok(Compiled::Checks { all, values: out })
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

    #[test]
    fn all_on_one_value_is_refused() {
        let err = compile(&[Modifier::Contains, Modifier::All], &[Value::String("x".into())]).unwrap_err();
        assert_eq!(err.construct, "|all");
    }
}
