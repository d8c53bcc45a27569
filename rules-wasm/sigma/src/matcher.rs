//! Evaluates a [`Pack`] over events: which rules match an event.
//!
//! The cost of an event must not grow with the number of rules. Every test of every rule is
//! numbered once (a test that several rules share is evaluated once per event); every
//! wildcard pattern contributes its longest text to one Aho-Corasick automaton per value of
//! the event. For each rule the compiler of this module picks a set of tests of which one at
//! least must hold for the rule to match (its *requirement*): the texts found in an event's
//! values name the only rules worth evaluating. Rules whose requirement cannot be put in
//! texts (a regular expression, `null`, a negation alone) are evaluated on every event.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use std::sync::OnceLock;

use crate::ir::{
    Check, Column, Expr, FORMAT, KEYWORD_VIEWS, Pack, Pattern, Piece, Target, Test, View, fold, folded,
};

/// The values of one event, by column.
pub trait Event {
    /// The value of `column`; the empty string when the event does not carry it.
    fn column(&self, column: Column) -> &str;
}

/// Regular expressions are compiled with this size limit (the `regex` crate's default), so
/// that a hostile pattern cannot take the pack's memory; the compiler refuses a larger one.
/// The catalog's largest, `\w{1,64}` with Unicode classes, needs more than 1 MiB.
pub const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// A rule's condition over numbered tests.
#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Test(u32),
}

impl Compiled {
    /// The required text a prefilter can find, for a pattern or a regular expression.
    fn text(&self) -> Option<u32> {
        match self {
            Compiled::Pattern { text, .. } | Compiled::Regex { text, .. } => *text,
            _ => None,
        }
    }

    /// The one view a pattern or a regular expression reads.
    fn view(&self) -> Option<u16> {
        match self {
            Compiled::Pattern { view, .. } | Compiled::Regex { view, .. } => Some(*view),
            _ => None,
        }
    }
}

/// The literal every match of `hir` starts with, when there is one of at least three bytes:
/// a text the prefilter can look for (folded, which keeps it inside the folded value).
fn required_prefix(hir: &regex_syntax::hir::Hir) -> Option<String> {
    let prefixes = regex_syntax::hir::literal::Extractor::new().extract(hir);
    match prefixes.literals()? {
        [only] if only.as_bytes().len() >= 3 => String::from_utf8(only.as_bytes().to_vec()).ok(),
        _ => None,
    }
}

/// A regular expression as the pack states it.
#[derive(Debug)]
struct RegexSource {
    pattern: String,
    ignore_case: bool,
    multi_line: bool,
    dot_all: bool,
}

impl RegexSource {
    fn build(&self) -> Result<Regex, regex::Error> {
        RegexBuilder::new(&self.pattern)
            .case_insensitive(self.ignore_case)
            .multi_line(self.multi_line)
            .dot_matches_new_line(self.dot_all)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
    }
}

/// A test, compiled.
#[derive(Debug)]
enum Compiled {
    /// A pattern; `text` is the index of its required text in its view's automaton, if any.
    Pattern {
        view: u16,
        pattern: Pattern,
        text: Option<u32>,
    },
    /// A regular expression, compiled when an event first reaches it: most never do, past
    /// the prefilter, and compiling the catalog's took most of a pack's start.
    Regex {
        view: u16,
        source: RegexSource,
        regex: OnceLock<Regex>,
        /// The text every match starts with (folded), if the expression has one.
        text: Option<u32>,
    },
    Empty {
        view: u16,
    },
    EqualsView {
        view: u16,
        other: u16,
    },
    /// A keyword: the pattern over every keyword view.
    Keyword {
        views: Vec<u16>,
        pattern: Pattern,
    },
}

/// One automaton over the folded text of one view.
#[derive(Debug)]
struct Prefilter {
    view: u16,
    automaton: AhoCorasick,
    /// For each of the automaton's patterns, the global text number.
    texts: Vec<u32>,
}

/// The matcher of one pack: built once, used for every event.
#[derive(Debug)]
pub struct Matcher {
    rules: Vec<Node>,
    tests: Vec<Compiled>,
    views: Vec<View>,
    prefilters: Vec<Prefilter>,
    /// For each global text, the rules whose requirement it is part of.
    text_rules: Vec<Vec<u32>>,
    /// Rules evaluated on every event.
    always: Vec<u32>,
}

