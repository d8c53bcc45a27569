//! Signed rule artifacts: keys, signing, verification, and the trust policy at load time.

use std::path::PathBuf;

use rulehost::rules::{BUNDLED_SOFT_CELL, Refusal, TrustPolicy};

use crate::util::{assert_golden, data, rulehost};

/// A folder with two key pairs (`platform`, `secops`) and the unsigned Soft Cell rule.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["platform", "secops"] {
            let run =
                rulehost(&["key", "generate", "--name", name, "--dir", &dir.path().display().to_string()]);
            assert_eq!(run.code, 0, "{}", run.stderr);
        }
        std::fs::write(dir.path().join("rule.wasm"), BUNDLED_SOFT_CELL).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn sign(&self, key: &str, rule: &str, extra: &[&str]) {
        let (key, rule) = (self.path(&format!("{key}.key")), self.path(rule));
        let mut args = vec!["sign", "--key", &key];
        args.extend(extra);
        args.push(&rule);
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }

    fn policy(&self, keys: &[&str]) -> TrustPolicy {
        let paths: Vec<PathBuf> = keys.iter().map(|k| self.dir.path().join(format!("{k}.pub"))).collect();
        TrustPolicy::load(&paths).unwrap()
    }
}

#[test]
fn key_generate_writes_a_private_secret_and_never_prints_it() {
    let keys = Keys::new();
    let secret = std::fs::read_to_string(keys.path("platform.key")).unwrap();
    assert!(secret.contains("PRIVATE KEY"), "PEM");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.path("platform.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let run =
        rulehost(&["key", "generate", "--name", "platform", "--dir", &keys.dir.path().display().to_string()]);
    assert_eq!(run.code, 2, "never overwrites a key");
    assert!(run.stderr.contains("exists already"), "{}", run.stderr);
    assert!(!run.stdout.contains("PRIVATE") && !run.stderr.contains("PRIVATE"));
    let fresh = tempfile::tempdir().unwrap();
    let run = rulehost(&["key", "generate", "--dir", &fresh.path().display().to_string()]);
    assert!(!run.stdout.contains("PRIVATE KEY") && !run.stdout.contains(&secret), "{}", run.stdout);
    // A key directory that does not exist yet (the README's ~/.config/rulehost/keys) is
    // made, readable by its owner only.
    let nested = fresh.path().join("config/rulehost/keys");
    let run = rulehost(&["key", "generate", "--dir", &nested.display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(nested.join("rulehost.key").exists() && nested.join("rulehost.pub").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&nested).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

#[test]
fn a_signed_rule_verifies_and_loads_under_the_policy() {
    let keys = Keys::new();
    let rule = keys.path("rule.wasm");
    let platform = keys.path("platform.pub");
    let run = rulehost(&["verify", "--trust", &platform, &rule]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        format!("{rule}: refused: unsigned (it carries no signature and none sits beside it as .sig)\n")
    );
    let run = rulehost(&["eval", "--trust", &platform, "--rules", &rule, &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!("{rule}: refused by the trust policy ({platform}): unsigned")),
        "{}",
        run.stderr
    );

    keys.sign("platform", "rule.wasm", &[]);
    let run = rulehost(&["verify", "--trust", &platform, &rule]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, format!("{rule}: verified: signed by platform\n").as_str())
    );
    let run = rulehost(&["eval", "--trust", &platform, "--rules", &rule, &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_golden("defender.alerts.jsonl", &run.stdout);
    let inspected = rulehost(&["inspect", "--json", "--trust", &platform, &rule]);
    let info: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(info["trusted_signers"], serde_json::json!(["platform"]));
    assert_eq!(run.json_lines()[0]["RuleDigest"], info["digest"], "alerts name the signed artifact's digest");

    let run = rulehost(&["verify", "--trust", &keys.path("secops.pub"), &rule]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("refused: signed by unknown signer(s) "), "{}", run.stdout);
}

#[test]
fn any_changed_byte_is_refused() {
    let keys = Keys::new();
    keys.sign("platform", "rule.wasm", &[]);
    let signed = std::fs::read(keys.path("rule.wasm")).unwrap();
    let policy = keys.policy(&["platform"]);
    assert_eq!(policy.verify(&signed, None), Ok(vec!["platform".to_owned()]));
    // Every byte of the file changed, and every byte of the signature section (the first,
    // where a key id sits outside what the signature covers) changed to every other value.
    let find = |needle: &[u8]| signed.windows(needle.len()).position(|w| w == needle).unwrap();
    let (size, leb) = leb128(&signed[9..]);
    let signature_section = 8..9 + leb + size;
    let mut changes: Vec<(usize, u8)> = (0..signed.len()).map(|at| (at, 0x01)).collect();
    changes.extend(signature_section.clone().flat_map(|at| (2..=255u8).map(move |bits| (at, bits))));
    let mut accepted = Vec::new();
    for &(at, bits) in &changes {
        let mut changed = signed.clone();
        changed[at] ^= bits;
        match policy.verify(&changed, None) {
            Ok(_) => accepted.push((at, bits)),
            Err(refusal) => assert!(
                matches!(
                    refusal,
                    Refusal::BadSignature(_) | Refusal::Unsigned | Refusal::UnknownSigner { .. }
                ),
                "byte {at} ^ {bits:#x}: {refusal}"
            ),
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {} single-byte changes accepted, the first at {:?} (signature section {signature_section:?})",
        accepted.len(),
        changes.len(),
        accepted.first()
    );
    // A changed key id reads as a stranger's signature, not as the trusted key's.
    let key_id = hex::decode(rulehost::rules::signing::key_id(&signing_key(&keys, "platform"))).unwrap();
    let at = find(&key_id);
    assert!(signature_section.contains(&at));
    let mut changed = signed.clone();
    changed[at + 3] ^= 0x10;
    assert!(
        matches!(policy.verify(&changed, None), Err(Refusal::UnknownSigner { .. })),
        "{:?}",
        policy.verify(&changed, None)
    );
    // The binary says it too.
    let mut changed = signed.clone();
    let at = find(b"Detect Suspicious Commands");
    changed[at] ^= 0x20;
    std::fs::write(keys.path("changed.wasm"), changed).unwrap();
    let run = rulehost(&["verify", "--trust", &keys.path("platform.pub"), &keys.path("changed.wasm")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("refused: bad signature: the signature by platform does not match the artifact"),
        "{}",
        run.stdout
    );
}

/// An unsigned LEB128 number at the start of `bytes`: its value and its length.
fn leb128(bytes: &[u8]) -> (usize, usize) {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("a truncated LEB128 number")
}

fn signing_key(keys: &Keys, name: &str) -> wasmsign2::PublicKey {
    rulehost::rules::signing::load_public_key(std::path::Path::new(&keys.path(&format!("{name}.pub"))))
        .unwrap()
}

#[test]
fn stripped_wrong_key_and_detached_mismatch_are_refused() {
    let keys = Keys::new();
    let policy = keys.policy(&["platform"]);
    assert_eq!(
        policy.verify(BUNDLED_SOFT_CELL, None),
        Err(Refusal::Unsigned),
        "stripped: the unsigned original"
    );

    keys.sign("secops", "rule.wasm", &[]);
    let signed = std::fs::read(keys.path("rule.wasm")).unwrap();
    assert!(matches!(policy.verify(&signed, None), Err(Refusal::UnknownSigner { .. })), "wrong key");

    // A detached signature of one artifact does not vouch for another.
    std::fs::write(keys.path("a.wasm"), BUNDLED_SOFT_CELL).unwrap();
    keys.sign("platform", "a.wasm", &["--detached"]);
    let signature = std::fs::read(keys.path("a.wasm.sig")).unwrap();
    assert_eq!(
        std::fs::read(keys.path("a.wasm")).unwrap(),
        BUNDLED_SOFT_CELL,
        "detached leaves the artifact alone"
    );
    assert_eq!(policy.verify(BUNDLED_SOFT_CELL, Some(&signature)), Ok(vec!["platform".to_owned()]));
    let run = rulehost(&["verify", "--trust", &keys.path("platform.pub"), &keys.path("a.wasm")]);
    assert_eq!(run.code, 0, "the .sig beside the artifact is found: {}", run.stdout);
    let other = std::fs::read(crate::util::test_rule("match-all")).unwrap();
    assert!(matches!(policy.verify(&other, Some(&signature)), Err(Refusal::BadSignature(_))));
    std::fs::write(keys.path("b.wasm"), &other).unwrap();
    std::fs::copy(keys.path("a.wasm.sig"), keys.path("b.wasm.sig")).unwrap();
    let run = rulehost(&["eval", "--trust", &keys.path("platform.pub"), "--rules", &keys.path("b.wasm")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("bad signature"), "{}", run.stderr);
}

#[test]
fn a_threshold_of_two_signers_needs_both() {
    let keys = Keys::new();
    let policy_file = keys.dir.path().join("policy.toml");
    std::fs::write(
        &policy_file,
        "[keys]\nplatform = \"platform.pub\"\nsecops = \"secops.pub\"\n\n[require]\nany_of = [\"platform\", \"secops\"]\nminimum = 2\n",
    )
    .unwrap();
    let policy = policy_file.display().to_string();
    keys.sign("platform", "rule.wasm", &[]);
    let run = rulehost(&["verify", "--trust", &policy, &keys.path("rule.wasm")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("refused: too few signers: signed by platform; 1 more of the any_of keys needed"),
        "{}",
        run.stdout
    );
    keys.sign("secops", "rule.wasm", &[]);
    let run = rulehost(&["verify", "--trust", &policy, &keys.path("rule.wasm")]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("verified: signed by platform, secops"));
    let run = rulehost(&["inspect", "--trust", &policy, &keys.path("rule.wasm")]);
    assert!(run.stdout.contains("trusted:       signed by platform, secops"), "{}", run.stdout);
}

#[test]
fn bad_key_files_and_policies_give_clear_errors() {
    let keys = Keys::new();
    let secret = keys.path("platform.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let run = rulehost(&["sign", "--key", &secret, &keys.path("rule.wasm")]);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains(&format!(
                "{secret}: a secret key readable by others (mode 644); run `chmod 600 {secret}`"
            )),
            "{}",
            run.stderr
        );
    }
    let garbage = keys.dir.path().join("garbage.pub");
    std::fs::write(&garbage, "not a key").unwrap();
    let run = rulehost(&["verify", "--trust", &garbage.display().to_string(), &keys.path("rule.wasm")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("garbage.pub: not an Ed25519 public key"), "{}", run.stderr);
    let policy = keys.dir.path().join("policy.toml");
    std::fs::write(&policy, "[keys]\nplatform = \"platform.pub\"\n[require]\nall_of = [\"nobody\"]\n")
        .unwrap();
    let run = rulehost(&["verify", "--trust", &policy.display().to_string(), &keys.path("rule.wasm")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("names key \"nobody\", which [keys] does not define"), "{}", run.stderr);
}

#[test]
fn allow_unsigned_is_loud_and_still_refuses_bad_signatures() {
    let keys = Keys::new();
    let platform = keys.path("platform.pub");
    let (rule, rows) = (keys.path("rule.wasm"), data("defender-rows.jsonl"));
    let args = ["eval", "--trust", &platform, "--allow-unsigned", "--rules", &rule, &rows];
    let run = rulehost(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning: --allow-unsigned"), "{}", run.stderr);
    keys.sign("secops", "rule.wasm", &[]);
    let run = rulehost(&args);
    assert_eq!(run.code, 2, "signed by a stranger is not unsigned");
}

#[test]
fn the_bundled_rule_is_trusted_by_its_pinned_digest() {
    let keys = Keys::new();
    let run = rulehost(&["eval", "--trust", &keys.path("platform.pub"), &data("defender-rows.jsonl")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_golden("defender.alerts.jsonl", &run.stdout);
    assert_eq!(rulehost::rules::BUNDLED_SOFT_CELL_DIGEST, crate::util::bundled_digest());
}

#[test]
fn signatures_interoperate_with_the_wasmsign2_library() {
    let keys = Keys::new();
    keys.sign("platform", "rule.wasm", &[]);
    let signed = std::fs::read(keys.path("rule.wasm")).unwrap();
    let public = wasmsign2::PublicKey::from_any(&std::fs::read(keys.path("platform.pub")).unwrap()).unwrap();
    public.verify(&mut &signed[..], None).expect("wasmsign2 verifies what rulehost signed");

    let secret = wasmsign2::SecretKey::from_any(&std::fs::read(keys.path("secops.key")).unwrap()).unwrap();
    let module = wasmsign2::Module::deserialize(&mut &BUNDLED_SOFT_CELL[..]).unwrap();
    let by_library = secret.sign(module, None).unwrap();
    let path: PathBuf = keys.dir.path().join("by-library.wasm");
    by_library.serialize_to_file(&path).unwrap();
    let run = rulehost(&["verify", "--trust", &keys.path("secops.pub"), &path.display().to_string()]);
    assert_eq!(run.code, 0, "rulehost verifies what wasmsign2 signed: {}", run.stdout);
    let run = rulehost(&[
        "eval",
        "--trust",
        &keys.path("secops.pub"),
        "--rules",
        &path.display().to_string(),
        &data("defender-rows.jsonl"),
    ]);
    assert_eq!(run.code, 0, "and runs it: {}", run.stderr);
}

/// The `wasmsign2` command-line tool, as `make wasmsign2` installs it.
fn wasmsign2_cli() -> PathBuf {
    let path = crate::util::workspace().join("target/tools/bin/wasmsign2");
    assert!(path.exists(), "{} is missing: `make wasmsign2` installs it", path.display());
    path
}

fn run_tool(program: &std::path::Path, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(program).args(args).output().expect("running the tool");
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Keys in the forms people have: rulehost's keys exported for the `wasmsign2` CLI, and
/// OpenSSH Ed25519 keys from `ssh-keygen`; each direction signs with one tool and verifies
/// with the other.
#[test]
fn signing_round_trips_with_the_wasmsign2_cli_and_openssh_keys() {
    let keys = Keys::new();
    let wasmsign2 = wasmsign2_cli();
    let path = |name: &str| keys.path(name);
    let export = |key: &str, extra: &[&str], output: &str| {
        let mut args = vec!["key", "export", key];
        args.extend(extra);
        let output = path(output);
        args.extend(["-o", &output]);
        let run = rulehost(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
    };
    let verified = |trust: &str, rule: &str| {
        let run = rulehost(&["verify", "--trust", &path(trust), &path(rule)]);
        assert_eq!(run.code, 0, "rulehost verifies {rule} with {trust}: {}{}", run.stdout, run.stderr);
    };
    // rulehost's PEM keys, written in wasmsign2's raw form.
    export(&path("platform.key"), &["--format", "wasmsign2"], "platform.raw.key");
    export(&path("platform.pub"), &["--format", "wasmsign2"], "platform.raw.pub");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path("platform.raw.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "an exported secret key is private");
    }
    keys.sign("platform", "rule.wasm", &["-o", &path("by-rulehost.wasm")]);
    run_tool(&wasmsign2, &["verify", "-K", &path("platform.raw.pub"), "-i", &path("by-rulehost.wasm")]);
    let (raw_key, rule, output) = (path("platform.raw.key"), path("rule.wasm"), path("by-wasmsign2.wasm"));
    for public in [&["-K", &path("platform.raw.pub")][..], &[]] {
        let mut args = vec!["sign", "-k", &raw_key, "-i", &rule, "-o", &output];
        args.extend(public);
        let _ = std::fs::remove_file(&output);
        run_tool(&wasmsign2, &args);
        verified("platform.pub", "by-wasmsign2.wasm");
    }
    // OpenSSH: rulehost signs with ssh-keygen's secret key and verifies with its public key,
    // and so does wasmsign2 -Z, each verifying the other's signature.
    let ssh_key = path("id_ed25519");
    run_tool(
        std::path::Path::new("ssh-keygen"),
        &["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", &ssh_key],
    );
    let run = rulehost(&["sign", "--key", &ssh_key, &path("rule.wasm"), "-o", &path("by-rulehost-ssh.wasm")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    verified("id_ed25519.pub", "by-rulehost-ssh.wasm");
    run_tool(
        &wasmsign2,
        &["verify", "-Z", "-K", &path("id_ed25519.pub"), "-i", &path("by-rulehost-ssh.wasm")],
    );
    run_tool(
        &wasmsign2,
        &[
            "sign",
            "-Z",
            "-k",
            &ssh_key,
            "-K",
            &path("id_ed25519.pub"),
            "-i",
            &path("rule.wasm"),
            "-o",
            &path("by-wasmsign2-ssh.wasm"),
        ],
    );
    verified("id_ed25519.pub", "by-wasmsign2-ssh.wasm");
    // A rulehost key exported as an OpenSSH line verifies for wasmsign2 -Z, and the other
    // key's signature does not verify under it.
    export(&path("platform.key"), &["--public", "--format", "openssh"], "platform.ssh.pub");
    let line = std::fs::read_to_string(path("platform.ssh.pub")).unwrap();
    assert!(line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "{line}");
    run_tool(&wasmsign2, &["verify", "-Z", "-K", &path("platform.ssh.pub"), "-i", &path("by-rulehost.wasm")]);
    let run = rulehost(&["verify", "--trust", &path("platform.ssh.pub"), &path("by-rulehost-ssh.wasm")]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    // Secret keys are never printed, and an OpenSSH secret key is left to ssh-keygen.
    let run = rulehost(&["key", "export", &path("platform.key"), "--format", "pem"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("a secret key is written only to a file"), "{}", run.stderr);
    assert!(!run.stdout.contains("PRIVATE"));
    let run = rulehost(&["key", "export", &path("platform.key"), "--format", "openssh", "-o", &path("x")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("does not write them (use ssh-keygen)"), "{}", run.stderr);
}
