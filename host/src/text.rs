//! Text from outside (a log's values, a file's name, a rule's title) made safe to print on a
//! terminal.
//!
//! A terminal takes the control characters it is sent as commands: an escape sequence in a
//! process's command line, printed as it is, can clear the screen, hide what follows, retitle
//! the window or write the analyst's clipboard (OSC 52). Logs and rules may come from an
//! attacker, so their text reaches a terminal only through [`printable`].

use std::borrow::Cow;

/// `text` with its control characters written as escapes (`\u{1b}`, `\u{7}`), but for those
/// in `kept` (the line breaks of a text printed over several lines).
pub fn printable<'a>(text: &'a str, kept: &[char]) -> Cow<'a, str> {
    let escaped = |c: char| c.is_control() && !kept.contains(&c);
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_but_those_kept() {
        assert!(matches!(printable("cmd /c whoami", &[]), Cow::Borrowed(_)));
        let hostile = "a\u{1b}]52;c;ZXZpbA==\u{7}b\u{1b}[2J\r\n\t\u{9b}c";
        assert_eq!(printable(hostile, &[]), "a\\u{1b}]52;c;ZXZpbA==\\u{7}b\\u{1b}[2J\\r\\n\\t\\u{9b}c");
        assert_eq!(
            printable(hostile, &['\n', '\t']),
            "a\\u{1b}]52;c;ZXZpbA==\\u{7}b\\u{1b}[2J\\r\n\t\\u{9b}c"
        );
        assert_eq!(printable("naïve — ok", &[]), "naïve — ok");
    }
}
