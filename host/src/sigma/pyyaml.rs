//! A rule's YAML read as pySigma reads it: with PyYAML's safe loader, which resolves a plain
//! scalar as YAML 1.1 does (`yes` is true, `010` is 8, `1_000` is 1000, `2024-01-01` a date,
//! `0o17` a string), where the YAML loader here resolves it as YAML 1.2 does (`010` is 10,
//! `yes` and `1_000` strings, `0o17` is 15). A value's type decides what it matches and which
//! modifiers it takes, so the rule is compiled from [`document`], the tree PyYAML would build,
//! made from the rule as written ([`Written`]).

use std::sync::LazyLock;

use regex::Regex;
use yaml_rust2::Yaml;

use super::yaml::Written;

/// Whether year, month and day make a date of the proleptic Gregorian calendar, as Python's
/// `datetime.date` takes it (years 1 to 9999).
pub(super) fn is_date(year: u32, month: u32, day: u32) -> bool {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=9999).contains(&year) && (1..=days).contains(&day)
}

/// What PyYAML's safe loader makes of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Py<'a> {
    None,
    Bool,
    Int,
    Float,
    /// A date, or a date and a time, as written.
    Timestamp(&'a str),
    Str(&'a str),
    List(&'a [Written]),
    Dict(&'a [(Written, Written)]),
    /// A scalar PyYAML resolves to a type it then cannot construct (a timestamp that is no
    /// date, `0x_`): the rule does not load.
    Unconstructible(&'a str),
    /// `=`, which the safe loader has no constructor for.
    Value,
    /// `<<`: see [`resolve`].
    Merge,
}

/// The node's type, as PyYAML's resolver (`yaml/resolver.py`) and safe constructor make it.
pub(super) fn resolve(node: &Written) -> Py<'_> {
    let text = match node {
        Written::Sequence(items) => return Py::List(items),
        Written::Mapping(entries) => return Py::Dict(entries),
        Written::Scalar { text, plain: false } => return Py::Str(text),
        Written::Scalar { text, plain: true } => text.as_str(),
    };
    static BOOL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
            .expect("a valid pattern")
    });
    static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
            r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
            r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
            r"|[-+]?\.(?:inf|Inf|INF)",
            r"|\.(?:nan|NaN|NAN))$"
        ))
        .expect("a valid pattern")
    });
    static INT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(?:[-+]?0b[0-1_]+",
            r"|[-+]?0[0-7_]+",
            r"|[-+]?(?:0|[1-9][0-9_]*)",
            r"|[-+]?0x[0-9a-fA-F_]+",
            r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
        ))
        .expect("a valid pattern")
    });
    static NULL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("a valid pattern"));
    static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(?:(?P<ymd>[0-9]{4})-(?P<md>[0-9]{2})-(?P<dd>[0-9]{2})",
            r"|(?P<year>[0-9]{4})-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)",
            r"(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?)",
            r":(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])(?:\.[0-9]*)?",
            r"(?:[ \t]*(?:Z|(?P<sign>[-+])(?P<tzh>[0-9][0-9]?)(?::(?P<tzm>[0-9][0-9]))?))?)$"
        ))
        .expect("a valid pattern")
    });
    // PyYAML tries only the resolvers of the scalar's first character, in this order; most
    // of a rule's scalars (`\\cmd.exe`, `selection`) start with none of theirs.
    if !text.is_empty()
        && !text.starts_with(['y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O', '~', '<', '=', '-', '+', '.'])
        && !text.starts_with(|c: char| c.is_ascii_digit())
    {
        return Py::Str(text);
    }
    if BOOL.is_match(text) {
        return Py::Bool;
    }
    if FLOAT.is_match(text) {
        return Py::Float;
    }
    if INT.is_match(text) {
        // Its constructor reads the digits after `0b` or `0x` with `_` taken out: none is an
        // error.
        let digits = text.trim_start_matches(['-', '+']).replace('_', "");
        let empty = ["0b", "0x"].iter().any(|prefix| digits.strip_prefix(prefix).is_some_and(str::is_empty));
        return if empty { Py::Unconstructible(text) } else { Py::Int };
    }
    if text == "<<" {
        // A merge key: the safe loader merges a mapping where it is a key, and has no
        // constructor for it anywhere else.
        return Py::Merge;
    }
    if NULL.is_match(text) {
        return Py::None;
    }
    if let Some(parts) = TIMESTAMP.captures(text) {
        let number =
            |name: &str| parts.name(name).map_or(0, |m| m.as_str().parse::<u32>().unwrap_or(u32::MAX));
        let valid = match parts.name("ymd") {
            Some(_) => is_date(number("ymd"), number("md"), number("dd")),
            None => {
                let offset = number("tzh").saturating_mul(60).saturating_add(number("tzm"));
                is_date(number("year"), number("month"), number("day"))
                    && number("hour") < 24
                    && number("minute") < 60
                    && number("second") < 60
                    && offset < 24 * 60
            }
        };
        return if valid { Py::Timestamp(text) } else { Py::Unconstructible(text) };
    }
    if text == "=" {
        return Py::Value;
    }
    Py::Str(text)
}

