//! A rule's attributes (all but its log source and detection) checked as pySigma 2.0.1 checks
//! them (`sigma/rule/base.py`, `SigmaRuleBase.from_dict_common_params`), in its order and with
//! its words: a rule that pySigma refuses for its id, level, dates, tags or the type of any
//! attribute is refused, whatever rulehost would have made of it.
//!
//! pySigma reads a rule with PyYAML's safe loader, which resolves a plain scalar as YAML 1.1
//! does: `yes` is true, `2024-01-01` a date, `0o17` a string. The checks read the rule as
//! written ([`Written`]) and resolve its scalars the same way.

use std::sync::LazyLock;

use regex::Regex;
use rulehost_sigma::ir::Level;

use super::pyyaml::{Py, constructible, is_date, resolve};
use super::yaml::Written;

/// The attributes the compiler reads, as pySigma's checks leave them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Attributes<'a> {
    pub(super) title: &'a str,
    /// `None` when the rule has none (pySigma's identifier is optional; rulehost's is not).
    pub(super) id: Option<&'a str>,
    pub(super) level: Option<Level>,
    pub(super) description: Option<&'a str>,
    /// As written: `2024-01-01`, `2024/1/1`, or a YAML timestamp.
    pub(super) date: Option<&'a str>,
    pub(super) modified: Option<&'a str>,
}

/// The rule's attributes, or the first error pySigma finds in them (or in the loading of any
/// scalar of the rule: PyYAML refuses a date that is not one, and the whole rule with it).
pub(super) fn check(rule: &Written) -> Result<Attributes<'_>, String> {
    constructible(rule)?;
    let Written::Mapping(entries) = rule else { return Err("the document is not a mapping".into()) };
    let get = |name: &str| entry(entries, name);
    let mut attributes = Attributes::default();
    // Rule identifier may be empty or must be a valid UUID (a value that is not a string takes
    // pySigma down on reading it: refused too).
    match get("id") {
        None | Some(Py::None) => {}
        Some(Py::Str(id)) if is_python_uuid(id) => attributes.id = Some(id),
        Some(_) => return Err("Sigma rule identifier must be an UUID".into()),
    }
    for name in ["name", "taxonomy"] {
        match get(name) {
            None | Some(Py::None) => {}
            Some(Py::Str("")) => return Err(format!("Sigma rule {name} must not be empty")),
            Some(Py::Str(_)) => {}
            Some(_) => return Err(format!("Sigma rule {name} must be a string")),
        }
    }
    match get("related") {
        None | Some(Py::None) => {}
        Some(Py::List(items)) => items.iter().try_for_each(related_item)?,
        Some(_) => return Err("Sigma rule related must be a list".into()),
    }
    match get("level") {
        None | Some(Py::None) => {}
        Some(Py::Str(level)) => {
            // Python's `upper`, as pySigma's `SigmaLevel[level.upper()]`.
            attributes.level = Some(match level.to_uppercase().as_str() {
                "INFORMATIONAL" => Level::Informational,
                "LOW" => Level::Low,
                "MEDIUM" => Level::Medium,
                "HIGH" => Level::High,
                "CRITICAL" => Level::Critical,
                _ => return Err(format!("'{level}' is not a valid Sigma rule level")),
            });
        }
        Some(_) => return Err("Sigma rule level must be a string".into()),
    }
    // `status` is read where it decides whether the rule is compiled (see `status` in the
    // module above); pySigma's checks of it come here in its order, with the same verdicts.
    match get("tags") {
        None | Some(Py::None) => {}
        Some(Py::List(tags)) => {
            for tag in tags {
                match resolve(tag) {
                    Py::Str(tag) if tag.contains('.') => {}
                    Py::Str(_) => {
                        return Err(
                            "Sigma tag must start with namespace separated with dot from remaining tag."
                                .into(),
                        );
                    }
                    _ => return Err("Sigma rule tags must be a list of strings".into()),
                }
            }
        }
        Some(_) => return Err("Sigma tags fields must be a list".into()),
    }
    attributes.date = date(get("date"), "date")?;
    attributes.modified = date(get("modified"), "modified")?;
    for (name, kind) in [
        ("fields", Kind::List),
        ("falsepositives", Kind::List),
        ("author", Kind::Str),
        ("description", Kind::Str),
        ("references", Kind::List),
    ] {
        kind.check(get(name), name)?;
    }
    attributes.description = match get("description") {
        Some(Py::Str(description)) => Some(description),
        _ => None,
    };
    attributes.title = match get("title") {
        None | Some(Py::None) => return Err("Sigma rule must have a title".into()),
        Some(Py::Str(title)) if title.chars().count() > 256 => {
            return Err("Sigma rule title length must not exceed 256 characters".into());
        }
        Some(Py::Str(title)) => title,
        Some(_) => return Err("Sigma rule title must be a string".into()),
    };
    Kind::List.check(get("scope"), "scope")?;
    Kind::Str.check(get("license"), "license")?;
    Ok(attributes)
}

