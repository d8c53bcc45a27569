//! What a regular expression's every match holds, so that the matcher runs it only on a
//! value that may match: texts, which its prefilter looks for, and long runs of one class.
//!
//! The `regex-syntax` extractor gives the texts every match *starts* with; many of the
//! catalog's expressions start with something common (`\.exe`, `\s`, `cmd`) and name what is
//! rare further in (`werfaultsecure\.exe`, `clip`). Every literal part of an expression that
//! each match must pass through is a required set of texts: the best (the longest shortest
//! text) guards the rule, and every set must have a text found before the expression runs.
//! An expression with no literal may still require a long run of one class (the SNAKE
//! rule's 64 hexadecimal digits), which a skipping read of the value settles. Measured on
//! the shared logs' real process creations, the expressions took about a fifth of the
//! catalog's matcher before, and a fortieth after.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::ir::folded;

/// The most texts a required set holds; more are not worth a search (and an expression's
/// set is then left unknown).
const MAX_TEXTS: usize = 16;

/// The shortest text worth a search where an expression has one.
const MIN_TEXT: usize = 3;

/// What every match of an expression is known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Required {
    /// The match is one of these texts (folded), exactly.
    Exact(Vec<String>),
    /// The match contains one of these texts (folded); empty when none is known.
    Contains(Vec<String>),
}

/// The most required sets [`required_texts`] gives.
const MAX_SETS: usize = 4;

/// Sets of texts (folded, deduplicated, at most [`MAX_TEXTS`] a set, at most [`MAX_SETS`]
/// sets, the best first) such that wherever `hir` matches a value, the folded value holds a
/// text of each set; empty when none is known.
///
/// The texts are of [`MIN_TEXT`] bytes or more where the expression has such a set. Where it
/// has none, shorter ones are taken rather than nothing, but no set with a character that
/// nearly every value holds alone (see [`is_in_most_values`]): without a set, a rule made of
/// such expressions is evaluated on every event, and two of the catalog's ran their
/// expressions over every command line, though few hold `` ` `` or `. `
/// (`\w+`(?:\w+|-|.)`…`, `\\[a-zA-Z0-9]{1,32}\.[a-zA-Z0-9]{1,6}\.[ "']`).
///
/// Folding maps each character on its own, so a value that holds a text holds it folded
/// after folding; a case-insensitive literal is a class per character, whose every case is
/// folded (`s`, `S` and the long `ſ` give `s` and `ſ`). Several sets come from the parts of
/// an expression that is a sequence: `echo.*clip` holds `echo` and `clip`, and a value with
/// `echo` alone is settled without running the expression.
pub fn required_texts(hir: &Hir) -> Vec<Vec<String>> {
    let mut sets = match hir.kind() {
        HirKind::Capture(capture) => return required_texts(&capture.sub),
        HirKind::Concat(parts) => {
            let mut sets = Vec::new();
            if let Required::Exact(texts) = concat(parts, &mut sets) {
                sets.push(texts);
            }
            sets
        }
        _ => vec![match required(hir) {
            Required::Exact(texts) | Required::Contains(texts) => texts,
        }],
    };
    let long_enough = |set: &Vec<String>| score(set) >= MIN_TEXT;
    if sets.iter().any(long_enough) {
        sets.retain(long_enough);
    } else {
        sets.retain(|set| score(set) > 0 && !set.iter().any(|text| is_in_most_values(text)));
    }
    sets.sort_by_key(|set| (std::cmp::Reverse(score(set)), set.len()));
    // Each set once, where it first comes (equal sets need not be next to each other).
    let mut kept: Vec<Vec<String>> = Vec::with_capacity(sets.len());
    for set in sets {
        if kept.len() < MAX_SETS && !kept.contains(&set) {
            kept.push(set);
        }
    }
    kept
}

