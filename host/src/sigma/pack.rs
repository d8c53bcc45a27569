//! Sigma packs as artifacts: the bundled evaluator's core module with the compiled rules
//! written into it as data, its matcher built ahead (see [`super::snapshot`]), wrapped into
//! a component of contract 0.4.0.
//!
//! The evaluator (`rules-wasm/sigma-pack`) is built with this binary and holds no rule. A pack
//! is the evaluator run once with its rules ([`rulehost_sigma::Pack`], encoded) placed in
//! pages past its memory and its `PACK_DATA` marker pointing at them: its initialization
//! (reading the rules, building their matcher) runs, and the state it leaves is the pack's
//! initial state ([`super::snapshot`]). The code is never changed, so every pack runs the
//! same, reviewed code; the same rules give the same bytes, so the same digest (and the
//! compile cache finds them again).

use std::sync::OnceLock;

use rulehost_sigma::ir::{FORMAT, Pack, Rule};

use super::snapshot::Prepared;
use crate::runtime::ComponentCache;

/// The evaluator's core module, built with this binary.
pub const EVALUATOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sigma-pack.core.wasm"));

/// The marker of the evaluator's `PACK_DATA` static, followed by eight bytes of all ones.
const MARKER: &[u8; 16] = b"\xd1rhpack\x01\xff\xff\xff\xff\xff\xff\xff\xff";

/// A pack that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The evaluator module is not what this code expects.
    #[error("the bundled evaluator cannot take rules: {0}")]
    Evaluator(String),
    /// The pack's matcher could not be built ahead.
    #[error(transparent)]
    Snapshot(#[from] super::snapshot::SnapshotError),
}

/// The artifact of a pack holding `rules`.
pub fn build(rules: &[Rule]) -> Result<Vec<u8>, PackError> {
    build_with_cache(rules, None)
}

/// The artifact of a pack holding `rules`; the evaluator, compiled to run the pack's
/// initialization, is kept in `cache` for the next process.
pub fn build_with_cache(rules: &[Rule], cache: Option<&ComponentCache>) -> Result<Vec<u8>, PackError> {
    component_of(&initialized_module(rules, cache)?)
}

/// The evaluator's core module with `rules` placed and its initialization run.
fn initialized_module(rules: &[Rule], cache: Option<&ComponentCache>) -> Result<Vec<u8>, PackError> {
    let pack = Pack { format: FORMAT, rules: rules.to_vec() };
    let data = pack.encode();
    // The evaluator is prepared once per process; two threads that both find it missing
    // both prepare it, and one is kept.
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    let prepared = match PREPARED.get() {
        Some(prepared) => prepared,
        None => {
            let fresh = Prepared::new(EVALUATOR, cache)?;
            PREPARED.get_or_init(|| fresh)
        }
    };
    Ok(prepared.initialized(MARKER, &data)?)
}

/// The pack component of the evaluator's initialized core module.
fn component_of(module: &[u8]) -> Result<Vec<u8>, PackError> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| PackError::Evaluator(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_rules_give_the_same_bytes() {
        let a = build(&[]).unwrap();
        let b = build(&[]).unwrap();
        assert_eq!(a, b);
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all()).validate_all(&a).unwrap();
    }

    /// An instance's allocations come from memory past the pack's matcher, never from blocks
    /// left free among the matcher's: those pages are mapped copy-on-write from the compiled
    /// pack, and a write to one copies it and flushes it from every core's TLB.
    #[test]
    fn an_instance_allocates_past_the_matchers_memory() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma");
        let paths: Vec<std::path::PathBuf> =
            std::fs::read_dir(shared).unwrap().map(|entry| entry.unwrap().path()).collect();
        let rules: Vec<Rule> =
            crate::sigma::compile_paths(&paths).unwrap().rules.into_iter().map(|(_, rule)| rule).collect();
        assert!(rules.len() >= 8, "the shared rules compile");
        let engine = wasmtime::Engine::default();
        let mut store = wasmtime::Store::new(&engine, ());
        let module = wasmtime::Module::new(&engine, initialized_module(&rules, None).unwrap()).unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let memory = instance.get_memory(&mut store, "memory").expect("the evaluator's memory");
        // The initial memory ends with the allocator's record of the memory it grew last, and
        // what the evaluator's filling left free of that (under its largest block, 64 KiB) may
        // be given out: nothing before it.
        let image_end = memory.data(&store).iter().rposition(|&byte| byte != 0).expect("a matcher") + 1;
        let matchers_end = image_end.saturating_sub(64 << 10);
        let realloc =
            instance.get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "cabi_realloc").unwrap();
        for size in [8, 16, 40, 100, 1000, 4000, 70_000, 1 << 20] {
            let at = realloc.call(&mut store, (0, 0, 8, size)).unwrap() as u32 as usize;
            assert!(
                at >= matchers_end,
                "{size} bytes given at {at}, among the matcher's blocks (up to {matchers_end})"
            );
        }
    }
}