/// The value of the mapping's entry whose key is the string `name`.
fn entry<'a>(entries: &'a [(Written, Written)], name: &str) -> Option<Py<'a>> {
    entries
        .iter()
        .find(|(key, _)| matches!(resolve(key), Py::Str(key) if key == name))
        .map(|(_, v)| resolve(v))
}

/// The type an attribute must have when it is there (and not null).
#[derive(Clone, Copy)]
enum Kind {
    List,
    Str,
}

impl Kind {
    fn check(self, value: Option<Py<'_>>, name: &str) -> Result<(), String> {
        match (self, value) {
            (_, None | Some(Py::None)) | (Kind::List, Some(Py::List(_))) | (Kind::Str, Some(Py::Str(_))) => {
                Ok(())
            }
            (Kind::List, Some(_)) => Err(format!("Sigma rule {name} must be a list")),
            (Kind::Str, Some(_)) => Err(format!("Sigma rule {name} must be a string")),
        }
    }
}

/// One item of `related`, as `SigmaRelated.from_dict` reads it.
fn related_item(item: &Written) -> Result<(), String> {
    let Py::Dict(entries) = resolve(item) else {
        return Err("Sigma related items must be maps with an id and type field".into());
    };
    let get = |name: &str| entry(entries, name);
    let (Some(id), Some(kind)) = (get("id"), get("type")) else {
        let missing = if get("id").is_none() { "an id" } else { "a type" };
        return Err(format!("Sigma related must have {missing} field"));
    };
    match id {
        Py::Str(id) if is_python_uuid(id) => {}
        Py::Str(_) => return Err("Sigma related identifier must be an UUID".into()),
        _ => return Err("Sigma related identifier must be a string UUID".into()),
    }
    match kind {
        Py::Str(kind)
            if ["CORRELATION", "DERIVED", "MERGED", "OBSOLETE", "RENAMED", "SIMILAR"]
                .contains(&kind.to_uppercase().as_str()) =>
        {
            Ok(())
        }
        Py::Str(kind) => Err(format!("{kind} is not a Sigma related valid type")),
        _ => Err("Sigma related type must be a string".into()),
    }
}

/// `date` or `modified`, as pySigma's `get_rule_as_date` takes it: a date PyYAML made, or a
/// text of the form `yyyy-mm-dd` or `yyyy/m/d` (years 1000 to 3999) that is a date.
fn date<'a>(value: Option<Py<'a>>, name: &str) -> Result<Option<&'a str>, String> {
    let text = match value {
        None | Some(Py::None) => return Ok(None),
        Some(Py::Timestamp(text)) => return Ok(Some(text)),
        Some(Py::Str(text)) => Some(text),
        Some(_) => None,
    };
    static FORMS: LazyLock<[Regex; 2]> = LazyLock::new(|| {
        [
            Regex::new(r"^([1-3][0-9][0-9][0-9])-([01][0-9])-([0-3][0-9])$").expect("a valid pattern"),
            Regex::new(r"^([1-3][0-9][0-9][0-9])/([01]?[0-9])/([0-3]?[0-9])$").expect("a valid pattern"),
        ]
    });
    let valid = text.filter(|text| {
        FORMS.iter().find_map(|form| form.captures(text)).is_some_and(|parts| {
            let number = |i: usize| parts[i].parse::<u32>().unwrap_or(0);
            is_date(number(1), number(2), number(3))
        })
    });
    match valid {
        Some(text) => Ok(Some(text)),
        // pySigma prints the value as Python does; a text as it is.
        None => Err(format!("Rule {name} '{}' is invalid, use yyyy-mm-dd", text.unwrap_or("…"))),
    }
}

/// Whether Python's `uuid.UUID(text)` takes `text`: `urn:` and `uuid:` taken out, braces at
/// either end stripped, hyphens taken out, then 32 characters that `int(text, 16)` reads.
fn is_python_uuid(text: &str) -> bool {
    let hex = text.replace("urn:", "").replace("uuid:", "");
    let hex = hex.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    hex.chars().count() == 32 && python_hex_int(&hex)
}

