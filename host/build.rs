//! Builds the bundled Soft Cell rule component, and the core module of the Sigma pack
//! evaluator, so the binary can carry them.

use std::path::Path;

use sha2::{Digest as _, Sha256};

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let workspace = Path::new(&manifest_dir).join("..");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for watched in [
        "rules-wasm/soft-cell",
        "rules-wasm/sdk",
        "rules-wasm/sigma",
        "rules-wasm/sigma-pack",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    // A target directory of its own: the outer build holds a lock on its own one.
    let target_dir = workspace.join("target").join("bundled-rules");
    let component = rule_build::build_rule(&workspace, "soft-cell", &target_dir)
        .unwrap_or_else(|e| panic!("building the bundled soft-cell rule: {e:#}"));
    // The binary trusts its bundled rule by this digest, not by a signature.
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&component)));
    std::fs::write(Path::new(&out_dir).join("soft-cell.sha256"), digest).expect("writing the digest");
    std::fs::write(Path::new(&out_dir).join("soft-cell.wasm"), component).expect("writing the component");
    // The evaluator stays a core module: each pack is a copy with its rules as data, wrapped
    // into a component when the pack is made. It is built with Wasm SIMD, so that `memchr`'s
    // searches and the compiler's vectorized loops work in the pack as natively (the README,
    // "How a pack is made").
    let module =
        rule_build::compile_module(&workspace, "sigma-pack", &target_dir, rule_build::TARGET, &["+simd128"])
            .unwrap_or_else(|e| panic!("building the Sigma pack evaluator: {e:#}"));
    std::fs::copy(&module, Path::new(&out_dir).join("sigma-pack.core.wasm")).expect("copying the evaluator");
}