/// What one event's evaluation needs besides the matcher, kept between events so that no
/// buffer is allocated again.
#[derive(Debug, Default)]
pub struct Scratch {
    generation: u32,
    raw: Vec<String>,
    folded: Vec<String>,
    raw_ready: Vec<u32>,
    folded_ready: Vec<u32>,
    /// Per global text: the generation in which it was found.
    found: Vec<u32>,
    /// Per test: generation * 2 + result, once evaluated.
    results: Vec<u64>,
    /// Per rule: the generation in which it became a candidate.
    candidate: Vec<u32>,
    candidates: Vec<u32>,
    /// The texts found in this event, in the order found.
    found_now: Vec<u32>,
}

impl Matcher {
    /// The matcher of `pack`; an error names the rule whose regular expression does not compile.
    pub fn new(pack: &Pack) -> Result<Self, String> {
        if pack.format != FORMAT {
            return Err(format!("pack data format {} (this matcher reads format {FORMAT})", pack.format));
        }
        let mut builder = Builder::default();
        let mut rules = Vec::with_capacity(pack.rules.len());
        let mut requirements = Vec::with_capacity(pack.rules.len());
        for rule in &pack.rules {
            let node = builder.node(&rule.condition).map_err(|e| format!("rule {}: {e}", rule.id))?;
            requirements.push(builder.requirement(&node));
            rules.push(node);
        }
        builder.keep_required_texts(&requirements);
        let mut text_rules = vec![Vec::new(); builder.texts.len()];
        let mut always = Vec::new();
        for (rule, requirement) in requirements.into_iter().enumerate() {
            match requirement {
                Some(tests) => {
                    for test in tests {
                        let Some(text) = builder.tests[test as usize].text() else {
                            unreachable!("a requirement holds only tests with a text")
                        };
                        text_rules[text as usize].push(rule as u32);
                    }
                }
                None => always.push(rule as u32),
            }
        }
        for rules in &mut text_rules {
            rules.sort_unstable();
            rules.dedup();
        }
        let mut by_view: HashMap<u16, (Vec<String>, Vec<u32>)> = HashMap::new();
        for (number, (view, text)) in builder.texts.iter().enumerate() {
            let entry = by_view.entry(*view).or_default();
            entry.0.push(text.clone());
            entry.1.push(number as u32);
        }
        let mut prefilters = Vec::with_capacity(by_view.len());
        let mut views: Vec<u16> = by_view.keys().copied().collect();
        views.sort_unstable();
        for view in views {
            let (patterns, texts) = by_view.remove(&view).expect("listed above");
            let automaton = AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(&patterns)
                .map_err(|e| format!("building the prefilter: {e}"))?;
            prefilters.push(Prefilter { view, automaton, texts });
        }
        Ok(Matcher { rules, tests: builder.tests, views: builder.views, prefilters, text_rules, always })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the pack holds no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules evaluated on every event whatever its values (for reports).
    pub fn unfiltered_rules(&self) -> usize {
        self.always.len()
    }

    /// The columns the pack reads.
    pub fn columns(&self) -> Vec<Column> {
        let mut columns: Vec<Column> = self.views.iter().flat_map(|view| view.columns()).copied().collect();
        columns.sort_unstable();
        columns.dedup();
        columns
    }

    /// The rules (by index, ascending) that match `event`, appended to `matched`.
    pub fn evaluate(&self, event: &dyn Event, scratch: &mut Scratch, matched: &mut Vec<u32>) {
        let generation = scratch.begin(self);
        scratch.candidates.clear();
        let mut found = std::mem::take(&mut scratch.found_now);
        found.clear();
        for prefilter in &self.prefilters {
            let text = scratch.folded(self, event, prefilter.view);
            // The texts found are noted first; the rules they name are taken after, so that
            // the borrow of the folded value ends.
            for hit in prefilter.automaton.find_overlapping_iter(text.as_bytes()) {
                found.push(prefilter.texts[hit.pattern().as_usize()]);
            }
        }
        for &number in &found {
            if scratch.found[number as usize] != generation {
                scratch.found[number as usize] = generation;
                for &rule in &self.text_rules[number as usize] {
                    scratch.propose(rule, generation);
                }
            }
        }
        scratch.found_now = found;
        for &rule in &self.always {
            scratch.propose(rule, generation);
        }
        let mut candidates = std::mem::take(&mut scratch.candidates);
        candidates.sort_unstable();
        for &rule in &candidates {
            if self.holds(&self.rules[rule as usize], event, scratch, generation) {
                matched.push(rule);
            }
        }
        scratch.candidates = candidates;
    }

    fn holds(&self, node: &Node, event: &dyn Event, scratch: &mut Scratch, generation: u32) -> bool {
        match node {
            Node::And(nodes) => nodes.iter().all(|n| self.holds(n, event, scratch, generation)),
            Node::Or(nodes) => nodes.iter().any(|n| self.holds(n, event, scratch, generation)),
            Node::Not(node) => !self.holds(node, event, scratch, generation),
            Node::Test(test) => {
                let slot = scratch.results[*test as usize];
                if slot >> 1 == u64::from(generation) {
                    return slot & 1 == 1;
                }
                let result = self.test(*test, event, scratch, generation);
                scratch.results[*test as usize] = (u64::from(generation) << 1) | u64::from(result);
                result
            }
        }
    }

    fn test(&self, test: u32, event: &dyn Event, scratch: &mut Scratch, generation: u32) -> bool {
        match &self.tests[test as usize] {
            Compiled::Pattern { view, pattern, text } => {
                // The automaton ran over this view: a missing text settles it.
                if let Some(text) = text
                    && scratch.found[*text as usize] != generation
                {
                    return false;
                }
                matches(pattern, scratch.folded(self, event, *view))
            }
            Compiled::Regex { view, source, regex, text } => {
                if let Some(text) = text
                    && scratch.found[*text as usize] != generation
                {
                    return false;
                }
                regex
                    .get_or_init(|| source.build().expect("checked when the matcher was built"))
                    .is_match(scratch.raw(self, event, *view))
            }
            Compiled::Empty { view } => scratch.raw(self, event, *view).is_empty(),
            Compiled::EqualsView { view, other } => {
                let left = scratch.folded(self, event, *view).to_owned();
                left == scratch.folded(self, event, *other)
            }
            Compiled::Keyword { views, pattern } => {
                views.iter().any(|view| matches(pattern, scratch.folded(self, event, *view)))
            }
        }
    }
}

impl Scratch {
    /// Starts an event: a new generation invalidates what the last one computed.
    fn begin(&mut self, matcher: &Matcher) -> u32 {
        if self.raw.len() != matcher.views.len() {
            *self = Scratch {
                raw: vec![String::new(); matcher.views.len()],
                folded: vec![String::new(); matcher.views.len()],
                raw_ready: vec![0; matcher.views.len()],
                folded_ready: vec![0; matcher.views.len()],
                found: vec![0; matcher.text_rules.len()],
                results: vec![0; matcher.tests.len()],
                candidate: vec![0; matcher.rules.len()],
                ..Scratch::default()
            };
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // After 2^32 events every stamp is reset, so none is taken for the new generation.
            self.raw_ready.fill(0);
            self.folded_ready.fill(0);
            self.found.fill(0);
            self.results.fill(0);
            self.candidate.fill(0);
            self.generation = 1;
        }
        self.generation
    }

