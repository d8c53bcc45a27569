//! KQL string operators with the exact semantics of Kusto, so that a rule reads like its
//! query. Case-insensitive operators fold ASCII letters only, as the rules we port rely on.
//!
//! | KQL | here |
//! |---|---|
//! | `x in ("a", "b")` | [`in_cs`]`(x, &["a", "b"])` |
//! | `x in~ ("a", "b")` | [`in_ci`]`(x, &["a", "b"])` |
//! | `x has "a"` | [`has`]`(x, "a")` |
//! | `x has_any ("a", "b")` | [`has_any`]`(x, &["a", "b"])`, or a `const` [`Terms`] |
//! | `x contains "a"` | [`contains`]`(x, "a")` |
//! | `x startswith "a"` | [`startswith`]`(x, "a")` |
//!
//! Comparisons and searches go eight bytes at a time (see `swar`), which is what makes them
//! cheap inside a Wasm guest.

use crate::swar;

/// `value in (set)`: equal to one of `set`, case-sensitive.
#[inline]
pub fn in_cs(value: &str, set: &[&str]) -> bool {
    set.iter().any(|candidate| swar::eq(candidate.as_bytes(), value.as_bytes()))
}

/// `value in~ (set)`: equal to one of `set`, ignoring ASCII case.
#[inline]
pub fn in_ci(value: &str, set: &[&str]) -> bool {
    set.iter().any(|candidate| swar::eq_ignore_ascii_case(candidate.as_bytes(), value.as_bytes()))
}

/// `haystack contains needle`: `needle` occurs in `haystack`, ignoring ASCII case.
#[inline]
pub fn contains(haystack: &str, needle: &str) -> bool {
    find_ci(haystack.as_bytes(), needle.as_bytes(), 0).is_some()
}

/// `haystack startswith prefix`, ignoring ASCII case.
#[inline]
pub fn startswith(haystack: &str, prefix: &str) -> bool {
    haystack
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|start| swar::eq_ignore_ascii_case(start, prefix.as_bytes()))
}

/// `haystack has term`: `term` occurs in `haystack` as a whole term, ignoring ASCII case.
///
/// Terms are the maximal runs of ASCII letters and digits, so `C:\Windows\ping.exe`,
/// `-ping` and `PING` have `ping`, while `pinging` and `ping123` do not. Where `term`
/// itself holds other characters (`cmd.exe`), its ends must still fall on term
/// boundaries; a `term` with no letters or digits at all (`.`) means `contains`.
pub fn has(haystack: &str, term: &str) -> bool {
    let (hay, term) = (haystack.as_bytes(), term.as_bytes());
    if !term.iter().any(u8::is_ascii_alphanumeric) {
        return find_ci(hay, term, 0).is_some();
    }
    let needs_start = term.first().is_some_and(u8::is_ascii_alphanumeric);
    let needs_end = term.last().is_some_and(u8::is_ascii_alphanumeric);
    let mut from = 0;
    while let Some(at) = find_ci(hay, term, from) {
        let end = at + term.len();
        let starts_term = !needs_start || at == 0 || !hay[at - 1].is_ascii_alphanumeric();
        let ends_term = !needs_end || end == hay.len() || !hay[end].is_ascii_alphanumeric();
        if starts_term && ends_term {
            return true;
        }
        from = at + 1;
    }
    false
}

/// `haystack has_any (terms)`: `haystack has term1 or haystack has term2 or ...`, in one
/// pass over `haystack` for the terms made only of ASCII letters and digits: each term of
/// `haystack` is compared with those of the same length. A term with any other character
/// is tested with [`has`].
///
/// `terms` is a slice of strings, or [`Terms`] analysed once in a `const`:
/// `const TOOLS: Terms = Terms::new(&["whoami", "ping"]);`.
pub fn has_any<'a>(haystack: &str, terms: impl Into<Terms<'a>>) -> bool {
    let terms = terms.into();
    if terms.others && terms.terms.iter().filter(|t| !is_plain(t.as_bytes())).any(|t| has(haystack, t)) {
        return true;
    }
    terms.plain_lengths != 0
        && terms_of(haystack).any(|word| {
            terms.plain_lengths >> word.len().min(63) & 1 == 1
                && terms.terms.iter().any(|t| swar::eq_ignore_ascii_case(t.as_bytes(), word.as_bytes()))
        })
}