/// Whether `text` is a character nearly every value holds: an ASCII letter, digit or space,
/// or a character of paths and arguments.
fn is_in_most_values(text: &str) -> bool {
    matches!(text.as_bytes(), [b] if b.is_ascii_alphanumeric() || b.is_ascii_whitespace() || br#"\/.-:"',=_"#.contains(b))
}

/// The shortest run of one class worth a scan of its own: `[a-f0-9]{64}` in a value with no
/// such run settles the expression with a read of the value's bytes, where the expression's
/// search (no literal to look for) cost twice that natively and more in Wasm.
const MIN_RUN: u32 = 16;

/// Every match of an expression holds `len` bytes in a row of `bytes` (ASCII only): a value
/// without such a run does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredRun {
    /// Which bytes are of the class (none past ASCII).
    bytes: [bool; 256],
    len: u32,
}

impl RequiredRun {
    /// Whether `value` holds the run. A candidate run is read from its end backwards: a byte
    /// out of the class moves the next candidate to end a run's length after it, so that a
    /// byte is read once at most and most are skipped (a byte loop over every value cost
    /// more than the expression's own search).
    pub fn in_value(&self, value: &[u8]) -> bool {
        let len = self.len as usize;
        let mut end = len - 1;
        while end < value.len() {
            match (0..len).find(|&back| !self.bytes[usize::from(value[end - back])]) {
                None => return true,
                Some(back) => end += len - back,
            }
        }
        false
    }
}

/// The longest run of [`MIN_RUN`] or more characters of one ASCII class that every match of
/// `hir` holds (a part of the sequence it is, repeated that many times at least); `None`
/// when there is none. The expression runs on the value as it is (not folded), and so is the
/// run read; a case-insensitive class holds its every case already.
pub fn required_run(hir: &Hir) -> Option<RequiredRun> {
    let parts = match hir.kind() {
        HirKind::Capture(capture) => return required_run(&capture.sub),
        HirKind::Concat(parts) => parts.as_slice(),
        _ => std::slice::from_ref(hir),
    };
    parts
        .iter()
        .filter_map(|part| {
            let HirKind::Repetition(repetition) = part.kind() else { return None };
            let HirKind::Class(class) = repetition.sub.kind() else { return None };
            let mut bytes = [false; 256];
            let ranges: Vec<(u32, u32)> = match class {
                Class::Unicode(c) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
                Class::Bytes(c) => {
                    c.ranges().iter().map(|r| (u32::from(r.start()), u32::from(r.end()))).collect()
                }
            };
            for (start, end) in ranges {
                if end >= 128 {
                    return None;
                }
                (start..=end).for_each(|b| bytes[b as usize] = true);
            }
            (repetition.min >= MIN_RUN).then_some(RequiredRun { bytes, len: repetition.min })
        })
        .max_by_key(|run| run.len)
}

/// An expression that is one class repeated (`.{1000,}`, `[0-9a-f]{32}`): in a search (not
/// anchored) it matches exactly where the value holds `min` characters of the class in a
/// row, whatever its most, which a count over the value's characters tells. The expression
/// itself is dear where `min` is large: `.{1000,}` compiles to an automaton of a thousand
/// steps, whose lazy DFA grew a state per character of a long command line and, its cache
/// full, started again on the next (a twentieth of the catalog's pack over real records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRun {
    /// Whether each ASCII character is of the class: most values' characters are read by a
    /// lookup, byte by byte.
    ascii: [bool; 128],
    /// The class's characters, as ranges in order.
    ranges: Vec<(char, char)>,
    min: u32,
}

impl ClassRun {
    fn new(ranges: Vec<(char, char)>, min: u32) -> ClassRun {
        let mut run = ClassRun { ascii: [false; 128], ranges, min };
        for b in 0..128u8 {
            run.ascii[usize::from(b)] = run.holds(char::from(b));
        }
        run
    }

    /// Whether `value` holds `min` characters of the class in a row: the expression's verdict.
    pub fn in_value(&self, value: &str) -> bool {
        let min = self.min as usize;
        if value.len() < min {
            return false;
        }
        let (bytes, mut at, mut run) = (value.as_bytes(), 0, 0);
        while at < bytes.len() {
            let of_class = match bytes[at] {
                b @ 0..128 => {
                    at += 1;
                    self.ascii[usize::from(b)]
                }
                _ => {
                    let c = value[at..].chars().next().expect("a character starts here");
                    at += c.len_utf8();
                    self.holds(c)
                }
            };
            run = if of_class { run + 1 } else { 0 };
            if run >= min {
                return true;
            }
        }
        false
    }