    fn propose(&mut self, rule: u32, generation: u32) {
        if self.candidate[rule as usize] != generation {
            self.candidate[rule as usize] = generation;
            self.candidates.push(rule);
        }
    }

    fn raw(&mut self, matcher: &Matcher, event: &dyn Event, view: u16) -> &str {
        let v = view as usize;
        if self.raw_ready[v] != self.generation {
            self.raw_ready[v] = self.generation;
            let out = &mut self.raw[v];
            out.clear();
            render(matcher.views[v], event, out);
        }
        &self.raw[v]
    }

    fn folded(&mut self, matcher: &Matcher, event: &dyn Event, view: u16) -> &str {
        let v = view as usize;
        if self.folded_ready[v] != self.generation {
            self.raw(matcher, event, view);
            self.folded_ready[v] = self.generation;
            fold(&self.raw[v], &mut self.folded[v]);
        }
        &self.folded[v]
    }
}

/// Writes the value of `view` of `event` into `out`.
pub fn render(view: View, event: &dyn Event, out: &mut String) {
    match view {
        View::Column(column) => out.push_str(event.column(column)),
        View::User | View::ParentUser => {
            let [domain, name] = view.columns() else { unreachable!("two columns") };
            let (domain, name) = (event.column(*domain), event.column(*name));
            if !domain.is_empty() && !name.is_empty() {
                out.push_str(domain);
                out.push('\\');
            }
            out.push_str(name);
        }
        View::Hashes => {
            for (label, column) in ["SHA1", "MD5", "SHA256", "IMPHASH"].into_iter().zip(view.columns()) {
                let value = event.column(*column);
                if !value.is_empty() {
                    if !out.is_empty() {
                        out.push(',');
                    }
                    out.push_str(label);
                    out.push('=');
                    out.push_str(value);
                }
            }
        }
    }
}

/// Whether the folded `text` matches `pattern` as a whole.
pub fn matches(pattern: &Pattern, text: &str) -> bool {
    use Piece::{AnyRun, Text};
    match pattern.0.as_slice() {
        [] => text.is_empty(),
        [Text(t)] => text == t,
        [Text(t), AnyRun] => text.starts_with(t.as_str()),
        [AnyRun, Text(t)] => text.ends_with(t.as_str()),
        [AnyRun, Text(t), AnyRun] => text.contains(t.as_str()),
        pieces => glob(pieces, text),
    }
}

/// Wildcard matching with one backtracking point (the last `*`), which suffices for `*` and
/// `?`: a later `*` can absorb anything an earlier one could.
fn glob(pieces: &[Piece], text: &str) -> bool {
    let bytes = text.as_bytes();
    let char_len = |at: usize| text[at..].chars().next().map_or(1, char::len_utf8);
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pieces.len() {
            match &pieces[p] {
                Piece::AnyRun => {
                    p += 1;
                    star = Some((p, t));
                    continue;
                }
                Piece::AnyChar if t < bytes.len() => {
                    t += char_len(t);
                    p += 1;
                    continue;
                }
                Piece::Text(piece) if text[t..].starts_with(piece.as_str()) => {
                    t += piece.len();
                    p += 1;
                    continue;
                }
                _ => {}
            }
        } else if t == bytes.len() {
            return true;
        }
        match star {
            Some((after, from)) if from < bytes.len() => {
                let next = from + char_len(from);
                star = Some((after, next));
                p = after;
                t = next;
            }
            _ => return false,
        }
    }
}