/// The terms of a [`has_any`], with what it needs to know of them: the lengths of the
/// plain ones (letters and digits only), and whether there are others. `Terms::new` is a
/// `const fn`, so a rule's constant terms are analysed when the rule is compiled rather
/// than on every call.
#[derive(Debug, Clone, Copy)]
pub struct Terms<'a> {
    terms: &'a [&'a str],
    /// Bit `n` set when a plain term is `n` bytes long (bit 63: 63 or more), so that most
    /// of a haystack's terms are passed over on their length alone.
    plain_lengths: u64,
    /// Whether some term is not plain, and needs the general search of [`has`].
    others: bool,
}

impl<'a> Terms<'a> {
    /// Analyses `terms`.
    pub const fn new(terms: &'a [&'a str]) -> Self {
        let (mut plain_lengths, mut others, mut i) = (0u64, false, 0);
        while i < terms.len() {
            let term = terms[i].as_bytes();
            if is_plain(term) {
                let len = if term.len() < 63 { term.len() } else { 63 };
                plain_lengths |= 1 << len;
            } else {
                others = true;
            }
            i += 1;
        }
        Self { terms, plain_lengths, others }
    }

    /// The terms, as given.
    pub const fn terms(&self) -> &'a [&'a str] {
        self.terms
    }
}

impl<'a> From<&'a [&'a str]> for Terms<'a> {
    fn from(terms: &'a [&'a str]) -> Self {
        Terms::new(terms)
    }
}

impl<'a, const N: usize> From<&'a [&'a str; N]> for Terms<'a> {
    fn from(terms: &'a [&'a str; N]) -> Self {
        Terms::new(terms)
    }
}