    fn holds(&self, c: char) -> bool {
        let after = self.ranges.partition_point(|&(start, _)| start <= c);
        after > 0 && c <= self.ranges[after - 1].1
    }
}

/// The [`ClassRun`] that `hir` is, if it is one class of characters repeated at least once
/// (possibly in a group).
pub fn class_run(hir: &Hir) -> Option<ClassRun> {
    match hir.kind() {
        HirKind::Capture(capture) => class_run(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => match repetition.sub.kind() {
            HirKind::Class(Class::Unicode(class)) => Some(ClassRun::new(
                class.ranges().iter().map(|r| (r.start(), r.end())).collect(),
                repetition.min,
            )),
            _ => None,
        },
        _ => None,
    }
}

/// How good a required set is to search for: the length of its shortest text (0 for an
/// empty set, which says nothing).
fn score(texts: &[String]) -> usize {
    texts.iter().map(String::len).min().unwrap_or(0)
}

/// The better of two required sets: the longer shortest text, then the fewer texts.
fn better(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    if (score(&b), std::cmp::Reverse(b.len())) > (score(&a), std::cmp::Reverse(a.len())) { b } else { a }
}

fn deduplicated(mut texts: Vec<String>) -> Vec<String> {
    texts.sort_unstable();
    texts.dedup();
    texts
}

fn required(hir: &Hir) -> Required {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Required::Exact(vec![String::new()]),
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) => Required::Exact(vec![folded(text)]),
            Err(_) => Required::Contains(Vec::new()),
        },
        HirKind::Class(class) => match class_texts(class) {
            Some(texts) => Required::Exact(texts),
            None => Required::Contains(Vec::new()),
        },
        HirKind::Capture(capture) => required(&capture.sub),
        HirKind::Repetition(repetition) => match (repetition.min, repetition.max) {
            (1, Some(1)) => required(&repetition.sub),
            // Once at least: what the repeated part holds, a match holds.
            (1.., _) => Required::Contains(match required(&repetition.sub) {
                Required::Exact(texts) | Required::Contains(texts) => texts,
            }),
            (0, _) => Required::Contains(Vec::new()),
        },
        HirKind::Concat(parts) => concat(parts, &mut Vec::new()),
        HirKind::Alternation(branches) => alternation(branches),
    }
}

/// A concatenation: adjacent exact parts make longer exact texts (their products, while
/// few); each run of them and each other part's set is required, and all are put in
/// `candidates`. The concatenation is exact when every part is.
fn concat(parts: &[Hir], candidates: &mut Vec<Vec<String>>) -> Required {
    let mut run = vec![String::new()];
    let mut exact = true;
    for part in parts {
        match required(part) {
            Required::Exact(texts) => {
                if run.len() * texts.len() > MAX_TEXTS {
                    candidates.push(std::mem::replace(&mut run, texts));
                    exact = false;
                } else {
                    run = deduplicated(
                        run.iter()
                            .flat_map(|head| texts.iter().map(move |tail| format!("{head}{tail}")))
                            .collect(),
                    );
                }
            }
            Required::Contains(texts) => {
                candidates.push(std::mem::replace(&mut run, vec![String::new()]));
                candidates.push(texts);
                exact = false;
            }
        }
    }
    if exact {
        Required::Exact(run)
    } else {
        candidates.push(run);
        Required::Contains(candidates.iter().fold(Vec::new(), |best, set| better(best, set.clone())))
    }
}