/// Numbers the tests and views of the rules as they are compiled.
#[derive(Debug, Default)]
struct Builder {
    tests: Vec<Compiled>,
    test_numbers: HashMap<Test, u32>,
    views: Vec<View>,
    /// The required texts, by view, each once.
    texts: Vec<(u16, String)>,
    text_numbers: HashMap<(u16, String), u32>,
}

impl Builder {
    fn view(&mut self, view: View) -> u16 {
        match self.views.iter().position(|v| *v == view) {
            Some(at) => at as u16,
            None => {
                self.views.push(view);
                (self.views.len() - 1) as u16
            }
        }
    }

    fn node(&mut self, expr: &Expr) -> Result<Node, String> {
        Ok(match expr {
            Expr::And(exprs) => Node::And(exprs.iter().map(|e| self.node(e)).collect::<Result<_, _>>()?),
            Expr::Or(exprs) => Node::Or(exprs.iter().map(|e| self.node(e)).collect::<Result<_, _>>()?),
            Expr::Not(expr) => Node::Not(Box::new(self.node(expr)?)),
            Expr::Test(test) => Node::Test(self.test(test)?),
        })
    }

    /// The number of the required `text` of `view`, each once.
    fn text_number(&mut self, view: u16, text: &str) -> u32 {
        let key = (view, text.to_owned());
        match self.text_numbers.get(&key) {
            Some(&n) => n,
            None => {
                let n = self.texts.len() as u32;
                self.texts.push(key.clone());
                self.text_numbers.insert(key, n);
                n
            }
        }
    }

    fn test(&mut self, test: &Test) -> Result<u32, String> {
        if let Some(&number) = self.test_numbers.get(test) {
            return Ok(number);
        }
        let compiled = match (&test.target, &test.check) {
            (Target::Keyword, Check::Pattern(pattern)) => Compiled::Keyword {
                views: KEYWORD_VIEWS.iter().map(|v| self.view(*v)).collect(),
                pattern: pattern.clone(),
            },
            (Target::Keyword, _) => return Err("a keyword can only be a string".into()),
            (Target::View(view), Check::Pattern(pattern)) => {
                let view = self.view(*view);
                let text = pattern.required_text().map(|text| self.text_number(view, text));
                Compiled::Pattern { view, pattern: pattern.clone(), text }
            }
            (Target::View(view), Check::Regex { pattern, ignore_case, multi_line, dot_all }) => {
                let source = RegexSource {
                    pattern: pattern.clone(),
                    ignore_case: *ignore_case,
                    multi_line: *multi_line,
                    dot_all: *dot_all,
                };
                // The syntax is checked now (cheaply); the size limit when it is compiled.
                let hir = regex_syntax::ParserBuilder::new()
                    .case_insensitive(*ignore_case)
                    .multi_line(*multi_line)
                    .dot_matches_new_line(*dot_all)
                    .build()
                    .parse(pattern)
                    .map_err(|e| format!("regular expression {pattern:?}: {e}"))?;
                let view = self.view(*view);
                let text = required_prefix(&hir).map(|text| self.text_number(view, &folded(&text)));
                Compiled::Regex { view, source, regex: OnceLock::new(), text }
            }
            (Target::View(view), Check::Empty) => Compiled::Empty { view: self.view(*view) },
            (Target::View(view), Check::EqualsView(other)) => {
                Compiled::EqualsView { view: self.view(*view), other: self.view(*other) }
            }
        };
        let number = self.tests.len() as u32;
        self.tests.push(compiled);
        self.test_numbers.insert(test.clone(), number);
        Ok(number)
    }

