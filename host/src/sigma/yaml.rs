//! A rule's YAML read into a tree, bounded in size and depth before the tree is built.
//!
//! Two shapes of a small text take the loader down. YAML's aliases repeat an anchored node
//! wherever they appear, and the loader's tree holds every repetition: nine anchors of ten
//! aliases each (657 bytes) expand to a billion nodes. And nesting: the loader descends once
//! per level, so a block sequence nested in a block sequence 200,000 times (`- - - ... x`,
//! 400 KB) or an alias nested in an alias 60,000 times (744 KB) overflows the stack. So
//! before a rule's text is loaded, its events are pulled from the parser one by one (the
//! parser's own state machine does not recurse) and counted: the nodes and the levels the
//! tree would have, aliases expanded in the count only. A text past either bound is refused.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

use super::MAX_RULE_BYTES;

/// Nodes a rule's YAML may expand to, aliases included: as many as a file of the largest size
/// ([`MAX_RULE_BYTES`]) could hold written out, at two bytes a node (`a,`).
pub const MAX_YAML_NODES: u64 = MAX_RULE_BYTES / 2;

/// Bytes of text (scalars and keys) a rule's YAML may expand to, aliases included: four times
/// what a file of the largest size holds. Counting nodes alone let a text of 800 KB, one long
/// string anchored and aliased 100,000 times, ask for 40 GB.
pub const MAX_YAML_TEXT_BYTES: u64 = 4 * MAX_RULE_BYTES;

/// Levels a rule's YAML may nest to, aliases included. A Sigma rule nests five (detection,
/// selection, a list of maps, a field, its list of values); the bound leaves room and keeps
/// the loader's and the compiler's descent shallow.
pub const MAX_YAML_DEPTH: u64 = 64;

/// The YAML documents of `text`, and the first as written ([`Written`]); an error in words
/// when the text is not YAML or expands past [`MAX_YAML_NODES`] or [`MAX_YAML_DEPTH`].
pub fn load(text: &str) -> Result<(Vec<Yaml>, Option<Written>), String> {
    let mut parser = Parser::new_from_str(text);
    let mut bound = ExpansionBound::default();
    let mut written = WrittenBuilder::default();
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((event, mark)) => {
                // Counted before it is built: the tree as written stays within the bounds.
                bound.event(&event, mark)?;
                written.event(event);
            }
            // A scan error is the loader's to report, with its own words: it reads the same
            // text up to the same place, within the bounds.
            Err(_) => break,
        }
    }
    let documents = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    Ok((documents, written.first))
}

/// A node of a YAML document as written. The loader resolves a plain scalar as YAML 1.2 does
/// (`yes` is a string, `0o17` a number); pySigma reads rules with PyYAML, which resolves them as
/// YAML 1.1 does (`yes` is true, `0o17` a string, `2024-01-01` a date). Whether a rule is
/// valid depends on those types (a title must be a string), so the rule's attributes are
/// checked on this tree, which keeps each scalar's text and whether it was plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A scalar's text; `plain` when it was neither quoted, nor a block scalar, nor tagged:
    /// its type is then resolved from its text.
    Scalar {
        /// The text.
        text: String,
        /// Whether its type is resolved from its text.
        plain: bool,
    },
    /// A sequence.
    Sequence(Vec<Written>),
    /// A mapping, its entries in the order written.
    Mapping(Vec<(Written, Written)>),
}

/// Builds the first document's [`Written`] tree from the parser's events.
#[derive(Default)]
struct WrittenBuilder {
    /// The collections open, outermost first, with their anchor and, for a mapping, the key
    /// waiting for its value.
    open: Vec<(usize, Written, Option<Written>)>,
    anchors: HashMap<usize, Written>,
    first: Option<Written>,
    /// The first document is complete.
    done: bool,
}

impl WrittenBuilder {
    fn event(&mut self, event: Event) {
        if self.done {
            return;
        }
        match event {
            Event::SequenceStart(anchor, _) => self.open.push((anchor, Written::Sequence(Vec::new()), None)),
            Event::MappingStart(anchor, _) => self.open.push((anchor, Written::Mapping(Vec::new()), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, node, _)) = self.open.pop() {
                    self.complete(anchor, node);
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == yaml_rust2::scanner::TScalarStyle::Plain && tag.is_none();
                self.complete(anchor, Written::Scalar { text, plain });
            }
            // As the loader does: an alias of no complete anchor is a bad value, here an empty
            // quoted scalar (no attribute is valid as one that is not a string).
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned();
                self.complete(0, node.unwrap_or(Written::Scalar { text: String::new(), plain: false }));
            }
            Event::DocumentEnd => self.done = true,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }

