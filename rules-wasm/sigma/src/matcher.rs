//! Evaluates a [`Pack`] over events: which rules match an event.
//!
//! The cost of an event must not grow with the number of rules. Every test of every rule is
//! numbered once (a test that several rules share is evaluated once per event); every
//! pattern's longest text, and the texts a regular expression's matches hold
//! (`regex_texts.rs`), go into one text search per value of the event
//! (`text_search.rs`). For each rule the compiler of this module picks groups of tests
//! of which one at least must hold for the rule to match (its *requirement*): which values
//! are searched is decided by each rule's group on the cheapest values, then each rule is
//! guarded by its groups least often found. The texts found in an event's values name the
//! only rules worth evaluating. Rules whose requirement cannot be put in texts (an
//! expression without a literal, `null`, a negation alone) are evaluated on every event.
//! A value equal to one of the last two its view had is not searched again: what was found
//! in it is taken again (`RecentValues`), and so are the results of the tests that read it
//! and of the rules whose every value is such a value.

// FxHash: the build hashes every test of every rule, and SipHash took a tenth of the
// catalog's build in the guest; the keys are the pack's own, so flooding is not a concern
// beyond the rule bounds the host checks.
use rustc_hash::FxHashMap as HashMap;

use regex::{Regex, RegexBuilder};
use std::sync::OnceLock;

use crate::ir::{
    Check, Column, Expr, FORMAT, KEYWORD_VIEWS, Pack, Pattern, Piece, Target, Test, View, fold, folded,
};
use crate::regex_texts::{ClassRun, RequiredRun, class_run, required_run, required_texts};
use crate::text_search::{TextSearch, equal};

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
    /// A test of a pattern that holds only where its text (the second number) was found: the
    /// text is looked at first, which settles most of them.
    Found(u32, u32),
}

impl Node {
    /// Appends the tests the node holds.
    fn tests(&self, out: &mut Vec<u32>) {
        match self {
            Node::And(nodes) | Node::Or(nodes) => nodes.iter().for_each(|n| n.tests(out)),
            Node::Not(node) => node.tests(out),
            Node::Test(test) | Node::Found(test, _) => out.push(*test),
        }
    }

    /// The node with each test of a searched pattern marked [`Node::Found`].
    fn guarded(self, tests: &[Compiled]) -> Node {
        match self {
            Node::And(nodes) => Node::And(nodes.into_iter().map(|n| n.guarded(tests)).collect()),
            Node::Or(nodes) => Node::Or(nodes.into_iter().map(|n| n.guarded(tests)).collect()),
            Node::Not(node) => Node::Not(Box::new(node.guarded(tests))),
            Node::Test(test) => match tests[test as usize] {
                Compiled::Pattern { text: Some(text), .. } => Node::Found(test, text),
                _ => Node::Test(test),
            },
            found @ Node::Found(..) => found,
        }
    }
}

/// The rules' conditions as programs of [`Step`]s, one after another: a condition is
/// evaluated by a loop over its steps rather than by a recursive walk of its tree, which in
/// the pack (Wasm) cost twice what it did natively, a call and its frame per node.
#[derive(Debug, Default)]
struct Programs {
    /// Where each rule's steps start in `steps`; a rule's end is the next one's start.
    starts: Vec<u32>,
    steps: Vec<Step>,
}

/// A step of a condition's program, over one result (true at the start). `and` and `or`
/// short-circuit by going to their end: the result there is the one that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The result is this.
    Is(bool),
    /// The result is the test's.
    Test(u32),
    /// The result is the test's where its text (the second number) was found, false otherwise.
    Found(u32, u32),
    /// Where the result is false, go on from this step (an `and` decided).
    UnlessGoTo(u32),
    /// Where the result is true, go on from this step (an `or` decided).
    IfGoTo(u32),
    /// The result negated.
    Not,
}

impl Programs {
    fn new(rules: &[Node]) -> Self {
        let mut programs = Programs::default();
        for rule in rules {
            programs.starts.push(programs.steps.len() as u32);
            let start = programs.steps.len();
            programs.write(rule, start);
        }
        programs.starts.push(programs.steps.len() as u32);
        programs
    }

    /// Writes the steps of `node` into a program that starts at `start` (jumps are within
    /// the rule's steps).
    fn write(&mut self, node: &Node, start: usize) {
        match node {
            Node::Test(test) => self.steps.push(Step::Test(*test)),
            Node::Found(test, text) => self.steps.push(Step::Found(*test, *text)),
            Node::Not(node) => {
                self.write(node, start);
                self.steps.push(Step::Not);
            }
            Node::And(nodes) | Node::Or(nodes) if nodes.is_empty() => {
                self.steps.push(Step::Is(matches!(node, Node::And(_))));
            }
            Node::And(nodes) | Node::Or(nodes) => {
                // Each operand but the last is followed by a jump to the end, known once the
                // last is written.
                let jump =
                    |to| if matches!(node, Node::And(_)) { Step::UnlessGoTo(to) } else { Step::IfGoTo(to) };
                let mut jumps = Vec::with_capacity(nodes.len() - 1);
                for (i, operand) in nodes.iter().enumerate() {
                    self.write(operand, start);
                    if i + 1 < nodes.len() {
                        jumps.push(self.steps.len());
                        self.steps.push(jump(0));
                    }
                }
                let end = (self.steps.len() - start) as u32;
                for at in jumps {
                    self.steps[at] = jump(end);
                }
            }
        }
    }

    /// The number of rules.
    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The steps of rule `rule`.
    fn of(&self, rule: usize) -> &[Step] {
        &self.steps[self.starts[rule] as usize..self.starts[rule + 1] as usize]
    }
}

impl Compiled {
    /// The texts a prefilter can find of which the value holds one at least whenever the test
    /// holds (empty when there are none).
    fn texts(&self) -> &[u32] {
        match self {
            Compiled::Pattern { text, .. } => text.as_slice(),
            Compiled::Regex { texts, .. } => texts,
            _ => &[],
        }
    }

    /// The one view a pattern or a regular expression reads.
    fn view(&self) -> Option<u16> {
        match self {
            Compiled::Pattern { view, .. } | Compiled::Regex { view, .. } => Some(*view),
            _ => None,
        }
    }

    /// Every view the test reads.
    fn views(&self) -> impl Iterator<Item = u16> {
        let (view, other) = match *self {
            Compiled::Pattern { view, .. } | Compiled::Regex { view, .. } | Compiled::Empty { view } => {
                (view, None)
            }
            Compiled::EqualsView { view, other } => (view, Some(other)),
        };
        std::iter::once(view).chain(other)
    }
}

/// The shortest text of a pattern the prefilter looks for. A one-byte text (`\\`, `-`) is in
/// most values: looking for it cost more than reading the value for the few tests that have
/// it, and it told few rules apart (measured on the catalog's real events: 20.6 candidate
/// rules per event without them, 20.2 with them, and 6% fewer instructions).
const MIN_TEXT: usize = 2;

/// How many of its view's texts hold a text (itself included) for it to be common: in most
/// events, as `.exe` and `\\windows\\` are. Measured on the catalog over real events, 6 to 15
/// give the same instructions per event (within 1%); 30 keeps too many, and searching for none
/// of the texts outside the requirements made the event dearer than searching for all.
const COMMON_TEXT: u32 = 8;

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
    /// A pattern; `text` is the index of its required text (folded) in its view's automaton,
    /// if any. A `cased` pattern is matched against the value as it is, not folded.
    Pattern {
        view: u16,
        pattern: Pattern,
        text: Option<u32>,
        shape: Shape,
        cased: bool,
    },
    /// A regular expression, compiled when an event first reaches it: most never do, past
    /// the prefilter, and compiling the catalog's took most of a pack's start.
    Regex {
        view: u16,
        source: RegexSource,
        regex: OnceLock<Regex>,
        /// Texts one of which every match holds (folded), if the expression has them: the
        /// rarest-looking such set, which the prefilter's requirement may use.
        texts: Vec<u32>,
        /// More such sets, each of which must have a text found for the expression to run.
        more: Vec<Vec<u32>>,
        /// A run of one class every match holds, if it is long: a value without it is not
        /// searched. (None where `class_run` settles the expression.)
        run: Option<Box<RequiredRun>>,
        /// The expression is one class repeated: its verdict, without the expression.
        class_run: Option<Box<ClassRun>>,
    },
    Empty {
        view: u16,
    },
    EqualsView {
        view: u16,
        other: u16,
    },
}

/// A pattern made of its required text alone, and where: the automaton's hits, with their
/// places, settle it without reading the value again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `text`.
    Equals,
    /// `text*`.
    StartsWith,
    /// `*text`.
    EndsWith,
    /// `*text*`.
    Contains,
    /// Anything else: the pattern is matched against the value.
    Other,
}

impl Shape {
    fn of(pattern: &Pattern) -> Shape {
        use Piece::{AnyRun, Text};
        match pattern.0.as_slice() {
            [Text(t)] if !t.is_empty() => Shape::Equals,
            [Text(t), AnyRun] if !t.is_empty() => Shape::StartsWith,
            [AnyRun, Text(t)] if !t.is_empty() => Shape::EndsWith,
            [AnyRun, Text(t), AnyRun] if !t.is_empty() => Shape::Contains,
            _ => Shape::Other,
        }
    }

    /// The verdict of a pattern of this shape, from where its text was found in the value
    /// (a set of [`FOUND`], [`AT_START`], [`AT_END`], [`WHOLE`]); `None` for [`Shape::Other`].
    fn verdict(self, places: u8) -> Option<bool> {
        let needed = match self {
            Shape::Equals => WHOLE,
            Shape::StartsWith => AT_START,
            Shape::EndsWith => AT_END,
            Shape::Contains => FOUND,
            Shape::Other => return None,
        };
        Some(places & needed != 0)
    }
}

/// Where a text was found in a value: somewhere, at its start, at its end, as all of it.
const FOUND: u8 = 1;
const AT_START: u8 = 2;
const AT_END: u8 = 4;
const WHOLE: u8 = 8;

/// The search for the required texts of one view, over its folded value.
#[derive(Debug)]
struct Prefilter {
    view: u16,
    search: TextSearch,
    /// For each of the search's texts, the global text number.
    texts: Vec<u32>,
}