    /// Tests of which at least one holds whenever `node` holds, all with a required text;
    /// `None` when no such set is known.
    fn requirement(&self, node: &Node) -> Option<Vec<u32>> {
        match node {
            Node::Test(test) => match &self.tests[*test as usize] {
                compiled if compiled.text().is_some() => Some(vec![*test]),
                _ => None,
            },
            // Any operand's requirement will do: the one on the cheapest views to search (a
            // command line is ten times the length of a path), then the smallest, then the
            // one with the longest shortest text (the rarer to be found).
            Node::And(nodes) => nodes.iter().filter_map(|n| self.requirement(n)).min_by_key(|tests| {
                let shortest = tests.iter().map(|t| self.text_len(*t)).min().unwrap_or(0);
                (self.search_cost(tests), tests.len(), usize::MAX - shortest)
            }),
            Node::Or(nodes) => {
                let mut all = Vec::new();
                for node in nodes {
                    all.extend(self.requirement(node)?);
                }
                // `Or([])` never holds: the empty set says so.
                Some(all)
            }
            Node::Not(_) => None,
        }
    }

    /// What searching the views of `tests` costs, in units of a path's length.
    fn search_cost(&self, tests: &[u32]) -> usize {
        let mut views: Vec<u16> = tests.iter().filter_map(|&t| self.tests[t as usize].view()).collect();
        views.sort_unstable();
        views.dedup();
        views
            .iter()
            .map(|&v| match self.views[v as usize] {
                View::Column(Column::ProcessCommandLine | Column::InitiatingProcessCommandLine) => 10,
                _ => 1,
            })
            .sum()
    }

    /// Keeps in the prefilter only the views some rule's requirement names: a view no
    /// requirement reads is then never searched, and a test on it reads the view when its
    /// rule is a candidate. A searched view keeps all its texts, so that a test whose text
    /// was not found is settled without reading the value again.
    fn keep_required_texts(&mut self, requirements: &[Option<Vec<u32>>]) {
        let mut searched = vec![false; self.views.len()];
        for &test in requirements.iter().flatten().flatten() {
            let compiled = &self.tests[test as usize];
            if let (Some(view), Some(_)) = (compiled.view(), compiled.text()) {
                searched[view as usize] = true;
            }
        }
        let mut kept: Vec<Option<u32>> = vec![None; self.texts.len()];
        let mut texts = Vec::new();
        for (number, text) in self.texts.iter().enumerate() {
            if searched[text.0 as usize] {
                kept[number] = Some(texts.len() as u32);
                texts.push(text.clone());
            }
        }
        for test in &mut self.tests {
            if let Compiled::Pattern { text, .. } | Compiled::Regex { text, .. } = test {
                *text = text.and_then(|t| kept[t as usize]);
            }
        }
        self.texts = texts;
    }

    fn text_len(&self, test: u32) -> usize {
        match &self.tests[test as usize] {
            compiled if compiled.text().is_some() => self.texts[compiled.text().unwrap() as usize].1.len(),
            _ => 0,
        }
    }
}

