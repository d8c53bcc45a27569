//! Builds rule crates into rule components: `cargo build` for `wasm32-unknown-unknown`
//! with the `rule` profile, then `wit-component` wraps the core module into a component.
//!
//! `wasm32-unknown-unknown` rather than `wasm32-wasip2`: a WASI target makes the component
//! import a dozen WASI interfaces that a rule never calls and that the host refuses to link.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The target rules are compiled for.
pub const TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile rules are compiled with (small, `panic = "abort"`).
pub const PROFILE: &str = "rule";

/// The WASI target, used only by the test rule that must be refused for importing WASI:
/// rustc links its output into a component itself.
pub const WASI_TARGET: &str = "wasm32-wasip2";

/// Compiles the rule crate `package` of the workspace at `workspace` into `target_dir`
/// and returns its component.
pub fn build_rule(workspace: &Path, package: &str, target_dir: &Path) -> Result<Vec<u8>> {
    build_rule_for(workspace, package, target_dir, TARGET)
}

/// [`build_rule`] for `target`: [`TARGET`], or [`WASI_TARGET`] whose output is already a
/// component.
pub fn build_rule_for(workspace: &Path, package: &str, target_dir: &Path, target: &str) -> Result<Vec<u8>> {
    let module_path = compile_module(workspace, package, target_dir, target, &[])?;
    let module = std::fs::read(&module_path).with_context(|| format!("reading {}", module_path.display()))?;
    if target == WASI_TARGET {
        return Ok(module);
    }
    componentize(&module).with_context(|| format!("componentizing {}", module_path.display()))
}

/// Runs `cargo build` for the rule crate `package`, its code (dependencies included) built
/// with the Wasm `target_features` (`+simd128`, say), and returns the output's path.
pub fn compile_module(
    workspace: &Path,
    package: &str,
    target_dir: &Path,
    target: &str,
    target_features: &[&str],
) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--package", package, "--target", target, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(target_dir);
    // Flags meant for the outer (native) build must not leak into the guest build.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        command.env_remove(var);
    }
    if !target_features.is_empty() {
        // With `--target`, these flags reach the target's code only, not build scripts.
        command.env("CARGO_ENCODED_RUSTFLAGS", format!("-Ctarget-feature={}", target_features.join(",")));
    }
    let status = command.status().with_context(|| format!("running cargo for {package}"))?;
    if !status.success() {
        bail!("cargo build of rule crate {package} failed ({status})");
    }
    Ok(target_dir.join(target).join(PROFILE).join(format!("{}.wasm", package.replace('-', "_"))))
}

/// Wraps a core module built with `wit-bindgen` into a component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default().module(module)?.validate(true).encode()
}