/// Which rules a text found makes candidates. Each rule's requirement has up to eight groups
/// of texts, and the rule is a candidate once a text of every group is found. One group is
/// its *trigger*: only that group's texts lead to the rule, and the rule's other groups are
/// then looked up among the texts found. The trigger is the group least named by rules: a text
/// many rules name (`\cmd.exe` on the image, `high` integrity) is one most events hold, and
/// when every group's texts led to the rule, it led to dozens of rules in most events whose
/// other groups were not found: 130 rules looked at per real process creation, 37 of them for
/// `\cmd.exe` alone; 14 with triggers, for 10.4 candidates.
#[derive(Debug)]
struct Requirements {
    /// Where each text's rules start in `triggered`; a text's end is the next one's start.
    text_starts: Vec<u32>,
    /// The rules each text is the trigger of, text after text.
    triggered: Vec<u32>,
    /// Where each rule's other groups start in `others`; a rule's end is the next one's start.
    rule_starts: Vec<u32>,
    /// Each rule's other groups, least named first: a group is its number of texts, then
    /// those texts.
    others: Vec<u32>,
}

impl Requirements {
    /// The table of the rules' requirements: for each rule, its groups of texts, each group's
    /// distinct (none for a rule evaluated on every event); `texts` is the number of texts.
    fn new(groups_of_rules: &[Vec<Vec<u32>>], texts: usize) -> Self {
        // How many rules name each text.
        let mut named = vec![0u32; texts];
        for groups in groups_of_rules {
            let mut of_rule: Vec<u32> = groups.iter().flatten().copied().collect();
            of_rule.sort_unstable();
            of_rule.dedup();
            for text in of_rule {
                named[text as usize] += 1;
            }
        }
        let weight = |group: &Vec<u32>| {
            (group.iter().map(|&t| u64::from(named[t as usize])).sum::<u64>(), group.len())
        };
        let mut of_text: Vec<Vec<u32>> = vec![Vec::new(); texts];
        let mut rule_starts = Vec::with_capacity(groups_of_rules.len() + 1);
        let mut others = Vec::new();
        for (rule, groups) in groups_of_rules.iter().enumerate() {
            rule_starts.push(u32::try_from(others.len()).expect("fewer than 2^32 requirement texts"));
            let mut groups: Vec<&Vec<u32>> = groups.iter().collect();
            groups.sort_by_key(|group| weight(group));
            let Some((trigger, rest)) = groups.split_first() else { continue };
            for &text in trigger.iter() {
                of_text[text as usize].push(rule as u32);
            }
            for group in rest {
                others.push(group.len() as u32);
                others.extend_from_slice(group);
            }
        }
        rule_starts.push(u32::try_from(others.len()).expect("fewer than 2^32 requirement texts"));
        let mut text_starts = Vec::with_capacity(texts + 1);
        let mut triggered = Vec::new();
        for rules in of_text {
            text_starts.push(u32::try_from(triggered.len()).expect("fewer than 2^32 text rules"));
            triggered.extend(rules);
        }
        text_starts.push(u32::try_from(triggered.len()).expect("fewer than 2^32 text rules"));
        Requirements { text_starts, triggered, rule_starts, others }
    }

    /// The number of texts.
    fn texts(&self) -> usize {
        self.text_starts.len() - 1
    }

    /// The rules text `text` is the trigger of.
    fn triggered_by(&self, text: usize) -> &[u32] {
        &self.triggered[self.text_starts[text] as usize..self.text_starts[text + 1] as usize]
    }

    /// Whether every group of `rule` but its trigger has a text found in `generation`.
    fn others_found(&self, rule: u32, found: &[u32], generation: u32) -> bool {
        let r = rule as usize;
        let mut rest = &self.others[self.rule_starts[r] as usize..self.rule_starts[r + 1] as usize];
        while let Some((&len, tail)) = rest.split_first() {
            let (group, next) = tail.split_at(len as usize);
            if !group.iter().any(|&text| found[text as usize] == generation) {
                return false;
            }
            rest = next;
        }
        true
    }
}

/// The matcher of one pack: built once, used for every event.
#[derive(Debug)]
pub struct Matcher {
    /// The rules' conditions.
    programs: Programs,
    tests: Vec<Compiled>,
    views: Vec<View>,
    prefilters: Vec<Prefilter>,
    /// For each global text, the rules it may make candidates.
    requirements: Requirements,
    /// Rules evaluated on every event.
    always: Vec<u32>,
    /// For each view, the prefilter that searches it, if one does.
    prefilter_of: Vec<Option<u16>>,
    /// For each rule whose every view is searched: the prefilters of those views, and where
    /// its results on remembered values are kept in [`Scratch::rule_results`].
    rule_values: Vec<Option<RuleValues>>,
    /// The length of [`Scratch::rule_results`].
    rule_results_len: usize,
    /// This matcher among those built in the process: a [`Scratch`] remembers what it found
    /// for one matcher only.
    identity: u64,
}

/// The searched views a rule reads (see [`Matcher::rule_values`]).
#[derive(Debug)]
struct RuleValues {
    prefilters: Box<[u16]>,
    /// Where its two results start in [`Scratch::rule_results`] (see [`KeptResults`]).
    at: usize,
}

/// The number the next matcher built takes as its [`Matcher::identity`].
static NEXT_MATCHER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What one event's evaluation needs besides the matcher, kept between events so that no
/// buffer is allocated again.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The [`Matcher::identity`] of the matcher it was set up for.
    matcher: u64,
    generation: u32,
    raw: Vec<String>,
    folded: Vec<String>,
    raw_ready: Vec<u32>,
    folded_ready: Vec<u32>,
    /// Per global text: the generation in which it was found.
    found: Vec<u32>,
    /// Per global text: where it was found in this generation ([`FOUND`] and the others).
    places: Vec<u8>,
    /// Per test: generation * 2 + result, once evaluated.
    results: Vec<u64>,
    /// Per rule: the generation in which it became a candidate.
    candidate: Vec<u32>,
    candidates: Vec<u32>,
    /// The texts found in this event, in the order found, with where (see [`merge_repeats`]).
    found_now: Vec<(u32, u8)>,
    /// The texts found in this event, each once.
    found_once: Vec<u32>,
    /// How many rules the texts found in this event led to.
    looked_at: usize,
    /// The bytes the prefilter read in this event.
    searched: usize,
    /// Per prefilter: the last values its view had and what was found in them.
    recent: Vec<RecentValues>,
    /// The number the next value a prefilter remembers takes ([`SearchedValue::number`]).
    next_value: u64,
    /// Per test of a searched view that reads the value: its results on two of the values
    /// remembered, under the value's number (at `test * KeptResults::span(1)`).
    test_results: KeptResults,
    /// Per rule whose views are all searched, its results on two sets of remembered values
    /// (at [`RuleValues::at`]): a rule whose values are those of an earlier event has that
    /// event's verdict.
    rule_results: KeptResults,
}

/// How many entries a search lists before the texts it listed more than once are merged.
const LISTED_BEFORE_MERGING: usize = 1024;

/// Merges the entries of `found` from `from` on that list the same text into one, with every
/// place it was found at, so that a search's list is bounded by its view's texts whatever
/// the value's length: listed at each occurrence, a value of a few megabytes of `{` or
/// `-e-e` made a list of eight bytes per byte of it, past the pack's memory. Done only where
/// a search lists [`LISTED_BEFORE_MERGING`] entries, so that the lists of most values cost
/// nothing more (a stamp per text found to list each once cost 1.6% of the catalog's pack
/// over real records).
fn merge_repeats(found: &mut Vec<(u32, u8)>, from: usize) {
    found[from..].sort_unstable_by_key(|&(text, _)| text);
    let mut kept = from;
    for at in from..found.len() {
        let (text, places) = found[at];
        if kept > from && found[kept - 1].0 == text {
            found[kept - 1].1 |= places;
        } else {
            found[kept] = (text, places);
            kept += 1;
        }
    }
    found.truncate(kept);
}

/// Results kept under the numbers of the remembered values they were had on (their key), two
/// per test or rule. Each is its key's numbers, then when it was kept (a count of results
/// kept) * 4 + 1 + the result, 0 for none; a third replaces the one kept first.
#[derive(Debug, Default)]
struct KeptResults {
    slots: Vec<u64>,
    kept: u64,
}

impl KeptResults {
    fn new(len: usize) -> Self {
        KeptResults { slots: vec![0; len], kept: 0 }
    }

    /// The slots the two results under a key of `len` numbers take.
    const fn span(len: usize) -> usize {
        2 * (len + 1)
    }

    /// The result kept at `at` under the key of `len` numbers that `key` gives, if any.
    #[inline(always)]
    fn get(&self, at: usize, len: usize, key: impl Fn(usize) -> u64) -> Option<bool> {
        let width = len + 1;
        (0..2).find_map(|slot| {
            let kept = &self.slots[at + slot * width..][..width];
            (kept[len] != 0 && (0..len).all(|i| kept[i] == key(i))).then_some(kept[len] & 3 == 2)
        })
    }

    /// Keeps `result` at `at` under the key of `len` numbers that `key` gives.
    fn keep(&mut self, at: usize, len: usize, key: impl Fn(usize) -> u64, result: bool) {
        let width = len + 1;
        let older = usize::from(self.slots[at + 2 * width - 1] < self.slots[at + width - 1]);
        let start = at + older * width;
        for i in 0..len {
            self.slots[start + i] = key(i);
        }
        self.kept += 1;
        self.slots[start + len] = (self.kept << 2) | (1 + u64::from(result));
    }
}

/// The last two distinct values of a searched view, each with its folded form and the texts
/// found in it.
///
/// Consecutive process creations often share a value. A parent spawns many children, so its
/// command line and image repeat from one event to the next. Each console program starts a
/// `conhost.exe` with the same command line, so the command lines alternate. Over the shared
/// real logs read once, in order, the last two values held more than half the bytes the
/// prefilter would have searched. A value equal to one of them is compared with it instead
/// of being folded and searched again; it is compared whole, so the texts replayed are
/// exactly the texts a search would find.
#[derive(Debug, Default)]
struct RecentValues {
    /// The latest first.
    values: [SearchedValue; 2],
    /// Whether this event's value is `values[0]`; a value longer than [`REMEMBERED_BYTES`]
    /// is not remembered, and is folded into [`Scratch::folded`] as any other view's.
    current: bool,
}

