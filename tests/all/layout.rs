//! The library's layout: its top-level modules import one another without cycles, and so
//! do the readers inside `events`, so that each can be read (and replaced) on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The Rust files of `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The names that follow `prefix` in `text`'s code (comments and tests left out).
fn mentions(text: &str, prefix: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut names = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
        // `use super::{a, b::c}` and `use crate::{a, b}`.
        if let Some(list) = line.trim_start().strip_prefix(&format!("use {prefix}{{")) {
            for item in list.split(',') {
                let name: String =
                    item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// A cycle in `graph`, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].iter().cloned().chain([node.to_owned()]).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The modules directly in `dir` (files and folders), each with the names its code gives
/// after `prefix` (or `also`) that are modules of `dir` too.
fn graph(dir: &Path, prefix: &str, also: &str, skip: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) || (path.is_file() && path.extension().is_none_or(|e| e != "rs")) {
            continue;
        }
        let sources = if path.is_dir() { files(&path) } else { vec![path.clone()] };
        let uses = graph.entry(name.clone()).or_default();
        for file in sources {
            let text = std::fs::read_to_string(&file).unwrap();
            // Inside a folder's module, `super::` is the folder itself, except in its mod.rs.
            let nested = file.parent() != Some(dir) && !file.ends_with("mod.rs");
            match (prefix, nested) {
                ("super::", true) => uses.extend(mentions(&text, "super::super::")),
                _ => uses.extend(mentions(&text, prefix)),
            }
            uses.extend(mentions(&text, also));
        }
        uses.remove(&name);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m| modules.contains(m));
    }
    graph
}

#[test]
fn the_library_modules_import_one_another_without_cycles() {
    let src = crate::util::workspace().join("host/src");
    let top = graph(&src, "crate::", "rulehost::", &["lib", "main", "cli"]);
    assert!(top.len() >= 10, "{top:?}");
    assert_eq!(cycle(&top), None, "{top:?}");
    let events = graph(&src.join("events"), "super::", "crate::events::", &["mod"]);
    assert!(events.contains_key("json") && events.contains_key("defender"), "{events:?}");
    assert_eq!(cycle(&events), None, "{events:?}");
    // The check itself finds a cycle where there is one.
    let mut with_cycle = top.clone();
    with_cycle.entry("runtime".into()).or_default().insert("rules".into());
    assert!(cycle(&with_cycle).is_some());
}
