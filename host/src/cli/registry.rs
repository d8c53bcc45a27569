//! `rulehost push` and `rulehost pull`: rule artifacts to and from OCI registries.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rulehost::rules::registry::{PushRequest, Reference, RegistryError};
use rulehost::rules::{self, signing};

use super::setup::{registry_of, runtime_of, settings, trust_of, warn_of_signature_problems};
use crate::{LoadArgs, PullArgs, PushArgs};

fn parse_reference(text: &str) -> Result<Reference> {
    Reference::parse(text)
        .map_err(|reason| RegistryError::Reference { reference: text.to_owned(), reason }.into())
}

pub(crate) fn run_push(args: PushArgs, config: Option<&Path>) -> Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    let load = LoadArgs {
        trust: crate::TrustArgs { trust: Vec::new(), allow_unsigned: false },
        limits: crate::LimitArgs::default(),
        cache: crate::CacheArgs::default(),
        registry: args.registry.clone(),
    };
    let settings = settings(config, &[], &load)?;
    let runtime = runtime_of(&settings)?;
    let name = args.rule.display().to_string();
    let wasm = std::fs::read(&args.rule).with_context(|| format!("reading {name}"))?;
    // Loaded as `eval` would load it: what is pushed is a rule this host runs.
    let pack = runtime.compile(&name, &wasm)?;
    let info = pack.info();
    let signature = match &args.key {
        Some(key) => {
            let secret = signing::load_secret_key(key)?;
            signing::sign(&name, &wasm, &secret, true)?.1
        }
        None => std::fs::read(signing::detached_signature_path(&args.rule)).ok(),
    };
    let mut annotations = BTreeMap::new();
    let file_name = args.rule.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    annotations.insert("org.opencontainers.image.title".to_owned(), file_name);
    let version = info.contract_version.as_deref().unwrap_or("?");
    let package = rulehost::runtime::CONTRACT_PACKAGE;
    annotations.insert("dev.rulehost.contract".to_owned(), format!("{package}@{version}"));
    // Contracts from 0.3.0 on have one world, `pack`; the earlier ones, `rule`.
    let world = if version.starts_with("0.1.") || version.starts_with("0.2.") { "rule" } else { "pack" };
    let target = Some(format!("{package}/{world}@{version}"));
    match pack.members() {
        [rule] => {
            annotations.insert("org.opencontainers.image.version".to_owned(), rule.version.clone());
            annotations.insert("org.opencontainers.image.description".to_owned(), rule.title.clone());
            annotations.insert("dev.rulehost.rule.id".to_owned(), rule.id.clone());
            annotations.insert("dev.rulehost.rule.version".to_owned(), rule.version.clone());
            annotations.insert("dev.rulehost.rule.title".to_owned(), rule.title.clone());
        }
        members => {
            annotations.insert("dev.rulehost.pack.rules".to_owned(), members.len().to_string());
        }
    }
    let request = PushRequest {
        exports: info.exports.clone(),
        imports: info.imports.clone(),
        target,
        annotations,
        signature,
    };
    let registry = registry_of(&settings, &args.registry)?;
    let pushed = registry.push(&reference, &wasm, &request)?;
    match &pushed.signature {
        Some(signature) => say!("rulehost: pushed {reference}, with its signature ({signature})"),
        None => say!("rulehost: pushed {reference}, unsigned"),
    }
    println!("{}", pushed.manifest);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_pull(args: PullArgs, config: Option<&Path>) -> Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    let settings = settings(config, &[], &args.load)?;
    let trust = trust_of(&settings)?;
    let registry = registry_of(&settings, &args.load.registry)?;
    let pulled = registry.pull(&reference)?;
    warn_of_signature_problems(&pulled);
    let bytes = std::fs::read(&pulled.path).with_context(|| format!("reading {}", pulled.path.display()))?;
    // With a policy, the signature decides before the artifact goes anywhere else.
    let signers = trust.check(&pulled.path, &bytes).map_err(|e| match e {
        rules::LoadError::Untrusted { reason, policy, .. } => {
            anyhow::anyhow!("{reference}: refused by the trust policy {policy}: {reason}")
        }
        other => other.into(),
    })?;
    let mut path = pulled.path.clone();
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let target = dir.join(pulled.path.file_name().expect("a stored artifact has a name"));
        std::fs::write(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
        let signature = signing::detached_signature_path(&pulled.path);
        let target_signature = signing::detached_signature_path(&target);
        if signature.exists() {
            std::fs::copy(&signature, &target_signature)
                .with_context(|| format!("writing {}", target_signature.display()))?;
        } else if target_signature.exists() {
            // A signature left from another artifact would be read as this one's.
            std::fs::remove_file(&target_signature)
                .with_context(|| format!("removing {}", target_signature.display()))?;
        }
        path = target;
    }
    let how = if pulled.fetched { "pulled" } else { "from the store" };
    let signed = match (pulled.signed, signers.is_empty()) {
        (_, false) => format!("verified: signed by {}", signers.join(", ")),
        (true, true) => "signed (not verified: no --trust)".to_owned(),
        (false, true) => "no signature".to_owned(),
    };
    say!("rulehost: {how} {reference}: {signed}");
    println!("{} {}", pulled.manifest, path.display());
    Ok(ExitCode::SUCCESS)
}