/// An alternation: every branch's set together (a match passes through one branch), when
/// each branch has one and they are few.
fn alternation(branches: &[Hir]) -> Required {
    let mut all = Vec::new();
    let mut exact = true;
    for branch in branches {
        let texts = match required(branch) {
            Required::Exact(texts) => texts,
            Required::Contains(texts) => {
                exact = false;
                texts
            }
        };
        if texts.is_empty() {
            return Required::Contains(Vec::new());
        }
        all.extend(texts);
    }
    let all = deduplicated(all);
    match (exact, all.len() <= MAX_TEXTS) {
        (true, true) => Required::Exact(all),
        (false, true) => Required::Contains(all),
        (_, false) => Required::Contains(Vec::new()),
    }
}

/// The characters of a small class, each folded; `None` for a larger one.
fn class_texts(class: &Class) -> Option<Vec<String>> {
    let mut texts = Vec::new();
    match class {
        Class::Unicode(class) => {
            for range in class.ranges() {
                if texts.len() + (range.end() as usize - range.start() as usize) >= MAX_TEXTS {
                    return None;
                }
                texts.extend((range.start()..=range.end()).map(|c| folded(c.encode_utf8(&mut [0; 4]))));
            }
        }
        Class::Bytes(class) => {
            for range in class.ranges() {
                // A byte past ASCII is part of a character, not one.
                if !range.end().is_ascii()
                    || texts.len() + usize::from(range.end() - range.start()) >= MAX_TEXTS
                {
                    return None;
                }
                texts.extend(
                    (range.start()..=range.end()).map(|b| folded(char::from(b).encode_utf8(&mut [0; 4]))),
                );
            }
        }
    }
    Some(deduplicated(texts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of the catalog's expressions, as its rule states it.
    const WERFAULT: &str = r#"(?i)\.exe[\"\']?\s+[^\"]{0,64}werfaultsecure\.exe[\"\']?\s+\d{2,10}"#;

    fn sets_of(pattern: &str, ignore_case: bool) -> Vec<Vec<String>> {
        let hir =
            regex_syntax::ParserBuilder::new().case_insensitive(ignore_case).build().parse(pattern).unwrap();
        required_texts(&hir)
    }

    /// The best set.
    fn texts_of(pattern: &str, ignore_case: bool) -> Option<Vec<String>> {
        sets_of(pattern, ignore_case).into_iter().next()
    }

    fn strings(texts: &[&str]) -> Option<Vec<String>> {
        Some(texts.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn a_sequence_requires_a_text_of_each_of_its_parts() {
        let sets = |pattern| sets_of(pattern, false).into_iter().map(|s| s.join("|")).collect::<Vec<_>>();
        assert_eq!(sets(r"(?i)echo.*clip.*&&.*(?:Clipboard|i`?n`?v`?o`?k`?e`?)"), ["echo", "clip"]);
        assert_eq!(
            sets(r#"cmd.{0,5}(?:/c|/r).+powershell.+(?:\$\{?input\}?|noexit).+\""#),
            ["powershell", "input|noexit", "cmd"]
        );
        assert_eq!(sets(r"(abcd)"), ["abcd"]);
        assert_eq!(sets(r"(?:x|y)"), Vec::<String>::new());
    }

    #[test]
    fn the_rarest_looking_literal_inside_is_required_not_only_the_prefix() {
        // The catalog's expressions that start with something common.
        assert_eq!(texts_of(WERFAULT, false), strings(&["werfaultsecure.exe", "werfaultſecure.exe"]));
        assert_eq!(
            texts_of(r"(?i)echo.*clip.*&&.*(?:Clipboard|i`?n`?v`?o`?k`?e`?)", false),
            strings(&["echo"])
        );
        assert_eq!(texts_of(r"net\s+stop SuperBackupMan", false), strings(&["stop superbackupman"]));
        // Alternatives: one of them is required.
        assert_eq!(texts_of(r"cmd.{0,5}(?:/c|/r).+powershell", false), strings(&["powershell"]));
        assert_eq!(
            texts_of(r"(?:certutil|bitsadmin)\.exe", false),
            strings(&["bitsadmin.exe", "certutil.exe"])
        );
        assert_eq!(texts_of(r"(?:ab|cd)(?:ef|gh)", false), strings(&["abef", "abgh", "cdef", "cdgh"]));
    }

    #[test]
    fn every_case_of_a_case_insensitive_literal_is_folded() {
        // `(?i)s` matches the long s, which folding keeps; the Kelvin sign folds to `k`.
        assert_eq!(texts_of("set.*x", true), strings(&["set", "ſet"]));
        assert_eq!(texts_of("kit", true), strings(&["kit"]));
    }

    #[test]
    fn nothing_is_required_where_a_match_may_avoid_it() {
        for pattern in [
            r"\s[a-fA-F0-9]{64}\s[a-fA-F0-9]{16}",
            r"(?:abcd)?ef?",
            r"abc|x",
            r"(?:abc)*",
            ".{1000,}",
            r"[a-z]{3}",
        ] {
            assert_eq!(texts_of(pattern, false), None, "{pattern}");
        }
        // Optional and repeated parts: what is required around them still is.
        assert_eq!(texts_of(r"(?:abc)?defg", false), strings(&["defg"]));
        assert_eq!(texts_of(r"(?:abcd)+x", false), strings(&["abcd"]));
    }

    #[test]
    fn shorter_texts_are_required_where_no_longer_ones_are_but_no_letter_digit_or_space_alone() {
        let sets = |pattern| sets_of(pattern, false).into_iter().map(|s| s.join("|")).collect::<Vec<_>>();
        // The catalog's expressions that made their rules evaluated on every event.
        assert_eq!(sets(r"\w+`(?:\w+|-|.)`[\w+|\s]"), ["`"]);
        assert_eq!(sets(r#"\\[a-zA-Z0-9]{1,32}\.[a-zA-Z0-9]{1,6}\.[ "']{1}"#), [r#". |."|.'"#]);
        assert_eq!(sets(r#""(?:\{\d\})+"\s*-f"#), ["-f", "{"]);
        assert_eq!(sets(r"(?i)\$\{`?e`?n`?v`?:`?p`?a`?t`?h`?\}"), ["${", "}"]);
        assert_eq!(sets(r"\s-\s*<"), ["<"]);
        // A letter, digit or space alone, or a character of paths and arguments, is in
        // nearly every value: not required, nor a set that holds one.
        assert_eq!(sets(r" [0-7]{7,13}"), Vec::<String>::new());
        assert_eq!(sets(r":[^\\]"), Vec::<String>::new());
        assert_eq!(sets(r"[-/–][Ee^]{1,2}\s"), Vec::<String>::new());
        // A set of three bytes or more is preferred to any shorter one, as before.
        assert_eq!(sets(r"ab.*-.*cde"), ["cde"]);
    }

    #[test]
    fn a_long_run_of_one_ascii_class_is_required() {
        let run =
            |pattern: &str| required_run(&regex_syntax::ParserBuilder::new().build().parse(pattern).unwrap());
        // The catalog's SNAKE installer rule: two hexadecimal arguments.
        let snake = run(r"\s[a-fA-F0-9]{64}\s[a-fA-F0-9]{16}").expect("a run of 64");
        assert_eq!(snake.len, 64);
        let hex = "0123456789abcdefABCDEF".repeat(3);
        assert!(snake.in_value(format!("jpsetup.exe {} x", &hex[..64]).as_bytes()));
        assert!(!snake.in_value(format!("jpsetup.exe {} x", &hex[..63]).as_bytes()));
        assert!(!snake.in_value(format!("{}g{}", &hex[..40], &hex[..40]).as_bytes()));
        for pattern in [r"[a-f]{8}", r"\w{64}", r"[a-f]*", r"(?:ab){20}", r"(?i)[a-z]{20}", r"x|[a-f]{20}"] {
            // Too short, not ASCII (`\w` and `(?i)k` hold other characters), or not a class.
            assert_eq!(run(pattern), None, "{pattern}");
        }
        assert_eq!(run(r"(?:[0-9]{20})").map(|r| r.len), Some(20));
    }

    /// A class repeated gives the expression's verdict on every value, as the expression
    /// does, and nothing else is taken for one.
    #[test]
    fn a_class_repeated_gives_the_verdict_of_the_expression() {
        let hir = |pattern: &str| regex_syntax::ParserBuilder::new().build().parse(pattern).unwrap();
        for pattern in ["abc", "[a-z]{3}x", "x?", "[a-z]*", ".{2}|x", r"\s[a-f]{4}"] {
            assert_eq!(class_run(&hir(pattern)), None, "{pattern}");
        }
        let mut draw = crate::Draw(0x5EED_0000_7777_0002);
        for pattern in [".{1000,}", ".{5,}", "(?s).{4,}", "([a-fé]{3,7})", r"\w{3}", "[^x]{2,3}?", "[ab]+"] {
            let run = class_run(&hir(pattern)).unwrap_or_else(|| panic!("{pattern} is a class repeated"));
            let regex = regex::Regex::new(pattern).unwrap();
            for _ in 0..3000 {
                // Runs of every length near the least, cut by characters out of the class.
                let len = if pattern.contains("1000") { 900 + draw.below(200) } else { draw.below(12) };
                let value: String =
                    (0..len).map(|_| ['a', 'b', 'é', 'x', '\n', ' ', 'ж'][draw.below(7)]).collect();
                assert_eq!(run.in_value(&value), regex.is_match(&value), "{pattern} on {value:?}");
            }
        }
    }

    /// The skipping read finds a run exactly where a read of every byte does.
    #[test]
    fn a_run_is_found_as_a_read_of_every_byte_finds_it() {
        let mut draw = crate::Draw(0x5EED_0000_7777_0001);
        for len in [16u32, 17, 23, 64] {
            let hir =
                regex_syntax::ParserBuilder::new().build().parse(&format!("[0-9a-f]{{{len}}}")).unwrap();
            let run = required_run(&hir).expect("a run");
            for _ in 0..2000 {
                // Mostly the class, so that runs of every length near `len` occur.
                let value: Vec<u8> = (0..draw.below(150))
                    .map(|_| match draw.below(24) {
                        0 => b"\xc3g A"[draw.below(4)],
                        _ => b"0123456789abcdef"[draw.below(16)],
                    })
                    .collect();
                let longest = value
                    .split(|b| !b.is_ascii_hexdigit() || b.is_ascii_uppercase())
                    .map(<[u8]>::len)
                    .max()
                    .unwrap_or(0);
                assert_eq!(run.in_value(&value), longest >= len as usize, "{len} in {value:?}");
            }
        }
    }

    /// The texts found are required: every match of a sample holds one, folded.
    #[test]
    fn every_match_holds_one_of_the_texts() {
        let samples = [
            (WERFAULT, "A.EXE x WerFaultSecure.EXE 123"),
            (r"(?i)echo.*clip", "ECHO hi | CLIP"),
            (
                r#"cmd.{0,5}(?:/c|/r).+powershell.+(?:\$\{?input\}?|noexit).+\""#,
                "cmd /c x powershell -noexit x\"",
            ),
            (r"(?:certutil|bitsadmin)\.exe", "bitsadmin.exe /transfer"),
            (r"(?i)set.*x", "ſET x"),
            (r"(?i)(?:ab|cd)(?:ef|gh)", "xCDEF"),
            (r"\w+`(?:\w+|-|.)`[\w+|\s]", "IN`V`oke"),
            (r#"\\[a-zA-Z0-9]{1,32}\.[a-zA-Z0-9]{1,6}\.[ "']{1}"#, r#"odbcconf /a {regsvr C:\x\a.b." }"#),
        ];
        for (pattern, value) in samples {
            let regex = regex::RegexBuilder::new(pattern).build().unwrap();
            let found = regex.find(value).unwrap_or_else(|| panic!("{pattern} matches {value:?}"));
            let texts = texts_of(pattern, false).unwrap();
            let held = folded(found.as_str());
            assert!(
                texts.iter().any(|t| held.contains(t.as_str())),
                "{pattern}: {held:?} holds none of {texts:?}"
            );
        }
    }
}