/// Builds a pattern from Sigma-like text for tests: `*` and `?` are wildcards, the rest folded.
#[cfg(test)]
pub(crate) fn pattern(text: &str) -> Pattern {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    for c in text.chars() {
        match c {
            '*' | '?' => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(crate::ir::folded(&std::mem::take(&mut literal))));
                }
                pieces.push(if c == '*' { Piece::AnyRun } else { Piece::AnyChar });
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(crate::ir::folded(&literal)));
    }
    Pattern(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Level, Rule, folded};

    struct Row(Vec<(Column, &'static str)>);

    impl Event for Row {
        fn column(&self, column: Column) -> &str {
            self.0.iter().find(|(c, _)| *c == column).map_or("", |(_, v)| v)
        }
    }

    fn rule(id: &str, condition: Expr) -> Rule {
        Rule {
            id: id.into(),
            version: "1".into(),
            title: id.into(),
            description: String::new(),
            level: Level::High,
            tactics: vec![],
            techniques: vec![],
            condition,
        }
    }

    fn test(column: Column, check: Check) -> Expr {
        Expr::Test(Test { target: Target::View(View::Column(column)), check })
    }

    fn glob_test(column: Column, text: &str) -> Expr {
        test(column, Check::Pattern(pattern(text)))
    }

    #[test]
    fn wildcards_match_as_sigma_says() {
        let cases = [
            ("*\\cmd.exe", "c:\\windows\\cmd.exe", true),
            ("*\\cmd.exe", "c:\\windows\\xcmd.exe", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*a*a*a*", "aa", false),
            ("*a*a*a*", "banana", true),
            ("", "", true),
            ("", "x", false),
            ("*", "", true),
            ("?*", "", false),
            ("*ab?", "xabab1", true),
        ];
        for (p, text, expected) in cases {
            assert_eq!(matches(&pattern(p), &folded(text)), expected, "{p:?} on {text:?}");
        }
    }

    #[test]
    fn case_folding_is_not_ascii_only() {
        assert!(matches(&pattern("*\\СИСТЕМА"), &folded("NT AUTHORITY\\система")));
        assert!(matches(&pattern("*Système*"), &folded("AUTORITE NT\\SYSTÈME")));
        assert!(!matches(&pattern("*système*"), &folded("systeme")));
    }

    #[test]
    fn prefilter_gives_the_same_verdicts_as_evaluating_every_rule() {
        let rules = vec![
            rule("a", glob_test(Column::FolderPath, "*\\cmd.exe")),
            rule(
                "b",
                Expr::And(vec![
                    glob_test(Column::FolderPath, "*\\powershell.exe"),
                    Expr::Not(Box::new(glob_test(Column::ProcessCommandLine, "*-enc*"))),
                ]),
            ),
            rule(
                "c",
                test(
                    Column::ProcessCommandLine,
                    Check::Regex {
                        pattern: "(?:^| )-[eE]nc".into(),
                        ignore_case: false,
                        multi_line: false,
                        dot_all: false,
                    },
                ),
            ),
            rule("d", Expr::Not(Box::new(test(Column::ProcessCurrentDirectory, Check::Empty)))),
            rule("e", Expr::Or(vec![])),
            rule("f", Expr::And(vec![])),
            rule(
                "g",
                Expr::Test(Test { target: Target::Keyword, check: Check::Pattern(pattern("*\\perfc.dat*")) }),
            ),
            rule(
                "h",
                test(
                    Column::FolderPath,
                    Check::EqualsView(View::Column(Column::InitiatingProcessFolderPath)),
                ),
            ),
        ];
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        assert!(matcher.unfiltered_rules() >= 4);
        let rows = [
            Row(vec![(Column::FolderPath, "C:\\Windows\\System32\\CMD.EXE")]),
            Row(vec![
                (Column::FolderPath, "C:\\x\\powershell.exe"),
                (Column::ProcessCommandLine, "powershell -enc AAAA"),
            ]),
            Row(vec![
                (Column::FolderPath, "C:\\x\\powershell.exe"),
                (Column::ProcessCommandLine, "powershell"),
            ]),
            Row(vec![
                (Column::ProcessCurrentDirectory, "C:\\"),
                (Column::ProcessCommandLine, "x c:\\perfc.dat"),
            ]),
            Row(vec![(Column::FolderPath, "C:\\a.exe"), (Column::InitiatingProcessFolderPath, "c:\\A.EXE")]),
        ];
        let expected: [&[&str]; 5] =
            [&["a", "f"], &["c", "f"], &["b", "f"], &["d", "f", "g", "h"], &["f", "h"]];
        let mut scratch = Scratch::default();
        for (row, expected) in rows.iter().zip(expected) {
            let mut matched = Vec::new();
            matcher.evaluate(row, &mut scratch, &mut matched);
            let ids: Vec<&str> = matched.iter().map(|&r| pack.rules[r as usize].id.as_str()).collect();
            // Row 4: FolderPath and its parent are both empty, and equal.
            assert_eq!(ids, expected, "{:?}", row.0);
        }
    }
}