/// Whether PyYAML constructs every scalar of the document (as it does before pySigma reads it).
pub(super) fn constructible(node: &Written) -> Result<(), String> {
    match node {
        Written::Sequence(items) => items.iter().try_for_each(constructible),
        Written::Mapping(entries) => entries.iter().try_for_each(|(key, value)| {
            if resolve(key) == Py::Merge {
                // PyYAML merges the mapping named; the tree read here does not, so the rule's
                // attributes could not be told.
                return Err("YAML merge keys (`<<`) are not supported".into());
            }
            constructible(key)?;
            constructible(value)
        }),
        Written::Scalar { text, .. } => match resolve(node) {
            Py::Unconstructible(_) | Py::Value | Py::Merge => {
                Err(format!("PyYAML cannot load the plain scalar {text:?}"))
            }
            _ => Ok(()),
        },
    }
}

/// The rule as PyYAML builds it, in the loader's tree: its integers as Python's, its floats
/// as Python prints them (`Yaml::Real("1000.0")`), `yes` and `on` booleans. A date is a string
/// where it is an attribute, and an error in the detection (pySigma has no Sigma type for a
/// date); so is a number Python has but this tree cannot hold (`.inf`, past 64 bits).
pub(super) fn document(rule: &Written) -> Result<Yaml, String> {
    build(rule, Place::Attributes)
}

/// Where a node is: dates are read as text in attributes, refused in the detection.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Attributes,
    Detection,
}

fn build(node: &Written, place: Place) -> Result<Yaml, String> {
    Ok(match node {
        Written::Sequence(items) => {
            Yaml::Array(items.iter().map(|i| build(i, place)).collect::<Result<_, _>>()?)
        }
        Written::Mapping(entries) => {
            let mut hash = yaml_rust2::yaml::Hash::new();
            for (key, value) in entries {
                let key = build(key, place)?;
                let inner = match (&key, place) {
                    (Yaml::String(name), Place::Attributes) if name == "detection" => Place::Detection,
                    _ => place,
                };
                let value = build(value, inner)?;
                // PyYAML's loader as pySigma sets it up refuses a key given twice, as the
                // values it makes (`1` and `0x1` are one key).
                if hash.insert(key.clone(), value).is_some() {
                    return Err(format!("Duplicate key '{}'", python_str(&key)));
                }
            }
            Yaml::Hash(hash)
        }
        Written::Scalar { text, .. } => match resolve(node) {
            Py::None => Yaml::Null,
            Py::Bool => Yaml::Boolean(matches!(text.to_ascii_lowercase().as_str(), "yes" | "true" | "on")),
            Py::Int => match python_int(text) {
                Some(value) => Yaml::Integer(value),
                None => return Err(format!("the integer {text} is past the 64 bits this reads")),
            },
            Py::Float => match python_float(text) {
                Some(value) => Yaml::Real(value),
                None => return Err(format!("{text} is not a number pySigma takes")),
            },
            Py::Timestamp(text) if place == Place::Attributes => Yaml::String(text.to_owned()),
            Py::Timestamp(text) => {
                return Err(format!(
                    "{text} is a date to YAML 1.1, which pySigma has no Sigma type for: quote it to match it as text"
                ));
            }
            Py::Str(text) => Yaml::String(text.to_owned()),
            Py::Unconstructible(_) | Py::Value | Py::Merge | Py::List(_) | Py::Dict(_) => {
                // Refused by `constructible` first; a scalar is neither list nor mapping.
                return Err(format!("PyYAML cannot load the plain scalar {text:?}"));
            }
        },
    })
}