/// The longest value a view remembers. A longer one is searched every time, as before
/// values were remembered: copies of it in the pack's memory made events with command lines
/// of megabytes run out of it. At most two values of this size per view are kept.
const REMEMBERED_BYTES: usize = 16 << 10;

/// A value a prefilter searched, and what it found.
#[derive(Debug, Default)]
struct SearchedValue {
    /// Whether it holds a value yet (an empty value is a value).
    known: bool,
    /// The value's number among those the scratch remembered, from 1: a test's result on it
    /// is kept under this number (see [`Scratch::test_results`]), so that a value seen again
    /// is not matched again by the patterns and expressions its texts do not settle.
    number: u64,
    raw: String,
    folded: String,
    /// The texts found (global numbers) and where.
    found: Vec<(u32, u8)>,
}

impl SearchedValue {
    fn is(&self, raw: &str) -> bool {
        self.known && equal(self.raw.as_bytes(), raw.as_bytes())
    }
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
            requirements.push(builder.requirement(&node, Choice::Cheapest));
            rules.push(node);
        }
        builder.keep_texts_on(&builder.searched_views(&requirements));
        let prefilters = prefilters_of(&builder.texts);
        builder.commonness = commonness(&prefilters, &builder.texts);
        // Whether a rule's requirement holds each text.
        let mut required = vec![false; builder.texts.len()];
        let mut groups_of_rules: Vec<Vec<Vec<u32>>> = Vec::with_capacity(pack.rules.len());
        let mut always = Vec::new();
        for (rule, node) in rules.iter().enumerate() {
            let groups = builder.kept_groups(builder.requirement(node, Choice::Rarest));
            if groups.is_empty() {
                always.push(rule as u32);
            }
            let groups: Vec<Vec<u32>> = groups
                .iter()
                .map(|tests| {
                    let mut texts: Vec<u32> = tests
                        .iter()
                        .flat_map(|&test| builder.tests[test as usize].texts())
                        .copied()
                        .collect();
                    texts.sort_unstable();
                    texts.dedup();
                    texts
                })
                .collect();
            for &text in groups.iter().flatten() {
                required[text as usize] = true;
            }
            groups_of_rules.push(groups);
        }
        // A text no rule's requirement holds is searched for only to settle its tests without
        // reading the value; a common one (`.exe`, `\\windows\\`) is found in most events, and
        // checking where it was found cost more than reading the value for the few candidate
        // rules that test it.
        let keep = builder.worth_searching(&required);
        let prefilters = if keep.iter().all(|&k| k) {
            prefilters
        } else {
            let kept = builder.keep_texts(&keep);
            for text in groups_of_rules.iter_mut().flatten().flatten() {
                *text = kept[*text as usize].expect("a requirement's texts are kept");
            }
            prefilters_of(&builder.texts)
        };
        let mut prefilter_of = vec![None; builder.views.len()];
        for (number, prefilter) in prefilters.iter().enumerate() {
            prefilter_of[prefilter.view as usize] = Some(number as u16);
        }
        let mut rule_results_len = 0;
        let rule_values = rules
            .iter()
            .map(|rule| {
                let mut tests = Vec::new();
                rule.tests(&mut tests);
                let mut views: Vec<u16> =
                    tests.iter().flat_map(|&test| builder.tests[test as usize].views()).collect();
                views.sort_unstable();
                views.dedup();
                let prefilters: Option<Box<[u16]>> =
                    views.iter().map(|&view| prefilter_of[usize::from(view)]).collect();
                let prefilters = prefilters.filter(|p| !p.is_empty())?;
                let at = rule_results_len;
                rule_results_len += KeptResults::span(prefilters.len());
                Some(RuleValues { prefilters, at })
            })
            .collect();
        Ok(Matcher {
            programs: Programs::new(
                &rules.into_iter().map(|rule| rule.guarded(&builder.tests)).collect::<Vec<_>>(),
            ),
            tests: builder.tests,
            views: builder.views,
            prefilters,
            requirements: Requirements::new(&groups_of_rules, builder.texts.len()),
            always,
            prefilter_of,
            rule_values,
            rule_results_len,
            identity: NEXT_MATCHER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.programs.len()
    }

    /// Whether the pack holds no rule.
    pub fn is_empty(&self) -> bool {
        self.programs.len() == 0
    }

    /// The rules evaluated on every event whatever its values (for reports).
    pub fn unfiltered_rules(&self) -> usize {
        self.always.len()
    }

    /// The values the prefilter searches, each with the number of texts it looks for and the
    /// bytes of its search.
    pub fn searched_views(&self) -> Vec<(View, usize, usize)> {
        self.prefilters
            .iter()
            .map(|p| (self.views[p.view as usize], p.texts.len(), p.search.memory_usage()))
            .collect()
    }

    /// The rules (by index) evaluated on every event.
    pub fn unfiltered(&self) -> &[u32] {
        &self.always
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
        let mut searched = 0;
        for number in 0..self.prefilters.len() {
            searched += scratch.search(self, number, event, &mut found);
        }
        let mut once = std::mem::take(&mut scratch.found_once);
        once.clear();
        for &(number, places) in &found {
            let n = number as usize;
            if scratch.found[n] == generation {
                scratch.places[n] |= places;
                continue;
            }
            scratch.found[n] = generation;
            scratch.places[n] = places;
            once.push(number);
        }
        // Every text found is stamped: a rule's other groups are looked up among them.
        let mut looked_at = 0;
        for &number in &once {
            let triggered = self.requirements.triggered_by(number as usize);
            looked_at += triggered.len();
            for &rule in triggered {
                if scratch.candidate[rule as usize] != generation
                    && self.requirements.others_found(rule, &scratch.found, generation)
                {
                    scratch.propose(rule, generation);
                }
            }
        }
        scratch.found_once = once;
        scratch.looked_at = looked_at;
        scratch.found_now = found;
        scratch.searched = searched;
        for &rule in &self.always {
            scratch.propose(rule, generation);
        }
        let mut candidates = std::mem::take(&mut scratch.candidates);
        candidates.sort_unstable();
        for &rule in &candidates {
            if self.rule_holds(rule, event, scratch, generation) {
                matched.push(rule);
            }
        }
        scratch.candidates = candidates;
    }

    /// Whether `rule` holds: its result on the same values when it had them in one of the
    /// last two events it was evaluated on with all its views searched; evaluated and kept
    /// otherwise.
    fn rule_holds(&self, rule: u32, event: &dyn Event, scratch: &mut Scratch, generation: u32) -> bool {
        let steps = self.programs.of(rule as usize);
        let Some(RuleValues { prefilters, at }) = &self.rule_values[rule as usize] else {
            return self.holds(steps, event, scratch, generation);
        };
        if prefilters.iter().any(|&p| !scratch.recent[usize::from(p)].current) {
            return self.holds(steps, event, scratch, generation);
        }
        let value = |recent: &[RecentValues], i: usize| recent[usize::from(prefilters[i])].values[0].number;
        if let Some(result) = scratch.rule_results.get(*at, prefilters.len(), |i| value(&scratch.recent, i)) {
            return result;
        }
        let result = self.holds(steps, event, scratch, generation);
        scratch.rule_results.keep(*at, prefilters.len(), |i| value(&scratch.recent, i), result);
        result
    }

    /// The result of a rule's program.
    fn holds(&self, steps: &[Step], event: &dyn Event, scratch: &mut Scratch, generation: u32) -> bool {
        let mut result = true;
        let mut at = 0;
        while let Some(&step) = steps.get(at) {
            at += 1;
            result = match step {
                Step::Is(is) => is,
                // A test whose text was not found is settled here, without a call: most
                // operands of the catalog's long lists are.
                Step::Found(_, text) if scratch.found[text as usize] != generation => false,
                Step::Test(test) | Step::Found(test, _) => self.test_once(test, event, scratch, generation),
                Step::UnlessGoTo(to) => {
                    if !result {
                        at = to as usize;
                    }
                    result
                }
                Step::IfGoTo(to) => {
                    if result {
                        at = to as usize;
                    }
                    result
                }
                Step::Not => !result,
            };
        }
        result
    }

    /// The result of `test` on this event, evaluated once per event.
    fn test_once(&self, test: u32, event: &dyn Event, scratch: &mut Scratch, generation: u32) -> bool {
        let slot = scratch.results[test as usize];
        if slot >> 1 == u64::from(generation) {
            return slot & 1 == 1;
        }
        let result = self.test(test, event, scratch, generation);
        scratch.results[test as usize] = (u64::from(generation) << 1) | u64::from(result);
        result
    }

    fn test(&self, test: u32, event: &dyn Event, scratch: &mut Scratch, generation: u32) -> bool {
        match &self.tests[test as usize] {
            Compiled::Pattern { view, pattern, text, shape, cased } => {
                // The automaton ran over this view: a missing text settles it, and so do the
                // places it was found at, for a pattern that is its text alone (a cased
                // pattern's shape is `Other`: its text found folded is not yet its case).
                if let Some(text) = text {
                    if scratch.found[*text as usize] != generation {
                        return false;
                    }
                    if let Some(verdict) = shape.verdict(scratch.places[*text as usize]) {
                        return verdict;
                    }
                }
                self.on_value(test, *view, scratch, |scratch| {
                    if *cased {
                        matches(pattern, scratch.raw(self, event, *view))
                    } else {
                        matches(pattern, scratch.folded(self, event, *view))
                    }
                })
            }
            Compiled::Regex { view, source, regex, texts, more, run, class_run } => {
                let missing = |set: &[u32]| {
                    !set.is_empty() && set.iter().all(|&text| scratch.found[text as usize] != generation)
                };
                if missing(texts) || more.iter().any(|set| missing(set)) {
                    return false;
                }
                self.on_value(test, *view, scratch, |scratch| {
                    let value = scratch.raw(self, event, *view);
                    if let Some(class_run) = class_run {
                        return class_run.in_value(value);
                    }
                    run.as_ref().is_none_or(|run| run.in_value(value.as_bytes()))
                        && regex
                            .get_or_init(|| source.build().expect("checked when the matcher was built"))
                            .is_match(value)
                })
            }
            Compiled::Empty { view } => scratch.raw(self, event, *view).is_empty(),
            Compiled::EqualsView { view, other } => {
                let left = scratch.folded(self, event, *view).to_owned();
                left == scratch.folded(self, event, *other)
            }
        }
    }

    /// The result of `test`, which reads the value of `view` alone: `evaluate`'s on this
    /// value, taken again when the test had it on an earlier event with the same value (see
    /// [`RecentValues`]); evaluated and kept otherwise.
    #[inline(always)]
    fn on_value(
        &self,
        test: u32,
        view: u16,
        scratch: &mut Scratch,
        evaluate: impl FnOnce(&mut Scratch) -> bool,
    ) -> bool {
        let Some(value) = self.prefilter_of[usize::from(view)].and_then(|p| scratch.value_number(p)) else {
            return evaluate(scratch);
        };
        let at = test as usize * KeptResults::span(1);
        if let Some(result) = scratch.test_results.get(at, 1, |_| value) {
            return result;
        }
        let result = evaluate(scratch);
        scratch.test_results.keep(at, 1, |_| value, result);
        result
    }
}

