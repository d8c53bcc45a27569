//! Sigma's condition grammar: `or` < `and` < `not` < `x of` < parentheses.

use super::Unsupported;

/// A parsed condition over detection identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// One detection by name.
    Identifier(String),
    /// `1 of PATTERN` (`all: false`) or `all of PATTERN`; `them` is the pattern `*` without the
    /// identifiers that start with `_`.
    Of {
        all: bool,
        pattern: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, Unsupported> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' | ' ' | '\t' | '\n' | '\r' => {
                if !word.is_empty() {
                    out.push(Token::Word(std::mem::take(&mut word)));
                }
                match c {
                    '(' => out.push(Token::Open),
                    ')' => out.push(Token::Close),
                    _ => {}
                }
            }
            '|' => {
                return Err(Unsupported::new(
                    "aggregation",
                    "a `|` in the condition (an aggregation such as `| count() > N`) is Sigma 1 syntax that this compiler refuses; use a correlation rule",
                ));
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(Token::Word(word));
    }
    Ok(out)
}

/// Parentheses and `not`s a condition may nest, one within another: the catalog's nest two
/// deep. The parser descends once per level, and so does everything that walks the tree it
/// makes: 300,000 `(` in a rule of 600 KB overflowed the stack.
pub const MAX_CONDITION_DEPTH: usize = 64;

/// Parses `text`.
pub(super) fn parse(text: &str) -> Result<Condition, Unsupported> {
    let tokens = tokens(text)?;
    let mut parser = Parser { tokens: &tokens, at: 0, depth: 0 };
    let condition = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(condition),
        Some(token) => Err(syntax(format!("unexpected {} after a complete condition", describe(token)))),
    }
}

fn syntax(reason: String) -> Unsupported {
    Unsupported { construct: "condition".into(), reason }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::Word(w) => format!("`{w}`"),
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    /// The parentheses and `not`s open around the current token.
    depth: usize,
}

impl Parser<'_> {
    fn keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    /// `parse` one level deeper than the current one, refused past [`MAX_CONDITION_DEPTH`].
    fn nested(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<Condition, Unsupported>,
    ) -> Result<Condition, Unsupported> {
        if self.depth >= MAX_CONDITION_DEPTH {
            return Err(syntax(format!(
                "parentheses and `not` nest deeper than {MAX_CONDITION_DEPTH} levels"
            )));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Condition, Unsupported> {
        let mut operands = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            operands.push(self.and()?);
        }
        Ok(if operands.len() == 1 { operands.pop().expect("one") } else { Condition::Or(operands) })
    }

    fn and(&mut self) -> Result<Condition, Unsupported> {
        let mut operands = vec![self.not()?];
        while self.keyword("and") {
            self.at += 1;
            operands.push(self.not()?);
        }
        Ok(if operands.len() == 1 { operands.pop().expect("one") } else { Condition::And(operands) })
    }

    fn not(&mut self) -> Result<Condition, Unsupported> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.nested(Self::not)?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, Unsupported> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            None => Err(syntax("the condition ends where an operand was expected".into())),
            Some(Token::Open) => {
                let inner = self.nested(Self::or)?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err(syntax("a `(` is not closed".into())),
                }
            }
            Some(Token::Close) => Err(syntax("`)` where an operand was expected".into())),
            Some(Token::Word(word)) => {
                let lower = word.to_ascii_lowercase();
                if ["and", "or", "near"].contains(&lower.as_str()) {
                    let construct = if lower == "near" { "near" } else { "condition" };
                    return Err(Unsupported {
                        construct: construct.into(),
                        reason: format!("`{word}` where an operand was expected"),
                    });
                }
                if self.keyword("of") {
                    self.at += 1;
                    let all = match lower.as_str() {
                        "all" => true,
                        "1" | "any" => false,
                        _ => {
                            return Err(Unsupported::new(
                                "x of",
                                "only `1 of` and `all of` are supported (a count other than 1 is not in the specification)",
                            ));
                        }
                    };
                    let pattern = match self.tokens.get(self.at) {
                        Some(Token::Word(pattern)) => pattern.clone(),
                        _ => return Err(syntax(format!("`{word} of` is not followed by a name or pattern"))),
                    };
                    self.at += 1;
                    return Ok(Condition::Of { all, pattern });
                }
                Ok(Condition::Identifier(word))
            }
        }
    }
}

/// Whether `name` matches the `x of` pattern `pattern` (`*` is any run).
pub(super) fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern == "them" {
        return !name.starts_with('_');
    }
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head) && name.len() >= head.len() && name_matches_rest(tail, &name[head.len()..])
        }
    }
}

fn name_matches_rest(pattern: &str, name: &str) -> bool {
    // `pattern` follows a `*`: try every suffix.
    (0..=name.len()).filter(|&i| name.is_char_boundary(i)).any(|i| {
        let rest = &name[i..];
        match pattern.split_once('*') {
            None => rest == pattern,
            Some((head, tail)) => rest.starts_with(head) && name_matches_rest(tail, &rest[head.len()..]),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Condition {
        Condition::Identifier(name.into())
    }

    #[test]
    fn precedence_is_or_and_not_of() {
        assert_eq!(
            parse("a or b and not c").unwrap(),
            Condition::Or(vec![id("a"), Condition::And(vec![id("b"), Condition::Not(Box::new(id("c")))])])
        );
        assert_eq!(
            parse("(a or b) and not 1 of filter_*").unwrap(),
            Condition::And(vec![
                Condition::Or(vec![id("a"), id("b")]),
                Condition::Not(Box::new(Condition::Of { all: false, pattern: "filter_*".into() })),
            ])
        );
        assert_eq!(parse("all of them").unwrap(), Condition::Of { all: true, pattern: "them".into() });
        assert_eq!(parse("not not a").unwrap(), Condition::Not(Box::new(Condition::Not(Box::new(id("a"))))));
    }

    #[test]
    fn nesting_is_bounded_and_the_bound_itself_parses() {
        let within = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH), ")".repeat(MAX_CONDITION_DEPTH));
        assert_eq!(parse(&within), Ok(id("a")));
        let nots = format!("{}a", "not ".repeat(MAX_CONDITION_DEPTH));
        assert!(parse(&nots).is_ok());
        for deeper in [
            format!("{}a{}", "(".repeat(300_000), ")".repeat(300_000)),
            format!("{}a", "not ".repeat(200_000)),
            format!("{}(a){}", "not (".repeat(MAX_CONDITION_DEPTH / 2), ")".repeat(MAX_CONDITION_DEPTH / 2)),
        ] {
            let error = parse(&deeper).unwrap_err();
            assert_eq!(
                error.reason,
                format!("parentheses and `not` nest deeper than {MAX_CONDITION_DEPTH} levels")
            );
        }
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(parse("selection | count() > 5").unwrap_err().construct, "aggregation");
        assert_eq!(parse("2 of selection*").unwrap_err().construct, "x of");
        assert!(parse("a and").is_err());
        assert!(parse("(a or b").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn patterns_match_names() {
        assert!(name_matches("selection_*", "selection_img"));
        assert!(!name_matches("selection_*", "selection"));
        assert!(name_matches("filter*", "filter"));
        assert!(name_matches("*_main_*", "filter_main_x"));
        assert!(name_matches("them", "selection"));
        assert!(!name_matches("them", "_helper"));
    }
}
