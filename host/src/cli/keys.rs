//! `rulehost key` and `rulehost sign`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rulehost::rules;

use crate::*;

pub(crate) fn run_key_generate(args: KeyGenerateArgs) -> Result<ExitCode> {
    let key = rules::signing::generate_key(&args.dir, &args.name)?;
    // The secret key is never printed: only where it is.
    println!("secret key: {} (mode 0600; keep it secret)", key.secret.display());
    println!("public key: {}", key.public.display());
    println!("key id:     {}", key.key_id);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_key_export(args: KeyExportArgs) -> Result<ExitCode> {
    use rules::signing::AnyKey;
    let key = rules::signing::load_any_key(&args.key)?;
    let bytes = rules::signing::export_key(&args.key, &key, args.format, args.public)?;
    let secret = matches!(key, AnyKey::Secret(_)) && !args.public;
    match &args.output {
        Some(path) => {
            rules::signing::write_key_file(path, &bytes, secret)?;
            let kind = if secret { "secret key (mode 0600)" } else { "public key" };
            say!("rulehost: wrote the {kind} to {}", path.display());
        }
        // A secret key is never printed.
        None if secret => anyhow::bail!("a secret key is written only to a file: add -o FILE (or --public)"),
        None => std::io::stdout().write_all(&bytes).context("writing the key")?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_sign(args: SignArgs) -> Result<ExitCode> {
    let key = rules::signing::load_secret_key(&args.key)?;
    let name = args.rule.display().to_string();
    let artifact = std::fs::read(&args.rule).with_context(|| format!("reading {name}"))?;
    let (signed, detached) = rules::signing::sign(&name, &artifact, &key, args.detached)?;
    let output = args.output.unwrap_or_else(|| args.rule.clone());
    let key_id = rules::signing::key_id(&rules::signing::public_key_of(&key));
    match detached {
        Some(signature) => {
            if output != args.rule {
                std::fs::write(&output, &signed).with_context(|| format!("writing {}", output.display()))?;
            }
            let path = rules::signing::detached_signature_path(&output);
            std::fs::write(&path, signature).with_context(|| format!("writing {}", path.display()))?;
            say!("rulehost: signed {name} with key {key_id}: detached signature {}", path.display());
        }
        None => {
            std::fs::write(&output, &signed).with_context(|| format!("writing {}", output.display()))?;
            say!("rulehost: signed {name} with key {key_id}: {}", output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
