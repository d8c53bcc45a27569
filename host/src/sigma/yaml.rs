//! A rule's YAML read into a tree, with its aliases bounded.
//!
//! YAML's aliases repeat an anchored node wherever they appear, and the tree the loader
//! builds holds every repetition: nine anchors of ten aliases each (657 bytes) expand to a
//! billion nodes, and an alias nested in an alias 60,000 times (744 KB) to a tree whose
//! copy and drop overflow the stack. So before a rule's text is loaded, one pass over the
//! parser's events counts the nodes and the nesting that the aliases would make, without
//! making them, and a text past either bound is refused. Rules without aliases never reach
//! the bounds: the file-size limit holds them far below.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

use super::MAX_RULE_BYTES;

/// Nodes a rule's YAML may expand to, aliases included: as many as a file of the largest size
/// ([`MAX_RULE_BYTES`]) could hold written out, at two bytes a node (`a,`).
pub const MAX_YAML_NODES: u64 = MAX_RULE_BYTES / 2;

/// Levels a rule's YAML may nest to, aliases included: the parser's own bound on flow
/// collections (255); Sigma rules nest a few levels deep.
pub const MAX_YAML_DEPTH: u64 = 255;

/// The YAML documents of `text`; an error in words when the text is not YAML or its aliases
/// expand past [`MAX_YAML_NODES`] or [`MAX_YAML_DEPTH`].
pub fn load(text: &str) -> Result<Vec<Yaml>, String> {
    // Without a `&` there is no anchor, and an alias of none is one node: nothing to count
    // (most rules; the count would parse them twice).
    if !text.contains('&') {
        return YamlLoader::load_from_str(text).map_err(|e| e.to_string());
    }
    let mut bound = ExpansionBound::default();
    // A scan error is the loader's to report, with the same words: it reads the same text up
    // to the same place, and what it builds on the way is within the bounds.
    let _ = Parser::new_from_str(text).load(&mut bound, true);
    if let Some(exceeded) = bound.exceeded {
        return Err(exceeded);
    }
    YamlLoader::load_from_str(text).map_err(|e| e.to_string())
}

/// What the loader would build from the events seen so far: its nodes, and, per open
/// collection, how deep it goes below.
#[derive(Default)]
struct ExpansionBound {
    /// The nodes made so far, each alias counted at its anchor's size.
    nodes: u64,
    /// Each complete anchored node's size and depth (a scalar: 1 and 0).
    anchors: HashMap<usize, (u64, u64)>,
    /// The collections open, outermost first: anchor, nodes, depth (a collection of scalars
    /// is 1 deep).
    open: Vec<(usize, u64, u64)>,
    /// Which bound was passed, in words.
    exceeded: Option<String>,
}

impl ExpansionBound {
    /// A child of `nodes` nodes, `depth` deep, added to the innermost open collection.
    fn add(&mut self, nodes: u64, depth: u64, mark: Marker) {
        self.nodes = self.nodes.saturating_add(nodes);
        let nesting = (self.open.len() as u64).saturating_add(depth);
        if self.nodes > MAX_YAML_NODES {
            self.exceeded = Some(format!(
                "its aliases expand to more than {MAX_YAML_NODES} YAML nodes (at line {} column {})",
                mark.line(),
                mark.col() + 1
            ));
        } else if nesting > MAX_YAML_DEPTH {
            self.exceeded = Some(format!(
                "its aliases nest deeper than {MAX_YAML_DEPTH} levels (at line {} column {})",
                mark.line(),
                mark.col() + 1
            ));
        }
        if let Some((_, open_nodes, open_depth)) = self.open.last_mut() {
            *open_nodes = open_nodes.saturating_add(nodes);
            *open_depth = (*open_depth).max(depth.saturating_add(1));
        }
    }

    fn anchor(&mut self, anchor: usize, nodes: u64, depth: u64) {
        // Anchor ids start at 1; 0 is none.
        if anchor > 0 {
            self.anchors.insert(anchor, (nodes, depth));
        }
    }
}

impl MarkedEventReceiver for ExpansionBound {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.exceeded.is_some() {
            return;
        }
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.add(1, 0, mark);
                self.open.push((anchor, 1, 1));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, nodes, depth)) = self.open.pop() {
                    self.anchor(anchor, nodes, depth);
                    // The collection itself was counted when it opened.
                    if let Some((_, open_nodes, open_depth)) = self.open.last_mut() {
                        *open_nodes = open_nodes.saturating_add(nodes);
                        *open_depth = (*open_depth).max(depth.saturating_add(1));
                    }
                }
            }
            Event::Scalar(_, _, anchor, _) => {
                self.add(1, 0, mark);
                self.anchor(anchor, 1, 0);
            }
            // The loader puts a bad value where an alias names no complete anchor.
            Event::Alias(anchor) => {
                let (nodes, depth) = self.anchors.get(&anchor).copied().unwrap_or((1, 0));
                self.add(nodes, depth, mark);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
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

    #[test]
    fn aliases_expanding_past_the_bound_are_refused_before_they_are_built() {
        // 657 bytes in a rule's shape that would make a billion nodes.
        let error = load(&laughs(9, 10)).unwrap_err();
        assert!(error.contains("its aliases expand to more than 524288 YAML nodes"), "{error}");
        // Refused where the bound is passed: the sixth anchor would hold a million.
        assert!(error.contains("at line 6 column"), "{error}");
        // Below the bound the same shape loads, every repetition made.
        let docs = load(&laughs(5, 10)).unwrap();
        let Yaml::Array(all) = &docs[0]["all"] else { panic!("{:?}", docs[0]) };
        assert_eq!(all.len(), 10);
        assert_eq!(all[0][0][0][0][0].as_str(), Some("x"));
    }

    #[test]
    fn aliases_nesting_past_the_bound_are_refused_and_nesting_within_it_loads() {
        let error = load(&chain(60_000)).unwrap_err();
        assert!(error.contains("its aliases nest deeper than 255 levels"), "{error}");
        let docs = load(&chain(200)).unwrap();
        let mut node = &docs[0]["chain"][199];
        for _ in 0..199 {
            node = &node[0];
        }
        assert_eq!(node.as_str(), Some("x"));
    }

    #[test]
    fn the_bounds_count_what_the_loader_builds() {
        // 10^5 + 10^4 + ... nodes: 111,111 values, anchors and lists, within the bound.
        let text = laughs(5, 10);
        let mut bound = ExpansionBound::default();
        Parser::new_from_str(&text).load(&mut bound, true).unwrap();
        fn count(node: &Yaml) -> u64 {
            1 + match node {
                Yaml::Array(items) => items.iter().map(count).sum(),
                Yaml::Hash(members) => members.iter().map(|(k, v)| count(k) + count(v)).sum(),
                _ => 0,
            }
        }
        let docs = YamlLoader::load_from_str(&text).unwrap();
        assert_eq!(bound.nodes, count(&docs[0]));
        assert!(bound.exceeded.is_none());
    }

    #[test]
    fn a_text_that_is_not_yaml_gets_the_loaders_own_error() {
        let error = load("a: [b, c\n").unwrap_err();
        assert_eq!(error, YamlLoader::load_from_str("a: [b, c\n").unwrap_err().to_string());
    }
}