/// The text pySigma makes of a number in a detection (`SigmaNumber`: an integer when the
/// number is one, as a float and as an integer alike, else the float): `8` for `010`, `1000` for
/// `1.0e+3`, `1.5` for `1.50`. `None` for what it is not: a number past 128 bits.
pub(super) fn sigma_number(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Integer(i) => {
            let float = *i as f64;
            Some(if float as i128 == i128::from(*i) { i.to_string() } else { python_repr(float) })
        }
        Yaml::Real(text) => {
            let float: f64 = text.parse().ok()?;
            if float.fract() != 0.0 {
                Some(python_repr(float))
            } else if float.abs() < 1e38 {
                Some((float as i128).to_string())
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A key as Python prints it in pySigma's error.
fn python_str(key: &Yaml) -> String {
    match key {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => if *b { "True" } else { "False" }.into(),
        Yaml::Null => "None".into(),
        other => format!("{other:?}"),
    }
}

/// A plain scalar PyYAML resolves as an integer, as its constructor reads it
/// (`construct_yaml_int`): `_` ignored, a sign, then `0b` binary, `0x` hex, a leading `0`
/// octal, `:` base 60, or decimal. `None` past 64 bits.
fn python_int(text: &str) -> Option<i64> {
    let value = text.replace('_', "");
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(&value)),
    };
    let magnitude: i128 = if digits == "0" {
        0
    } else if let Some(binary) = digits.strip_prefix("0b") {
        i128::from_str_radix(binary, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.starts_with('0') {
        i128::from_str_radix(digits, 8).ok()?
    } else if digits.contains(':') {
        digits.split(':').try_fold(0i128, |sum, part| sum.checked_mul(60)?.checked_add(part.parse().ok()?))?
    } else {
        digits.parse().ok()?
    };
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// A plain scalar PyYAML resolves as a float, as Python prints it (`repr`): `1_000.50` is
/// `1000.5`, `1.0e+20` is `1e+20`. `None` for infinities and NaN, which pySigma refuses.
fn python_float(text: &str) -> Option<String> {
    let value = text.replace('_', "").to_lowercase();
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(&value)),
    };
    let magnitude: f64 = if digits.contains(':') {
        digits.split(':').try_fold(0f64, |sum, part| Some(sum * 60.0 + part.parse::<f64>().ok()?))?
    } else {
        digits.parse().ok()?
    };
    let number = if negative { -magnitude } else { magnitude };
    number.is_finite().then(|| python_repr(number))
}

/// Python's `repr` of a finite float: the shortest digits that read back as it, in positional
/// notation from 1e-4 up to 1e16 (with `.0` when whole), in scientific notation outside
/// (`1e+16`, `1.5e-07`).
fn python_repr(number: f64) -> String {
    // Rust's `{:e}` gives the same shortest digits: `1.5e-7`, `1e16`.
    let scientific = format!("{number:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a number");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if number == 0.0 {
        return format!("{sign}0.0");
    }
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{sign}{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point as usize], &digits[point as usize..])
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        format!("{sign}{first}{fraction}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_pythons() {
        for (text, int) in
            [("010", 8), ("0x1F", 31), ("0b101", 5), ("1_000", 1000), ("1:30", 90), ("-5", -5), ("+0", 0)]
        {
            assert_eq!(python_int(text), Some(int), "{text}");
        }
        assert_eq!(python_int("99999999999999999999"), None);
        for (text, repr) in [
            ("1.50", "1.5"),
            ("1.0e+3", "1000.0"),
            ("1_000.5", "1000.5"),
            ("1.5e-7", "1.5e-07"),
            ("100000000000000000.0", "1e+17"),
            ("9999999999999999.0", "1e+16"),
            ("1234567890123456.0", "1234567890123456.0"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("-2.5", "-2.5"),
            ("-0.0", "-0.0"),
            ("1:30.5", "90.5"),
            (".5", "0.5"),
            ("1.", "1.0"),
        ] {
            assert_eq!(python_float(text).as_deref(), Some(repr), "{text}");
        }
        assert_eq!(python_float(".inf"), None);
        assert_eq!(python_float(".NaN"), None);
        // pySigma's numbers: integral floats as integers, integers past a float's precision
        // as the float.
        for (value, text) in [
            (Yaml::Integer(8), Some("8")),
            (Yaml::Integer(-5), Some("-5")),
            (Yaml::Integer(9_007_199_254_740_993), Some("9007199254740992.0")),
            (Yaml::Integer(100_000_000_000_000_001), Some("1e+17")),
            (Yaml::Real("1000.0".into()), Some("1000")),
            (Yaml::Real("1e+17".into()), Some("100000000000000000")),
            (Yaml::Real("-0.0".into()), Some("0")),
            (Yaml::Real("1.5".into()), Some("1.5")),
            (Yaml::Real("1.5e-07".into()), Some("1.5e-07")),
            (Yaml::Real("1e+300".into()), None),
        ] {
            assert_eq!(sigma_number(&value).as_deref(), text, "{value:?}");
        }
    }

    #[test]
    fn the_document_has_pyyamls_types() {
        let text = "a: [yes, No, on, OFF, 'yes', 010, 1_000, 0o17, 1.50, ~, '', 2024-01-01]\ndetection: {x: 2024-01-01}\n";
        let written = super::super::yaml::load(text).unwrap().1.unwrap();
        let Err(error) = document(&written) else { panic!("a date in the detection") };
        assert!(error.starts_with("2024-01-01 is a date to YAML 1.1"), "{error}");
        let text = text.replace("{x: 2024-01-01}", "{x: '2024-01-01'}");
        let written = super::super::yaml::load(&text).unwrap().1.unwrap();
        let document = document(&written).unwrap();
        let values: Vec<Yaml> = document["a"].as_vec().unwrap().clone();
        assert_eq!(
            values,
            [
                Yaml::Boolean(true),
                Yaml::Boolean(false),
                Yaml::Boolean(true),
                Yaml::Boolean(false),
                Yaml::String("yes".into()),
                Yaml::Integer(8),
                Yaml::Integer(1000),
                Yaml::String("0o17".into()),
                Yaml::Real("1.5".into()),
                Yaml::Null,
                Yaml::String(String::new()),
                Yaml::String("2024-01-01".into()),
            ]
        );
        let twice = super::super::yaml::load("a: {010: x, 8: y}\n").unwrap().1.unwrap();
        assert_eq!(super::document(&twice), Err("Duplicate key '8'".into()));
    }
}