impl Scratch {
    /// Starts an event: a new generation invalidates what the last one computed.
    fn begin(&mut self, matcher: &Matcher) -> u32 {
        if self.matcher != matcher.identity {
            *self = Scratch {
                matcher: matcher.identity,
                recent: (0..matcher.prefilters.len()).map(|_| RecentValues::default()).collect(),
                raw: vec![String::new(); matcher.views.len()],
                folded: vec![String::new(); matcher.views.len()],
                raw_ready: vec![0; matcher.views.len()],
                folded_ready: vec![0; matcher.views.len()],
                found: vec![0; matcher.requirements.texts()],
                places: vec![0; matcher.requirements.texts()],
                results: vec![0; matcher.tests.len()],
                candidate: vec![0; matcher.programs.len()],
                test_results: KeptResults::new(KeptResults::span(1) * matcher.tests.len()),
                rule_results: KeptResults::new(matcher.rule_results_len),
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

    /// How many texts the last event's prefilter found, each time found but where a value's
    /// list was merged (for reports).
    pub fn hits(&self) -> usize {
        self.found_now.len()
    }

    /// How many bytes the last event's prefilter read (for reports).
    pub fn searched(&self) -> usize {
        self.searched
    }

    /// How many rules the texts found in the last event led to, each time led to: the rules
    /// whose other groups were then looked up (for reports).
    pub fn looked_at(&self) -> usize {
        self.looked_at
    }

    /// How many rules the last event's prefilter left to evaluate (for reports).
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    fn propose(&mut self, rule: u32, generation: u32) {
        if self.candidate[rule as usize] != generation {
            self.candidate[rule as usize] = generation;
            self.candidates.push(rule);
        }
    }

    /// Searches the value of prefilter `number`'s view, unless it is one of the view's last
    /// two values, and adds the texts found in it to `found`; the bytes searched.
    fn search(
        &mut self,
        matcher: &Matcher,
        number: usize,
        event: &dyn Event,
        found: &mut Vec<(u32, u8)>,
    ) -> usize {
        let prefilter = &matcher.prefilters[number];
        let v = prefilter.view as usize;
        let raw =
            raw_value(&mut self.raw[v], &mut self.raw_ready[v], self.generation, matcher.views[v], event);
        let searched_at = |folded: &str, found: &mut Vec<(u32, u8)>| {
            let (end, from) = (folded.len(), found.len());
            let mut merge_at = from + LISTED_BEFORE_MERGING;
            prefilter.search.find(folded.as_bytes(), |hit| {
                let (at_start, at_end) = (hit.start == 0, hit.end == end);
                let places = FOUND
                    | if at_start { AT_START } else { 0 }
                    | if at_end { AT_END } else { 0 }
                    | if at_start && at_end { WHOLE } else { 0 };
                found.push((prefilter.texts[hit.text as usize], places));
                if found.len() == merge_at {
                    merge_repeats(found, from);
                    // At least as many entries again before the next merge: merging costs
                    // a sort of what is listed.
                    merge_at = found.len() + LISTED_BEFORE_MERGING.max(found.len() - from);
                }
            });
            // Merged once: merged at the end too, so that what is listed past the last merge
            // is bounded as well.
            if merge_at != from + LISTED_BEFORE_MERGING {
                merge_repeats(found, from);
            }
            end
        };
        self.folded_ready[v] = self.generation;
        let recent = &mut self.recent[number];
        if raw.len() > REMEMBERED_BYTES {
            recent.current = false;
            fold(raw, &mut self.folded[v]);
            return searched_at(&self.folded[v], found);
        }
        // The latest value is this one: `folded` reads it from there.
        recent.current = true;
        let values = &mut recent.values;
        let mut searched = 0;
        if !values[0].is(raw) {
            values.swap(0, 1);
            if !values[0].is(raw) {
                let SearchedValue { known, number, raw: kept, folded, found: in_value } = &mut values[0];
                *known = true;
                self.next_value += 1;
                *number = self.next_value;
                kept.clear();
                kept.push_str(raw);
                fold(raw, folded);
                in_value.clear();
                searched = searched_at(folded, in_value);
            }
        }
        found.extend_from_slice(&values[0].found);
        searched
    }

    /// The number of this event's value of prefilter `number`'s view, if it is remembered.
    fn value_number(&self, number: u16) -> Option<u64> {
        let recent = &self.recent[usize::from(number)];
        recent.current.then_some(recent.values[0].number)
    }

    /// The value of `view`: a column's is the event's own, not a copy (copying every
    /// searched view took about a tenth of the catalog's run in Wasm, with reading them).
    fn raw<'a>(&'a mut self, matcher: &Matcher, event: &'a dyn Event, view: u16) -> &'a str {
        let v = view as usize;
        raw_value(&mut self.raw[v], &mut self.raw_ready[v], self.generation, matcher.views[v], event)
    }

    fn folded(&mut self, matcher: &Matcher, event: &dyn Event, view: u16) -> &str {
        let v = view as usize;
        if let Some(number) = matcher.prefilter_of[v] {
            // `evaluate` searched it first thing: this event's value is the latest of its
            // recent values, or was folded apart.
            debug_assert_eq!(self.folded_ready[v], self.generation, "view {v} searched before it is read");
            let recent = &self.recent[usize::from(number)];
            return if recent.current { &recent.values[0].folded } else { &self.folded[v] };
        }
        if self.folded_ready[v] != self.generation {
            // `raw` borrows the scratch for a view that is not a column: folded apart.
            let mut folded = std::mem::take(&mut self.folded[v]);
            fold(self.raw(matcher, event, view), &mut folded);
            self.folded[v] = folded;
            self.folded_ready[v] = self.generation;
        }
        &self.folded[v]
    }
}

/// The value of `view` of `event`: a column's is the event's own; another view's is written
/// into `out` once per `generation` (`ready` says when it last was). Apart from [`Scratch`],
/// so that its caller may borrow the scratch's other parts beside it.
fn raw_value<'a>(
    out: &'a mut String,
    ready: &mut u32,
    generation: u32,
    view: View,
    event: &'a dyn Event,
) -> &'a str {
    if let View::Column(column) = view {
        return event.column(column);
    }
    if *ready != generation {
        *ready = generation;
        out.clear();
        render(view, event, out);
    }
    out
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
        [Text(t)] => equal(text.as_bytes(), t.as_bytes()),
        [Text(t), AnyRun] => text.get(..t.len()).is_some_and(|head| equal(head.as_bytes(), t.as_bytes())),
        [AnyRun, Text(t)] => {
            text.len() >= t.len() && equal(&text.as_bytes()[text.len() - t.len()..], t.as_bytes())
        }
        [AnyRun, Text(t), AnyRun] => memchr::memmem::find(text.as_bytes(), t.as_bytes()).is_some(),
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
                let mut next = from + char_len(from);
                // The `*` takes one more character; when a text follows it, as many as lead
                // to the text's next occurrence (a search, not a step per character: a long
                // command line made this loop the matcher's costliest).
                if let Some(Piece::Text(piece)) = pieces.get(after) {
                    match memchr::memmem::find(&bytes[next..], piece.as_bytes()) {
                        Some(at) => next += at,
                        None => return false,
                    }
                }
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
    /// Per kept text, how many texts of its view hold it (see [`commonness`]).
    commonness: Vec<u32>,
}

/// How a requirement's group is chosen among a node's.
#[derive(Debug, Clone, Copy)]
enum Choice {
    /// On the cheapest views to search (a command line is ten times the length of a path),
    /// then the smallest, then the one with the longest shortest text: this decides which
    /// views are searched at all.
    Cheapest,
    /// Among the groups on searched views, the one least often found: its texts are held
    /// by the fewest of their views' texts in all, then the longest shortest text.
    Rarest,
}

/// One search per view over its `texts` (numbered as in `texts`), by view.
fn prefilters_of(texts: &[(u16, String)]) -> Vec<Prefilter> {
    let mut by_view: HashMap<u16, (Vec<String>, Vec<u32>)> = HashMap::default();
    for (number, (view, text)) in texts.iter().enumerate() {
        let entry = by_view.entry(*view).or_default();
        entry.0.push(text.clone());
        entry.1.push(number as u32);
    }
    let mut views: Vec<u16> = by_view.keys().copied().collect();
    views.sort_unstable();
    views
        .into_iter()
        .map(|view| {
            let (patterns, texts) = by_view.remove(&view).expect("listed above");
            Prefilter { view, search: TextSearch::new(&patterns), texts }
        })
        .collect()
}

/// For each text, how many texts of its view hold it, itself included: how common it is in
/// what the rules look for. `\windows\` and `.exe` are in hundreds of the catalog's paths, as
/// they are in nearly every event's; `\edr-freeze` is in one. Length alone misjudged them:
/// a rule whose one choice was `.exe` or `\windows\` was evaluated on nearly every event.
fn commonness(prefilters: &[Prefilter], texts: &[(u16, String)]) -> Vec<u32> {
    let mut counts = vec![0u32; texts.len()];
    let mut holding = Vec::new();
    for prefilter in prefilters {
        for &number in &prefilter.texts {
            holding.clear();
            prefilter.search.find(texts[number as usize].1.as_bytes(), |hit| holding.push(hit.text));
            holding.sort_unstable();
            holding.dedup();
            for &held in &holding {
                counts[prefilter.texts[held as usize] as usize] += 1;
            }
        }
    }
    counts
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
            // A keyword is its pattern on any keyword view: one test per view, so that each
            // has its view's text searched for and settled as any pattern's is (as one test
            // over every view, it was read in each on every event).
            Expr::Test(Test {
                target: Target::Keyword,
                check: check @ (Check::Pattern(_) | Check::CasedPattern(_)),
            }) => Node::Or(
                KEYWORD_VIEWS
                    .iter()
                    .map(|view| {
                        let test = Test { target: Target::View(*view), check: check.clone() };
                        self.test(&test).map(Node::Test)
                    })
                    .collect::<Result<_, _>>()?,
            ),
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
            (Target::Keyword, _) => return Err("a keyword can only be a string".into()),
            // Folded, a cased pattern's text is in the folded value wherever the text is in the
            // value (folding is character by character): the automaton still rules values out,
            // but where it found the text does not settle the case (its shape is `Other`).
            (Target::View(view), check @ (Check::Pattern(pattern) | Check::CasedPattern(pattern))) => {
                let cased = matches!(check, Check::CasedPattern(_));
                let view = self.view(*view);
                let text = pattern
                    .required_text()
                    .map(|text| if cased { folded(text) } else { text.to_owned() })
                    .filter(|t| t.len() >= MIN_TEXT)
                    .map(|text| self.text_number(view, &text));
                let shape = if cased { Shape::Other } else { Shape::of(pattern) };
                Compiled::Pattern { view, pattern: pattern.clone(), text, shape, cased }
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
                let mut sets = required_texts(&hir)
                    .iter()
                    .map(|set| set.iter().map(|text| self.text_number(view, text)).collect())
                    .collect::<Vec<Vec<u32>>>()
                    .into_iter();
                let texts = sets.next().unwrap_or_default();
                // An expression that is a class repeated is settled by its count: a run it
                // requires would never be read.
                let class_run = class_run(&hir).map(Box::new);
                let run = if class_run.is_some() { None } else { required_run(&hir).map(Box::new) };
                Compiled::Regex {
                    view,
                    source,
                    regex: OnceLock::new(),
                    texts,
                    more: sets.collect(),
                    run,
                    class_run,
                }
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

    /// Groups of tests, each with a required text, such that whenever `node` holds at least
    /// one test of every group holds; empty when no such group is known.
    fn requirement(&self, node: &Node, choice: Choice) -> Vec<Vec<u32>> {
        match node {
            Node::Test(test) | Node::Found(test, _) => match &self.tests[*test as usize] {
                compiled if !compiled.texts().is_empty() => vec![vec![*test]],
                _ => Vec::new(),
            },
            // Every operand's groups hold.
            Node::And(nodes) => nodes.iter().flat_map(|n| self.requirement(n, choice)).collect(),
            // One operand holds: the union of one group of each, if each has one. `Or([])`
            // never holds: the empty group says so.
            Node::Or(nodes) => {
                let mut all = Vec::new();
                for node in nodes {
                    let groups = self.requirement(node, choice);
                    let Some(best) = self.best_group(&groups, choice) else { return Vec::new() };
                    all.extend_from_slice(&groups[best]);
                }
                vec![all]
            }
            Node::Not(_) => Vec::new(),
        }
    }

    /// The group to search for first, as `choice` says; `None` when there is none.
    fn best_group(&self, groups: &[Vec<u32>], choice: Choice) -> Option<usize> {
        let longest_shortest =
            |tests: &[u32]| std::cmp::Reverse(tests.iter().map(|t| self.text_len(*t)).min().unwrap_or(0));
        match choice {
            Choice::Cheapest => (0..groups.len()).min_by_key(|&g| {
                let tests = &groups[g];
                (self.search_cost(tests), tests.len(), longest_shortest(tests))
            }),
            Choice::Rarest => (0..groups.len()).min_by_key(|&g| {
                let tests = &groups[g];
                (self.found_in_texts(tests), longest_shortest(tests))
            }),
        }
    }

    /// How many of their views' texts hold the texts of `tests`, in all (see [`commonness`]).
    fn found_in_texts(&self, tests: &[u32]) -> usize {
        tests
            .iter()
            .flat_map(|&t| self.tests[t as usize].texts())
            .map(|&text| self.commonness[text as usize] as usize)
            .sum()
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

    /// The views the prefilter searches: those of each rule's cheapest group. A view no
    /// such group reads is never searched, and a test on it reads the view when its rule is
    /// a candidate.
    fn searched_views(&self, requirements: &[Vec<Vec<u32>>]) -> Vec<bool> {
        let mut searched = vec![false; self.views.len()];
        for groups in requirements {
            let best = self.best_group(groups, Choice::Cheapest);
            for &test in best.map(|b| &groups[b]).into_iter().flatten() {
                if let Some(view) = self.tests[test as usize].view() {
                    searched[view as usize] = true;
                }
            }
        }
        searched
    }

    /// Keeps the texts of the searched views, all of them, so that a test whose text was not
    /// found is settled without reading the value; a test on another view has no text left.
    fn keep_texts_on(&mut self, searched: &[bool]) {
        let keep: Vec<bool> = self.texts.iter().map(|(view, _)| searched[*view as usize]).collect();
        self.keep_texts(&keep);
    }

    /// Keeps the texts `keep` says, renumbered in order; a test's text that is not kept is
    /// gone (its pattern is matched against the value), as is a regular expression's set
    /// with such a text (it no longer tells that no text of it is in the value). The new
    /// number of each old text, if kept.
    fn keep_texts(&mut self, keep: &[bool]) -> Vec<Option<u32>> {
        let mut kept: Vec<Option<u32>> = vec![None; self.texts.len()];
        let mut texts = Vec::new();
        for (number, text) in self.texts.iter().enumerate() {
            if keep[number] {
                kept[number] = Some(texts.len() as u32);
                texts.push(text.clone());
            }
        }
        let renumbered =
            |set: &[u32]| -> Option<Vec<u32>> { set.iter().map(|&t| kept[t as usize]).collect() };
        for test in &mut self.tests {
            match test {
                Compiled::Pattern { text, .. } => *text = text.and_then(|t| kept[t as usize]),
                Compiled::Regex { texts, more, .. } => {
                    *texts = renumbered(texts).unwrap_or_default();
                    *more = more.iter().filter_map(|set| renumbered(set)).collect();
                }
                _ => {}
            }
        }
        self.texts = texts;
        // Counted over the texts before: no choice of a group is made after this.
        self.commonness.clear();
        kept
    }

    /// Which texts to search for: those of rules' requirements (`required`), those of
    /// regular expressions (which are dear to run), and the others unless they are common
    /// (held by [`COMMON_TEXT`] of their view's texts or more).
    fn worth_searching(&self, required: &[bool]) -> Vec<bool> {
        let mut keep: Vec<bool> =
            (0..self.texts.len()).map(|t| required[t] || self.commonness[t] < COMMON_TEXT).collect();
        for test in &self.tests {
            if let Compiled::Regex { texts, more, .. } = test {
                for &text in texts.iter().chain(more.iter().flatten()) {
                    keep[text as usize] = true;
                }
            }
        }
        keep
    }

    /// The groups of a rule's requirement (over kept texts) the prefilter checks: the rarest,
    /// and the next rarest up to eight in all, so that the rule is a candidate only when a
    /// text of each is found.
    fn kept_groups(&self, mut groups: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
        let mut kept = Vec::new();
        while kept.len() < 8
            && let Some(best) = self.best_group(&groups, Choice::Rarest)
        {
            kept.push(groups.swap_remove(best));
        }
        kept.sort();
        kept.dedup();
        kept
    }

    fn text_len(&self, test: u32) -> usize {
        let texts = self.tests[test as usize].texts();
        texts.iter().map(|&t| self.texts[t as usize].1.len()).min().unwrap_or(0)
    }
}

/// Builds a pattern from Sigma-like text for tests: `*` and `?` are wildcards, the rest folded.
#[cfg(test)]
pub(crate) fn pattern(text: &str) -> Pattern {
    pattern_with(text, crate::ir::folded)
}

/// [`pattern`] with each text made by `text_of`.
#[cfg(test)]
fn pattern_with(text: &str, text_of: impl Fn(&str) -> String) -> Pattern {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    for c in text.chars() {
        match c {
            '*' | '?' => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(text_of(&std::mem::take(&mut literal))));
                }
                pieces.push(if c == '*' { Piece::AnyRun } else { Piece::AnyChar });
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(text_of(&literal)));
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

    /// Wildcard matching by its definition: `*` takes any run of characters, `?` one.
    fn glob_by_definition(pieces: &[Piece], text: &str) -> bool {
        match pieces.split_first() {
            None => text.is_empty(),
            Some((Piece::Text(t), rest)) => {
                text.strip_prefix(t.as_str()).is_some_and(|r| glob_by_definition(rest, r))
            }
            Some((Piece::AnyChar, rest)) => {
                let mut chars = text.chars();
                chars.next().is_some() && glob_by_definition(rest, chars.as_str())
            }
            Some((Piece::AnyRun, rest)) => text
                .char_indices()
                .map(|(at, _)| at)
                .chain([text.len()])
                .any(|at| glob_by_definition(rest, &text[at..])),
        }
    }

    #[test]
    fn wildcards_match_as_their_definition_on_many_patterns() {
        const PIECES: [&str; 9] = ["*", "?", "a", "ab", "b", "é", "ba", "*a", "a*b"];
        const CHARS: [char; 4] = ['a', 'b', 'é', 'x'];
        let mut draw = crate::Draw(0x9E37_79B9_7F4A_7C15);
        let mut next = |n: usize| draw.below(n);
        let mut held = 0;
        for _ in 0..20_000 {
            let source: String = (0..next(5)).map(|_| PIECES[next(PIECES.len())]).collect();
            let text: String = (0..next(14)).map(|_| CHARS[next(CHARS.len())]).collect();
            let pattern = pattern(&source);
            let expected = glob_by_definition(&pattern.0, &text);
            held += usize::from(expected);
            assert_eq!(matches(&pattern, &text), expected, "{source:?} on {text:?}");
        }
        assert!(held > 1_000, "too few of the drawn patterns matched to compare: {held}");
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
            // Case-insensitive expressions: the texts they require, in every case, fold to `set`
            // and `ſet` (the long s, which `(?i)s` matches and folding keeps), and to `echo`.
            rule(
                "i",
                test(
                    Column::ProcessCommandLine,
                    Check::Regex {
                        pattern: "(?i)(?:set).*&&".into(),
                        ignore_case: false,
                        multi_line: false,
                        dot_all: false,
                    },
                ),
            ),
            rule(
                "j",
                test(
                    Column::ProcessCommandLine,
                    Check::Regex {
                        pattern: "echo.*clip".into(),
                        ignore_case: true,
                        multi_line: false,
                        dot_all: false,
                    },
                ),
            ),
            // A one-byte text is not searched for: the value is read.
            rule(
                "k",
                Expr::And(vec![
                    glob_test(Column::ProcessCommandLine, "*|*"),
                    glob_test(Column::FolderPath, "*\\cmd.exe"),
                ]),
            ),
            // The catalog's PowerShell token obfuscation rule: expressions that require one or
            // two bytes only (`` ` ``, `-f`, `${`), which are searched for all the same.
            rule(
                "l",
                Expr::And(vec![
                    Expr::Or(
                        [
                            r"\w+`(?:\w+|-|.)`[\w+|\s]",
                            r#""(?:\{\d\})+"\s*-f"#,
                            r"(?i)\$\{`?e`?n`?v`?:`?p`?a`?t`?h`?\}",
                        ]
                        .into_iter()
                        .map(|pattern| {
                            test(
                                Column::ProcessCommandLine,
                                Check::Regex {
                                    pattern: pattern.into(),
                                    ignore_case: false,
                                    multi_line: false,
                                    dot_all: false,
                                },
                            )
                        })
                        .collect(),
                    ),
                    Expr::Not(Box::new(glob_test(Column::ProcessCommandLine, "*${env:path}*"))),
                ]),
            ),
        ];
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        assert!(matcher.unfiltered_rules() >= 3);
        for id in ["c", "g", "i", "j", "l"] {
            let index = pack.rules.iter().position(|r| r.id == id).unwrap() as u32;
            assert!(!matcher.unfiltered().contains(&index), "rule {id} is evaluated on every event");
        }
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
            Row(vec![(Column::ProcessCommandLine, "cmd /c SET a=1&&b")]),
            Row(vec![(Column::ProcessCommandLine, "ſet a&&b ECHO x | clip")]),
            Row(vec![(Column::ProcessCommandLine, "echo set")]),
            Row(vec![(Column::FolderPath, "c:\\cmd.exe"), (Column::ProcessCommandLine, "a | b")]),
            // The keyword in other keyword views than the command line, and not quite it.
            Row(vec![(Column::InitiatingProcessFolderPath, "C:\\PerfC.dat")]),
            Row(vec![(Column::ProcessVersionInfoCompanyName, "x\\PERFC.DAT y")]),
            Row(vec![(Column::ProcessVersionInfoProductName, "perfc.dat")]),
            Row(vec![(Column::ProcessCommandLine, "IN`V`oke-Expression (New-Object Net.WebClient)")]),
            Row(vec![(Column::ProcessCommandLine, r#"&("{2}{0}{1}"-f 'e','x','I')"#)]),
            Row(vec![(Column::ProcessCommandLine, r#"&("{2}{0}{1}" -x 'e')"#)]),
            Row(vec![(Column::ProcessCommandLine, "echo ${e`Nv:pATh}")]),
            Row(vec![(Column::ProcessCommandLine, "echo ${ENV:PATH} `a`b")]),
        ];
        let expected: [&[&str]; 17] = [
            &["a", "f"],
            &["c", "f"],
            &["b", "f"],
            &["d", "f", "g", "h"],
            &["f", "h"],
            &["f", "h", "i"],
            &["f", "h", "i", "j"],
            &["f", "h"],
            &["a", "f", "k"],
            &["f", "g"],
            &["f", "g", "h"],
            &["f", "h"],
            &["f", "h", "l"],
            &["f", "h", "l"],
            &["f", "h"],
            &["f", "h", "l"],
            &["f", "h"],
        ];
        let mut scratch = Scratch::default();
        for (row, expected) in rows.iter().zip(expected) {
            let mut matched = Vec::new();
            matcher.evaluate(row, &mut scratch, &mut matched);
            let ids: Vec<&str> = matched.iter().map(|&r| pack.rules[r as usize].id.as_str()).collect();
            // Row 4: FolderPath and its parent are both empty, and equal.
            assert_eq!(ids, expected, "{:?}", row.0);
        }
    }

    /// A pattern from Sigma-like text, its text as written (`cased`).
    fn cased(text: &str) -> Pattern {
        pattern_with(text, str::to_owned)
    }

    #[test]
    fn a_cased_pattern_matches_the_value_as_written_and_its_text_still_rules_values_out() {
        let cased_test = |column, text: &str| test(column, Check::CasedPattern(cased(text)));
        let rules = vec![
            rule("equals", cased_test(Column::ProcessCommandLine, "Foo")),
            rule("contains", cased_test(Column::ProcessCommandLine, "*Invoke-Mimikatz*")),
            rule("ends", cased_test(Column::FolderPath, "*\\PSEXESVC.exe")),
            rule("glob", cased_test(Column::ProcessCommandLine, "Foo?Bar*z")),
            rule("accents", cased_test(Column::ProcessCommandLine, "*Système*")),
            // U+0130 folds to two characters: the folded text is longer than the text.
            rule("dotted", cased_test(Column::ProcessCommandLine, "*İstanbul*")),
            rule("folded", glob_test(Column::ProcessCommandLine, "*invoke-mimikatz*")),
            rule(
                "keyword",
                Expr::Test(Test {
                    target: Target::Keyword,
                    check: Check::CasedPattern(cased("*PerfC.dat*")),
                }),
            ),
        ];
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        for id in ["contains", "ends", "accents", "dotted", "keyword"] {
            let index = pack.rules.iter().position(|r| r.id == id).unwrap() as u32;
            assert!(!matcher.unfiltered().contains(&index), "rule {id} is evaluated on every event");
        }
        let values = [
            "Foo",
            "foo",
            "FOO",
            "Foo ",
            "x Invoke-Mimikatz y",
            "x invoke-mimikatz y",
            "INVOKE-MIMIKATZ",
            "FooXBarz",
            "fooXBarz",
            "FooXBarZ",
            "Foo\u{e9}Bar..z",
            "la Système",
            "la SYSTÈME",
            "la système",
            "aİstanbul",
            "aistanbul",
            "ai\u{307}stanbul",
            "İSTANBUL",
            "C:\\PerfC.dat",
            "c:\\perfc.dat",
            "C:\\Windows\\PSEXESVC.exe",
            "c:\\windows\\psexesvc.exe",
        ];
        let mut scratch = Scratch::default();
        let mut positives = 0;
        for value in values {
            for column in [Column::ProcessCommandLine, Column::FolderPath] {
                let row = Row(vec![(column, value)]);
                let mut matched = Vec::new();
                matcher.evaluate(&row, &mut scratch, &mut matched);
                let ids: Vec<&str> = matched.iter().map(|&r| pack.rules[r as usize].id.as_str()).collect();
                let expected: Vec<&str> = pack
                    .rules
                    .iter()
                    .filter(|r| reference(&r.condition, &row))
                    .map(|r| r.id.as_str())
                    .collect();
                positives += expected.len();
                assert_eq!(ids, expected, "{value:?} in {column:?}");
            }
        }
        // The reference itself, on the cases that tell case apart.
        let holds = |id: &str, column, value| {
            let rule = pack.rules.iter().find(|r| r.id == id).unwrap();
            reference(&rule.condition, &Row(vec![(column, value)]))
        };
        assert!(holds("equals", Column::ProcessCommandLine, "Foo"));
        assert!(!holds("equals", Column::ProcessCommandLine, "foo"));
        assert!(!holds("contains", Column::ProcessCommandLine, "x invoke-mimikatz y"));
        assert!(holds("folded", Column::ProcessCommandLine, "INVOKE-MIMIKATZ"));
        assert!(!holds("accents", Column::ProcessCommandLine, "la SYSTÈME"));
        assert!(holds("dotted", Column::ProcessCommandLine, "aİstanbul"));
        assert!(!holds("dotted", Column::ProcessCommandLine, "ai\u{307}stanbul"));
        assert!(holds("keyword", Column::ProcessCommandLine, "C:\\PerfC.dat"));
        assert!(!holds("keyword", Column::ProcessCommandLine, "c:\\perfc.dat"));
        assert!(holds("ends", Column::FolderPath, "C:\\Windows\\PSEXESVC.exe"));
        assert!(!holds("ends", Column::FolderPath, "c:\\windows\\psexesvc.exe"));
        assert!(positives >= 12, "too few matches to compare: {positives}");
    }

    /// Drawn cased patterns, over letters whose folding changes their length or is shared
    /// (U+0130, the Kelvin sign, final sigma), each a rule of one pack: the pack's verdicts,
    /// prefilter and all, are the patterns' definition over the values as written.
    #[test]
    fn drawn_cased_patterns_give_their_definition_through_the_prefilter() {
        const PIECES: [&str; 12] =
            ["*", "?", "İs", "Kk", "\u{212A}", "Σς", "σ", "ab", "AB", "ß", "*aB", "i\u{307}"];
        const CHARS: [char; 12] = ['İ', 'i', '\u{307}', 'K', 'k', '\u{212A}', 'Σ', 'σ', 'ς', 'a', 'B', 'ß'];
        let mut draw = crate::Draw(0x2545_F491_4F6C_DD1D);
        let mut next = |n: usize| draw.below(n);
        let rules: Vec<Rule> = (0..300)
            .map(|n| {
                let source: String = (0..1 + next(4)).map(|_| PIECES[next(PIECES.len())]).collect();
                rule(&n.to_string(), test(Column::ProcessCommandLine, Check::CasedPattern(cased(&source))))
            })
            .collect();
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        assert!(matcher.unfiltered_rules() < pack.rules.len() / 2, "most rules have a text to search");
        let mut scratch = Scratch::default();
        let mut held = 0;
        for _ in 0..3_000 {
            let value: String = (0..next(12)).map(|_| CHARS[next(CHARS.len())]).collect();
            // A row holds its values for the whole test (`Row` takes them as `'static`).
            let value: &'static str = Box::leak(value.into_boxed_str());
            let row = Row(vec![(Column::ProcessCommandLine, value)]);
            let mut matched = Vec::new();
            matcher.evaluate(&row, &mut scratch, &mut matched);
            let expected: Vec<u32> = (0..pack.rules.len() as u32)
                .filter(|&r| reference(&pack.rules[r as usize].condition, &row))
                .collect();
            held += expected.len();
            assert_eq!(matched, expected, "{value:?}");
        }
        assert!(held > 500, "too few of the drawn patterns matched to compare: {held}");
    }

    /// The verdict of `expr` on `row`, evaluated directly: the reference for the prefilter.
    fn reference(expr: &Expr, row: &Row) -> bool {
        match expr {
            Expr::And(e) => e.iter().all(|e| reference(e, row)),
            Expr::Or(e) => e.iter().any(|e| reference(e, row)),
            Expr::Not(e) => !reference(e, row),
            Expr::Test(Test { target: Target::View(view), check: Check::Pattern(pattern) }) => {
                let mut value = String::new();
                render(*view, row, &mut value);
                matches(pattern, &folded(&value))
            }
            Expr::Test(Test { target: Target::View(view), check: Check::CasedPattern(pattern) }) => {
                let mut value = String::new();
                render(*view, row, &mut value);
                glob_by_definition(&pattern.0, &value)
            }
            Expr::Test(Test { target: Target::Keyword, check }) => KEYWORD_VIEWS.iter().any(|view| {
                reference(&Expr::Test(Test { target: Target::View(*view), check: check.clone() }), row)
            }),
            Expr::Test(test) => unreachable!("only patterns here: {test:?}"),
        }
    }

    /// A rule like the catalog's EDR-Freeze rule: `path` and `.exe` on the image, or its name
    /// on the command line.
    fn freeze_rule(path: Expr) -> Rule {
        rule(
            "freeze",
            Expr::Or(vec![
                Expr::And(vec![path, glob_test(Column::FolderPath, "*.exe")]),
                glob_test(Column::ProcessCommandLine, "*edr-freeze*"),
            ]),
        )
    }

    /// A rule that is one of two selections, the first a rare name and a common extension (as
    /// the catalog's EDR-Freeze rule): the prefilter looks for the name, which few of the
    /// rules' texts hold, not for the extension, which many do, so that the rule is not a
    /// candidate on every event that runs an `.exe`.
    #[test]
    fn a_rules_requirement_is_its_rarest_group_not_its_smallest() {
        let mut rules = vec![freeze_rule(Expr::Or(vec![
            glob_test(Column::FolderPath, "*\\edr-freeze*"),
            glob_test(Column::FolderPath, "*\\edrfreeze*"),
        ]))];
        for name in ["cmd", "net", "at", "whoami"] {
            rules.push(rule(name, glob_test(Column::FolderPath, &format!("*\\{name}.exe"))));
        }
        let pack = Pack { format: FORMAT, rules };
        assert_matches_and_candidates(
            &pack,
            &[
                ("C:\\Windows\\System32\\cmd.exe", "cmd /c dir", &["cmd"], 1),
                ("C:\\Tools\\EDR-Freeze.exe", "x", &["freeze"], 1),
                ("C:\\Tools\\EDR-Freeze.dll", "x", &[], 1),
                ("C:\\Windows\\System32\\net.exe", "EDR-Freeze 1234", &["freeze", "net"], 2),
            ],
        );
    }

    /// The ids of the rules of `pack` that an event of `image` and `command_line` matches.
    fn matched_ids<'p>(
        pack: &'p Pack,
        matcher: &Matcher,
        scratch: &mut Scratch,
        image: &'static str,
        command_line: &'static str,
    ) -> Vec<&'p str> {
        let row = Row(vec![(Column::FolderPath, image), (Column::ProcessCommandLine, command_line)]);
        let mut matched = Vec::new();
        matcher.evaluate(&row, scratch, &mut matched);
        matched.iter().map(|&r| pack.rules[r as usize].id.as_str()).collect()
    }

    /// Evaluates each row (an image and a command line) in turn with one scratch, and checks
    /// the rules it matches and how many rules were candidates.
    fn assert_matches_and_candidates(pack: &Pack, rows: &[(&'static str, &'static str, &[&str], usize)]) {
        let matcher = Matcher::new(pack).unwrap();
        let mut scratch = Scratch::default();
        for &(image, command_line, expected, candidates) in rows {
            let ids = matched_ids(pack, &matcher, &mut scratch, image, command_line);
            assert_eq!(ids, expected, "{image} {command_line}");
            assert_eq!(scratch.candidates(), candidates, "{image} {command_line}: the rules evaluated");
        }
    }

    #[test]
    fn a_rule_is_evaluated_only_once_every_group_of_its_requirement_has_a_text_found() {
        // Two groups: one text in the image, one in the command line (which another rule has
        // searched).
        let cl = rule("cl", glob_test(Column::ProcessCommandLine, "*logonpasswords*"));
        let both = rule(
            "both",
            Expr::And(vec![
                glob_test(Column::FolderPath, "*\\mimikatz.exe"),
                glob_test(Column::ProcessCommandLine, "*sekurlsa*"),
            ]),
        );
        let pack = Pack { format: FORMAT, rules: vec![both, cl] };
        assert_matches_and_candidates(
            &pack,
            &[
                ("C:\\Tools\\mimikatz.exe", "privilege::debug", &[], 0),
                ("C:\\Tools\\other.exe", "sekurlsa::logonpasswords", &["cl"], 1),
                ("C:\\Tools\\mimikatz.exe", "sekurlsa::logonpasswords", &["both", "cl"], 2),
            ],
        );
    }

    #[test]
    fn a_text_many_rules_name_leads_to_them_only_through_their_rarer_groups() {
        // Twelve rules on `cmd.exe`, each with a command line text of its own; the command
        // line is searched for another rule.
        let cl = rule("cl", glob_test(Column::ProcessCommandLine, "*logonpasswords*"));
        let rules: Vec<Rule> = (0..12)
            .map(|i| {
                rule(
                    &format!("r{i}"),
                    Expr::And(vec![
                        glob_test(Column::FolderPath, "*\\cmd.exe"),
                        glob_test(Column::ProcessCommandLine, &format!("*secret{i}x*")),
                    ]),
                )
            })
            .chain([cl])
            .collect();
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        let mut scratch = Scratch::default();
        // The image, the command line, the rules expected to match, the rules looked at, and
        // the candidates.
        for (image, command_line, expected, looked_at, candidates) in [
            ("C:\\Windows\\System32\\cmd.exe", "/c dir", vec![], 0, 0),
            ("C:\\Windows\\System32\\cmd.exe", "/c type secret3x", vec!["r3"], 1, 1),
            ("C:\\Tools\\other.exe", "secret3x secret11x", vec![], 2, 0),
            ("C:\\Windows\\System32\\cmd.exe", "secret3x secret11x", vec!["r3", "r11"], 2, 2),
        ] {
            let ids = matched_ids(&pack, &matcher, &mut scratch, image, command_line);
            assert_eq!(ids, expected, "{image} {command_line}");
            assert_eq!(scratch.looked_at(), looked_at, "{image} {command_line}: the rules looked at");
            assert_eq!(scratch.candidates(), candidates, "{image} {command_line}: the candidates");
        }
    }

    /// A text found at every few bytes of a long value is listed once, with every place it
    /// was found at, so that what a value's search lists is bounded by the texts whatever
    /// its length, and the verdicts that the places settle are those of the whole value.
    #[test]
    fn a_text_found_many_times_in_a_value_is_listed_once_with_all_its_places() {
        let command = |pattern: &str| glob_test(Column::ProcessCommandLine, pattern);
        let rules = vec![
            rule("contains", command("*abc*")),
            rule("starts", command("abc*")),
            rule("ends", command("*abc")),
            rule("whole", command("abc")),
            rule("other", command("*xyz*")),
        ];
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        let mut scratch = Scratch::default();
        let image = "C:\\x\\a.exe";
        for (command_line, expected, hits) in [
            ("abc".repeat(100_000), vec!["contains", "starts", "ends"], 1),
            (format!("x{}", "abc".repeat(50_000)), vec!["contains", "ends"], 1),
            (format!("{}x", "abc ".repeat(50_000)), vec!["contains", "starts"], 1),
            (format!("{}xyz", "-abc".repeat(50_000)), vec!["contains", "other"], 2),
            ("abc".to_owned(), vec!["contains", "starts", "ends", "whole"], 1),
        ] {
            // The rows of these tests hold static text.
            let command_line: &'static str = command_line.leak();
            let ids = matched_ids(&pack, &matcher, &mut scratch, image, command_line);
            let shown = &command_line[..8.min(command_line.len())];
            assert_eq!(ids, expected, "{shown}…");
            assert_eq!(scratch.hits(), hits, "{shown}…: the texts listed");
        }
    }

    #[test]
    fn a_common_text_that_no_requirement_holds_is_not_searched_for() {
        // `.exe` ends every rule's path; the freeze rule tests it alone, in a branch that its
        // rarer text guards, so no rule's requirement holds it.
        let mut rules = vec![freeze_rule(glob_test(Column::FolderPath, "*\\edr-freeze*"))];
        for name in ["cmd", "net", "at", "whoami", "reg", "sc", "wmic", "rundll32"] {
            rules.push(rule(name, glob_test(Column::FolderPath, &format!("*\\{name}.exe"))));
        }
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        let path_texts = matcher
            .searched_views()
            .iter()
            .find(|(view, ..)| *view == View::Column(Column::FolderPath))
            .map(|v| v.1);
        assert_eq!(path_texts, Some(9), "the eight names and `\\edr-freeze`, without `.exe`");
        let mut scratch = Scratch::default();
        // The rules expected to match, and how many texts were found.
        for (image, expected, found) in [
            ("C:\\Windows\\System32\\cmd.exe", vec!["cmd"], 1),
            ("C:\\Tools\\EDR-Freeze.exe", vec!["freeze"], 1),
            ("C:\\Tools\\EDR-Freeze.dll", vec![], 1),
            ("C:\\Tools\\other.exe", vec![], 0),
        ] {
            let row = Row(vec![(Column::FolderPath, image), (Column::ProcessCommandLine, "x")]);
            let mut matched = Vec::new();
            matcher.evaluate(&row, &mut scratch, &mut matched);
            let ids: Vec<&str> = matched.iter().map(|&r| pack.rules[r as usize].id.as_str()).collect();
            assert_eq!(ids, expected, "{image}");
            assert_eq!(scratch.hits(), found, "{image}: the texts found");
        }
    }

    /// Events drawn from few values per column, so that a value often repeats the last
    /// event's or the one before (as a parent's command line does for its children); values
    /// of one length that differ, empty ones, and views rendered from two columns among them.
    /// One scratch kept over the whole sequence gives every event the rules and the texts
    /// found that a fresh scratch gives it.
    #[test]
    fn values_seen_in_the_last_events_give_what_searching_them_again_gives() {
        let test_of = |view: View, p: &str| {
            Expr::Test(Test { target: Target::View(view), check: Check::Pattern(pattern(p)) })
        };
        let command = |p: &str| glob_test(Column::ProcessCommandLine, p);
        let image = |p: &str| glob_test(Column::FolderPath, p);
        let rules = vec![
            rule("whoami", command("*whoami*")),
            rule("net-user", Expr::And(vec![image("*\\net.exe"), command("* user *")])),
            rule("starts-ab", command("ab*")),
            rule("ends-ab", command("*ab")),
            rule("equals-ab", command("ab")),
            rule("hidden", Expr::And(vec![command("*-w hidden*"), Expr::Not(Box::new(image("*\\cmd.exe")))])),
            rule("system", test_of(View::User, "nt authority\\system")),
            rule("parent-user", test_of(View::ParentUser, "*\\admin")),
            rule("md5", test_of(View::Hashes, "*MD5=0123*")),
            rule("empty", Expr::Not(Box::new(test(Column::ProcessCurrentDirectory, Check::Empty)))),
            rule(
                "regex",
                test(
                    Column::ProcessCommandLine,
                    Check::Regex {
                        pattern: "us[e]r.*add".into(),
                        ignore_case: true,
                        multi_line: false,
                        dot_all: false,
                    },
                ),
            ),
            rule("dir", glob_test(Column::ProcessCurrentDirectory, "c:\\temp\\*")),
            // Patterns their texts' places do not settle: the folded value is read.
            rule("user-add", Expr::And(vec![command("*net*user*/add"), image("c:\\windows\\*\\net.exe")])),
            rule("who", command("who?mi*")),
            // A rule that reads two views, one of them only to compare it with the other.
            rule("parent", glob_test(Column::InitiatingProcessFolderPath, "*\\cmd.exe")),
            rule(
                "same-image",
                Expr::And(vec![
                    image("*.exe"),
                    test(
                        Column::FolderPath,
                        Check::EqualsView(View::Column(Column::InitiatingProcessFolderPath)),
                    ),
                ]),
            ),
        ];
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        // Several values of each length (`ab` and `ba`, `abab` and `xabx`, the two `user`
        // lines) so that a value is not told from the last by its length.
        let commands = [
            "",
            "ab",
            "ba",
            "abab",
            "xabx",
            "net user x /add",
            "net user y /add",
            "whoami",
            "WHOAMI /all",
            "powershell -w hidden -c x",
            "powershell -w hidde  -c x",
        ];
        let images =
            ["", "C:\\Windows\\System32\\net.exe", "C:\\Windows\\System32\\cmd.exe", "C:\\x\\powershell.exe"];
        let domains = ["", "NT AUTHORITY", "CORP"];
        let names = ["", "SYSTEM", "admin", "ADMIN"];
        let md5s = ["", "01234567", "0123456X", "76543210"];
        let directories = ["", "C:\\Temp\\", "C:\\Tmp\\"];
        let mut draw = crate::Draw(0x5EED_0F7E_1100_0001);
        let pick = |draw: &mut crate::Draw, last: &mut [usize; 2], count: usize| {
            // Mostly the last value or the one before, as in a process tree.
            let chosen = match draw.below(4) {
                0 => last[0],
                1 => last[1],
                _ => draw.below(count),
            };
            *last = [chosen, last[0]];
            chosen
        };
        let mut last = [[0usize; 2]; 8];
        let mut kept = Scratch::default();
        let (mut compared, mut matched_any, mut searched_kept, mut searched_fresh) = (0, 0, 0, 0);
        for _ in 0..5_000 {
            let row = Row(vec![
                (Column::ProcessCommandLine, commands[pick(&mut draw, &mut last[0], commands.len())]),
                (Column::FolderPath, images[pick(&mut draw, &mut last[1], images.len())]),
                (Column::InitiatingProcessFolderPath, images[pick(&mut draw, &mut last[7], images.len())]),
                (Column::AccountDomain, domains[pick(&mut draw, &mut last[2], domains.len())]),
                (Column::AccountName, names[pick(&mut draw, &mut last[3], names.len())]),
                (Column::InitiatingProcessAccountName, names[pick(&mut draw, &mut last[4], names.len())]),
                (Column::Md5, md5s[pick(&mut draw, &mut last[5], md5s.len())]),
                (
                    Column::ProcessCurrentDirectory,
                    directories[pick(&mut draw, &mut last[6], directories.len())],
                ),
            ]);
            let (mut with_kept, mut with_fresh) = (Vec::new(), Vec::new());
            matcher.evaluate(&row, &mut kept, &mut with_kept);
            let mut fresh = Scratch::default();
            matcher.evaluate(&row, &mut fresh, &mut with_fresh);
            assert_eq!(with_kept, with_fresh, "{:?}", row.0);
            assert_eq!(kept.hits(), fresh.hits(), "the texts found in {:?}", row.0);
            compared += 1;
            matched_any += usize::from(with_fresh.len() > 1);
            (searched_kept, searched_fresh) =
                (searched_kept + kept.searched(), searched_fresh + fresh.searched());
        }
        assert!(
            matched_any > 1_000,
            "too few events match a rule besides `empty`: {matched_any} of {compared}"
        );
        // Most values were not searched again.
        assert!(2 * searched_kept < searched_fresh, "searched {searched_kept} bytes of {searched_fresh}");
        // Values too long to remember, between short ones: searched every time, with the
        // short ones still remembered, and no copy of them kept.
        let long = |tail: &str| format!("powershell -w hidden {} {tail}", "a".repeat(REMEMBERED_BYTES));
        // Leaked: a test row holds static texts.
        let (long_user, long_who): (&'static str, &'static str) =
            (long("net user z /add").leak(), long("whoami").leak());
        for command in [long_user, "whoami", long_user, long_who, "whoami", "ab"] {
            let row = Row(vec![(Column::ProcessCommandLine, command), (Column::FolderPath, images[1])]);
            let (mut with_kept, mut with_fresh) = (Vec::new(), Vec::new());
            matcher.evaluate(&row, &mut kept, &mut with_kept);
            matcher.evaluate(&row, &mut Scratch::default(), &mut with_fresh);
            assert_eq!(with_kept, with_fresh, "{} bytes", command.len());
            if command.len() > REMEMBERED_BYTES {
                assert!(kept.searched() > REMEMBERED_BYTES, "a long value is searched");
            }
            for recent in &kept.recent {
                for value in &recent.values {
                    assert!(
                        value.raw.len() <= REMEMBERED_BYTES,
                        "a value of {} bytes is kept",
                        value.raw.len()
                    );
                }
            }
        }
        // The same rules in the reverse order: the same views, other numbers for the texts and
        // rules. A scratch kept from the first matcher forgets what it found there.
        let reversed = Pack { format: FORMAT, rules: pack.rules.iter().rev().cloned().collect() };
        let other = Matcher::new(&reversed).unwrap();
        for command in commands {
            let row = Row(vec![(Column::ProcessCommandLine, command), (Column::FolderPath, images[1])]);
            let (mut with_kept, mut with_fresh) = (Vec::new(), Vec::new());
            matcher.evaluate(&row, &mut kept, &mut Vec::new());
            other.evaluate(&row, &mut kept, &mut with_kept);
            other.evaluate(&row, &mut Scratch::default(), &mut with_fresh);
            assert_eq!(with_kept, with_fresh, "{command:?} after the first matcher");
        }
    }

    #[test]
    fn where_a_text_is_found_and_every_group_of_a_requirement_decide_as_the_patterns_do() {
        let image = |p: &str| glob_test(Column::FolderPath, p);
        let command = |p: &str| glob_test(Column::ProcessCommandLine, p);
        let rules = vec![
            rule("starts", command("ab*")),
            rule("ends", command("*ab")),
            rule("equals", command("ab")),
            rule("contains", command("*ab*")),
            rule("other", command("a*b")),
            // Two groups: a text of each must be found for the rule to be evaluated.
            rule("both", Expr::And(vec![image("*\\cmd.exe"), command("* /c *")])),
            rule(
                "either-and",
                Expr::And(vec![
                    Expr::Or(vec![image("*\\x.exe"), command("*xx*")]),
                    command("*yy"),
                    Expr::Not(Box::new(command("*zz*"))),
                ]),
            ),
            rule("folded", command("ÉCOLE*")),
        ];
        let values = [
            "ab", "abab", "xab", "abx", "xabx", "a", "b", "axb", "ba", "", "ab ab", "x /c y", " /c ",
            "xx yy", "yy xx", "xxyy", "xxyyzz", "zz xx yy", "école x", "Ecole", "ÉCOLE",
        ];
        let images = ["", "C:\\Windows\\System32\\cmd.exe", "C:\\x.exe", "C:\\cmd.exe.bak"];
        let pack = Pack { format: FORMAT, rules };
        let matcher = Matcher::new(&pack).unwrap();
        let mut scratch = Scratch::default();
        let mut checked = 0;
        for value in values {
            for image in images {
                let row = Row(vec![(Column::FolderPath, image), (Column::ProcessCommandLine, value)]);
                let mut matched = Vec::new();
                matcher.evaluate(&row, &mut scratch, &mut matched);
                for (index, rule) in pack.rules.iter().enumerate() {
                    let expected = reference(&rule.condition, &row);
                    assert_eq!(
                        matched.contains(&(index as u32)),
                        expected,
                        "{} on {image:?} {value:?}",
                        rule.id
                    );
                    checked += usize::from(expected);
                }
            }
        }
        assert!(checked > 40, "the cases match often enough to test both verdicts: {checked}");
    }
}