/// Whether Python's `int(text, 16)` reads `text` as a number: whitespace around it, a sign,
/// a `0x` prefix, hex digits with single underscores between them (and one after the prefix).
/// Python also reads digits of other scripts (`٣`); those are refused here.
fn python_hex_int(text: &str) -> bool {
    let text = text.trim_matches(is_python_space);
    let text = text.strip_prefix(['+', '-']).unwrap_or(text);
    let text = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(rest) => rest.strip_prefix('_').unwrap_or(rest),
        None => text,
    };
    !text.is_empty()
        && text.split('_').all(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Python's `str.isspace`: Unicode's white space and the four ASCII separators.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> Written {
        super::super::yaml::load(text).expect("YAML").1.expect("a document")
    }

    /// A valid rule with `extra` lines added (replacing what they name).
    fn rule(extra: &str) -> String {
        let mut lines = vec![
            ("title", "title: A rule"),
            ("id", "id: 5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a11"),
            ("logsource", "logsource: {category: process_creation, product: windows}"),
            ("detection", "detection: {sel: {Image: x}, condition: sel}"),
        ];
        for line in extra.lines() {
            let key = line.split(':').next().unwrap();
            lines.retain(|(k, _)| *k != key);
            lines.push((key, line));
        }
        lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    fn verdict(extra: &str) -> Result<(), String> {
        let text = rule(extra);
        check(&written(&text)).map(|_| ())
    }

    #[test]
    fn attributes_are_refused_where_pysigma_refuses_them_and_read_where_it_reads_them() {
        let accepted = [
            "level: High",
            "level: CRITICAL",
            "level:",
            "id: '{5AD0E5B5-6A3E-4E57-B3E6-8B8D4F0A4A11}'",
            "id: urn:uuid:5ad0e5b56a3e4e57b3e68b8d4f0a4a11",
            "id: 5ad0e5b56a3e4e57-b3e6-8b8d4f0a4a11",
            "id: ' 0x5ad0e5b56a3e4e57b3e68b8d4f0a4'",
            "id: +5ad0e5b56a3e4e57b3e68b8d4f0a4a1",
            "date: 2024-02-29",
            "date: 2024/2/9",
            "date: '2024-01-31'",
            "modified: 2024-01-31 10:00:00",
            "modified: 2024-1-3T10:00:00.5+02:00",
            "tags: [attack.execution, 'cve.2021.1']",
            "tags:",
            "description: 'yes'",
            "author: 0o17",
            "related: [{id: 5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a11, type: Derived}]",
            "name: a_name",
            "falsepositives: [unknown]",
            "license: DRL-1.1",
        ];
        for extra in accepted {
            assert_eq!(verdict(extra), Ok(()), "{extra}");
        }
        let refused = [
            ("level: severe", "'severe' is not a valid Sigma rule level"),
            ("level: [high]", "Sigma rule level must be a string"),
            ("level: yes", "Sigma rule level must be a string"),
            ("id: not-a-uuid", "Sigma rule identifier must be an UUID"),
            ("id: 5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a1", "Sigma rule identifier must be an UUID"),
            ("id: 5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a1g", "Sigma rule identifier must be an UUID"),
            ("id: 12345", "Sigma rule identifier must be an UUID"),
            ("date: 2024-02-30", "PyYAML cannot load the plain scalar \"2024-02-30\""),
            ("date: '2024-02-30'", "Rule date '2024-02-30' is invalid, use yyyy-mm-dd"),
            ("date: 2024-1-5", "Rule date '2024-1-5' is invalid, use yyyy-mm-dd"),
            (
                "modified: '2024-01-31 10:00:00'",
                "Rule modified '2024-01-31 10:00:00' is invalid, use yyyy-mm-dd",
            ),
            ("modified: 0999/1/1", "Rule modified '0999/1/1' is invalid, use yyyy-mm-dd"),
            ("tags: attack.execution", "Sigma tags fields must be a list"),
            (
                "tags: [execution]",
                "Sigma tag must start with namespace separated with dot from remaining tag.",
            ),
            ("tags: [1.5]", "Sigma rule tags must be a list of strings"),
            ("description: yes", "Sigma rule description must be a string"),
            ("description: 2024-01-01", "Sigma rule description must be a string"),
            ("author: [a, b]", "Sigma rule author must be a string"),
            ("references: https://example.com", "Sigma rule references must be a list"),
            ("title: 1_000", "Sigma rule title must be a string"),
            ("related: {id: x}", "Sigma rule related must be a list"),
            ("related: [{id: 5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a11}]", "Sigma related must have a type field"),
            (
                "related: [{id: 5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a11, type: copied}]",
                "copied is not a Sigma related valid type",
            ),
            ("name: ''", "Sigma rule name must not be empty"),
            ("taxonomy: 5", "Sigma rule taxonomy must be a string"),
            ("scope: server", "Sigma rule scope must be a list"),
            ("author: <<", "PyYAML cannot load the plain scalar \"<<\""),
            ("<<: {author: x}", "YAML merge keys (`<<`) are not supported"),
            ("detection: {sel: {Image: 0x_}, condition: sel}", "PyYAML cannot load the plain scalar \"0x_\""),
        ];
        for (extra, error) in refused {
            assert_eq!(verdict(extra), Err(error.to_owned()), "{extra}");
        }
        let long = format!("title: {}", "t".repeat(257));
        assert_eq!(verdict(&long), Err("Sigma rule title length must not exceed 256 characters".into()));
        assert_eq!(verdict(&format!("title: {}", "ſ".repeat(256))), Ok(()));
    }

    #[test]
    fn the_attributes_the_compiler_reads_are_their_texts_as_written() {
        let text = rule("level: High\ndate: 2024-01-31\nmodified: 2024/2/9\ndescription: 'no'\ntitle: 0o17");
        let written = written(&text);
        let attributes = check(&written).unwrap();
        assert_eq!(
            attributes,
            Attributes {
                title: "0o17",
                id: Some("5ad0e5b5-6a3e-4e57-b3e6-8b8d4f0a4a11"),
                level: Some(Level::High),
                description: Some("no"),
                date: Some("2024-01-31"),
                modified: Some("2024/2/9"),
            }
        );
    }
}