    fn complete(&mut self, anchor: usize, node: Written) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.open.last_mut() {
            None => {
                self.first = Some(node);
                self.done = true;
            }
            Some((_, Written::Sequence(items), _)) => items.push(node),
            Some((_, Written::Mapping(entries), key)) => match key.take() {
                None => *key = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Some((_, Written::Scalar { .. }, _)) => unreachable!("only collections are open"),
        }
    }
}

/// What the loader would build from the events seen so far: its nodes and their text, and,
/// per open collection, its size and how deep it goes.
#[derive(Default)]
struct ExpansionBound {
    /// The nodes made so far and the bytes of their text, each alias counted at its anchor's
    /// size.
    made: Size,
    /// Each complete anchored node's size (a scalar: 1 node, its text, 0 deep).
    anchors: HashMap<usize, Size>,
    /// The collections open, outermost first: anchor, size (a collection of scalars is 1 deep).
    open: Vec<(usize, Size)>,
}

/// A node's size: nodes, bytes of text, and how deep it goes.
#[derive(Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
    depth: u64,
}

impl ExpansionBound {
    /// Counts one event; the bound passed, in words, if it is.
    fn event(&mut self, event: &Event, mark: Marker) -> Result<(), String> {
        let level = self.open.len() as u64;
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let own = Size { nodes: 1, bytes: 0, depth: 1 };
                self.count(own, level, mark)?;
                self.open.push((*anchor, own));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, size)) = self.open.pop() {
                    self.anchor(anchor, size);
                    self.add_to_parent(size);
                }
            }
            Event::Scalar(text, _, anchor, _) => {
                let size = Size { nodes: 1, bytes: text.len() as u64, depth: 0 };
                self.count(size, level, mark)?;
                self.anchor(*anchor, size);
                self.add_to_parent(size);
            }
            // The loader puts a bad value where an alias names no complete anchor.
            Event::Alias(anchor) => {
                let size = self.anchors.get(anchor).copied().unwrap_or(Size { nodes: 1, bytes: 0, depth: 0 });
                self.count(size, level, mark)?;
                self.add_to_parent(size);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// A node of `size` made at `level`.
    fn count(&mut self, size: Size, level: u64, mark: Marker) -> Result<(), String> {
        self.made.nodes = self.made.nodes.saturating_add(size.nodes);
        self.made.bytes = self.made.bytes.saturating_add(size.bytes);
        let at = || format!("at line {} column {}", mark.line(), mark.col() + 1);
        if self.made.nodes > MAX_YAML_NODES {
            return Err(format!(
                "its YAML expands to more than {MAX_YAML_NODES} nodes through aliases ({})",
                at()
            ));
        }
        if self.made.bytes > MAX_YAML_TEXT_BYTES {
            return Err(format!(
                "its YAML expands to more than {MAX_YAML_TEXT_BYTES} bytes of text through aliases ({})",
                at()
            ));
        }
        if level.saturating_add(size.depth) > MAX_YAML_DEPTH {
            return Err(format!("its YAML nests deeper than {MAX_YAML_DEPTH} levels ({})", at()));
        }
        Ok(())
    }

    /// A complete child of `size`, counted into the collection it is in.
    fn add_to_parent(&mut self, size: Size) {
        if let Some((_, open)) = self.open.last_mut() {
            open.nodes = open.nodes.saturating_add(size.nodes);
            open.bytes = open.bytes.saturating_add(size.bytes);
            open.depth = open.depth.max(size.depth.saturating_add(1));
        }
    }

    fn anchor(&mut self, anchor: usize, size: Size) {
        // Anchor ids start at 1; 0 is none.
        if anchor > 0 {
            self.anchors.insert(anchor, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` anchors of `width` aliases each, the first of `width` scalars.
    fn laughs(levels: usize, width: usize) -> String {
        let list = |item: &str| vec![item; width].join(", ");
        let mut text = format!("a0: &a0 [{}]\n", list("x"));
        for level in 1..levels {
            text += &format!("a{level}: &a{level} [{}]\n", list(&format!("*a{}", level - 1)));
        }
        text + &format!("all: *a{}\n", levels - 1)
    }

    /// An alias inside an anchored sequence, `links` times over: each one level deeper.
    fn chain(links: usize) -> String {
        let mut text = String::from("chain: [&l0 x");
        for link in 1..links {
            text += &format!(", &l{link} [*l{}]", link - 1);
        }
        text + "]\n"
    }

    /// The nodes of a loaded tree.
    fn nodes(node: &Yaml) -> u64 {
        1 + match node {
            Yaml::Array(items) => items.iter().map(nodes).sum(),
            Yaml::Hash(members) => members.iter().map(|(k, v)| nodes(k) + nodes(v)).sum(),
            _ => 0,
        }
    }

    /// The bytes of the text of a loaded tree's scalars and keys.
    fn text_bytes(node: &Yaml) -> u64 {
        match node {
            Yaml::Array(items) => items.iter().map(text_bytes).sum(),
            Yaml::Hash(members) => members.iter().map(|(k, v)| text_bytes(k) + text_bytes(v)).sum(),
            Yaml::String(text) | Yaml::Real(text) => text.len() as u64,
            _ => 0,
        }
    }

    /// What the bound counts of `text`: its nodes and their text's bytes, and whether it
    /// passed a bound.
    fn counted(text: &str) -> ((u64, u64), Result<(), String>) {
        let mut parser = Parser::new_from_str(text);
        let mut bound = ExpansionBound::default();
        loop {
            let (event, mark) = parser.next_token().unwrap();
            let made = (bound.made.nodes, bound.made.bytes);
            if event == Event::StreamEnd {
                return (made, Ok(()));
            }
            if let Err(e) = bound.event(&event, mark) {
                return (made, Err(e));
            }
        }
    }

    #[test]
    fn text_expanding_past_the_bound_through_aliases_is_refused_before_it_is_built() {
        // 800 KB that would make 40 GB of text: one long string, aliased 100,000 times.
        let bomb = format!("a: &a \"{}\"\nb: [{}]\n", "x".repeat(400_000), vec!["*a"; 100_000].join(", "));
        let error = load(&bomb).unwrap_err();
        assert!(
            error.starts_with("its YAML expands to more than 4194304 bytes of text through aliases"),
            "{error}"
        );
        // Within the bound the same shape loads, every repetition made.
        let within = format!("a: &a \"{}\"\nb: [{}]\n", "x".repeat(400_000), ["*a"; 9].join(", "));
        let (docs, written) = load(&within).unwrap();
        assert_eq!(docs[0]["b"].as_vec().map(Vec::len), Some(9));
        assert!(written.is_some());
    }

    #[test]
    fn aliases_expanding_past_the_bound_are_refused_before_they_are_built() {
        // 657 bytes in a rule's shape that would make a billion nodes.
        let error = load(&laughs(9, 10)).unwrap_err();
        assert!(error.starts_with("its YAML expands to more than 524288 nodes through aliases"), "{error}");
        // Refused where the bound is passed: the sixth anchor would hold a million.
        assert!(error.contains("at line 6 column"), "{error}");
        // Below the bound the same shape loads, every repetition made.
        let (docs, _) = load(&laughs(5, 10)).unwrap();
        let Yaml::Array(all) = &docs[0]["all"] else { panic!("{:?}", docs[0]) };
        assert_eq!(all.len(), 10);
        assert_eq!(all[0][0][0][0][0].as_str(), Some("x"));
    }

    #[test]
    fn nesting_past_the_bound_is_refused_through_aliases_or_written_out() {
        let block = format!("{}x\n", "- ".repeat(200_000));
        let flow = format!("a: {}x{}\n", "[".repeat(200), "]".repeat(200));
        for deep in [chain(60_000), block, flow] {
            let error = load(&deep).unwrap_err();
            assert!(error.starts_with("its YAML nests deeper than 64 levels"), "{error}");
        }
        // At the bound it loads: `chain(63)` is the mapping, the list, and 62 links that
        // each hold the one before.
        let (docs, _) = load(&chain(63)).unwrap();
        let mut node = &docs[0]["chain"][62];
        for _ in 0..62 {
            node = &node[0];
        }
        assert_eq!(node.as_str(), Some("x"));
        assert!(load(&chain(64)).is_err());
        assert!(load(&format!("{}x\n", "- ".repeat(64))).is_ok());
        assert!(load(&format!("{}x\n", "- ".repeat(65))).is_err());
    }

    #[test]
    fn the_bound_counts_what_the_loader_builds() {
        for text in [laughs(5, 10), chain(50), "a: &x [bb, {c: ddd, e: [f, g]}]\nh: *x\n".into()] {
            let (counted, within) = counted(&text);
            assert!(within.is_ok(), "{within:?}");
            let docs = YamlLoader::load_from_str(&text).unwrap();
            assert_eq!(counted, (nodes(&docs[0]), text_bytes(&docs[0])), "{text}");
        }
    }

    #[test]
    fn a_text_that_is_not_yaml_gets_the_loaders_own_error() {
        let error = load("a: [b, c\n").unwrap_err();
        assert_eq!(error, YamlLoader::load_from_str("a: [b, c\n").unwrap_err().to_string());
    }
}
