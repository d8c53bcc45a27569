//! `rule-build`: builds rule crates into components, for `make rules`.
//!
//! ```text
//! rule-build OUT_DIR PACKAGE...
//! ```
//! writes `OUT_DIR/PACKAGE.wasm` for every rule crate `PACKAGE` of this workspace.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out_dir), packages) = (args.next().map(PathBuf::from), args.collect::<Vec<_>>()) else {
        bail!("usage: rule-build OUT_DIR PACKAGE...");
    };
    if packages.is_empty() {
        bail!("usage: rule-build OUT_DIR PACKAGE...");
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = workspace.join("target");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for package in packages {
        let package = package.to_string_lossy();
        let component = rule_build::build_rule(&workspace, &package, &target_dir)?;
        let out = out_dir.join(format!("{package}.wasm"));
        std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("built {} ({} bytes)", out.display(), component.len());
    }
    Ok(())
}