/// Whether `term` is non-empty and made only of ASCII letters and digits: the only kind of
/// term that can equal a term of a haystack.
const fn is_plain(term: &[u8]) -> bool {
    let mut i = 0;
    while i < term.len() {
        if !term[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
    }
    !term.is_empty()
}

/// The terms of `text`: its maximal runs of ASCII letters and digits.
#[inline]
pub fn terms_of(text: &str) -> impl Iterator<Item = &str> {
    swar::AlnumRuns::new(text)
}

/// The first position at or after `from` where `needle` occurs in `hay`, ignoring ASCII case.
#[inline]
fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    if hay.len() < needle.len() {
        return None;
    }
    swar::find_ignore_ascii_case(hay, needle, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (haystack, operand, expected) for `has`.
    const HAS: &[(&str, &str, bool)] = &[
        ("ping 10.0.0.1", "ping", true),
        ("C:\\Windows\\System32\\ping.exe -n 1 host", "ping", true),
        ("cmd /c -ping", "ping", true),
        ("PING localhost", "ping", true),
        ("cmd /c Ping", "PING", true),
        ("pinging the host", "ping", false),
        ("ping123", "ping", false),
        ("xping", "ping", false),
        ("cmd /c whoami /all", "whoami", true),
        ("cmd /c whoami>out.txt", "whoami", true),
        ("cmd.exe /c \"whoami\"", "whoami", true),
        ("whoamI", "whoami", true),
        ("notwhoami", "whoami", false),
        ("certutil.exe -urlcache -f http://x/a a", "certutil", true),
        ("certutil2", "certutil", false),
        ("timeout /t 5", "timeout", true),
        ("timeout_5", "timeout", true), // `_` is not alphanumeric: `timeout` is a term
        ("systeminfo|findstr", "systeminfo", true),
        ("ipconfig/all", "ipconfig", true),
        ("wget http://a/b", "wget", true),
        ("Invoke-WebRequest -wget", "wget", true),
        ("", "ping", false),
        ("ping", "", true),
        ("host.domain", ".", true),
        ("hostname", ".", false),
        ("run cmd.exe now", "cmd.exe", true),
        ("run xcmd.exe now", "cmd.exe", false),
        ("run cmd.exeX", "cmd.exe", false),
        ("run cmd.exe.bak", "cmd.exe", true),
        ("é ping é", "ping", true),
        ("éping", "ping", true), // é is not an ASCII alphanumeric: a boundary
    ];

    #[test]
    fn has_matches_whole_terms_only() {
        for &(hay, term, expected) in HAS {
            assert_eq!(has(hay, term), expected, "{hay:?} has {term:?}");
            assert_eq!(has_any(hay, &[term]), expected, "{hay:?} has_any [{term:?}]");
        }
    }

    #[test]
    fn has_any_is_has_of_each() {
        let terms = ["wget", "whoami", "certutil", "systeminfo", "ping", "ipconfig", "timeout"];
        for &(hay, _, _) in HAS {
            let expected = terms.iter().any(|t| has(hay, t));
            assert_eq!(has_any(hay, &terms), expected, "{hay:?}");
        }
        assert!(has_any("a cmd.exe b", &["zzz", "cmd.exe"]));
        assert!(!has_any("anything", &[] as &[&str]));
        const ANALYSED: Terms =
            Terms::new(&["wget", "whoami", "certutil", "systeminfo", "ping", "ipconfig", "timeout"]);
        for &(hay, _, _) in HAS {
            assert_eq!(has_any(hay, ANALYSED), has_any(hay, ANALYSED.terms()), "{hay:?}");
        }
        // A term of 63 bytes or more shares the last length bit; lengths still must match.
        let long = "a".repeat(70);
        let longer = format!("x {} y", "a".repeat(71));
        assert!(!has_any(&longer, &[long.as_str()]));
        assert!(has_any(&format!("x {long} y"), &[long.as_str()]));
    }

    #[test]
    fn contains_ignores_ascii_case() {
        let cases = [
            ("copy x %TEMP%\\a.exe", "%temp%", true),
            ("copy x %temp%\\a.exe", "%temp%", true),
            ("copy x %Temp%", "%temp%", true),
            ("copy x %tmp%", "%temp%", false),
            ("c:\\temp\\a", "%temp%", false),
            ("%temp", "%temp%", false),
            ("", "", true),
            ("abc", "", true),
            ("", "a", false),
            ("ÉCOLE", "école", false), // only ASCII folds
        ];
        for (hay, needle, expected) in cases {
            assert_eq!(contains(hay, needle), expected, "{hay:?} contains {needle:?}");
        }
    }

    #[test]
    fn startswith_ignores_ascii_case() {
        let cases = [
            ("tomcat9.exe", "tomcat", true),
            ("Tomcat8.exe", "tomcat", true),
            ("TOMCAT.EXE", "tomcat", true),
            ("tomca", "tomcat", false),
            ("xtomcat.exe", "tomcat", false),
            ("", "tomcat", false),
            ("anything", "", true),
        ];
        for (hay, prefix, expected) in cases {
            assert_eq!(startswith(hay, prefix), expected, "{hay:?} startswith {prefix:?}");
        }
    }

    #[test]
    fn in_is_exact_and_case_sensitive() {
        let servers = ["w3wp.exe", "beasvc.exe", "httpd.exe"];
        assert!(in_cs("w3wp.exe", &servers));
        assert!(!in_cs("W3WP.EXE", &servers));
        assert!(!in_cs("w3wp.exe ", &servers));
        assert!(!in_cs("w3wp", &servers));
        assert!(!in_cs("", &servers));
    }

    #[test]
    fn in_tilde_is_exact_ignoring_ascii_case() {
        let shells = ["cmd.exe", "powershell.exe"];
        assert!(in_ci("cmd.exe", &shells));
        assert!(in_ci("CMD.EXE", &shells));
        assert!(in_ci("PowerShell.exe", &shells));
        assert!(!in_ci("cmd", &shells));
        assert!(!in_ci("pwsh.exe", &shells));
        assert!(!in_ci("xcmd.exe", &shells));
        assert!(!in_ci("", &shells));
    }

    #[test]
    fn terms_are_alphanumeric_runs() {
        let terms: Vec<&str> = terms_of("C:\\Win\\ping.exe -n 1 a_b").collect();
        assert_eq!(terms, ["C", "Win", "ping", "exe", "n", "1", "a", "b"]);
    }
}
