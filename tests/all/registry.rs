//! Rules through a real OCI registry: Debian's `docker-registry` (the CNCF distribution
//! registry, 2.8), started on loopback for each test with its storage in a temporary
//! directory (`make registry` installs it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rulehost::rules::BUNDLED_SOFT_CELL;

use crate::util::{LocalService, command, test_rule};

const SAMPLE: &str = "examples/soft-cell-sample.jsonl";

/// The registry binary: `RULEHOST_TEST_REGISTRY`, else Debian's.
fn registry_binary() -> PathBuf {
    let path = std::env::var_os("RULEHOST_TEST_REGISTRY")
        .map_or_else(|| "/usr/bin/docker-registry".into(), PathBuf::from);
    assert!(path.exists(), "{} is not installed: `make registry` installs it", path.display());
    path
}

/// A registry on a free loopback port, with filesystem storage in a temporary directory.
struct TestRegistry {
    service: LocalService,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Anonymous access, or basic auth for `user` (htpasswd, bcrypt).
    fn start(user: Option<(&str, &str)>) -> Self {
        Self::start_with(user, None)
    }

    /// As [`Self::start`], serving TLS with `tls` (certificate and key files) when given.
    fn start_with(user: Option<(&str, &str)>, tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let service = LocalService::on_free_port();
        let host = service.address.clone();
        let auth = match user {
            Some((name, password)) => {
                let hash = bcrypt::hash(password, 4).unwrap();
                std::fs::write(dir.path().join("htpasswd"), format!("{name}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let tls = match tls {
            Some((certificate, key)) => {
                format!("  tls:\n    certificate: {}\n    key: {}\n", certificate.display(), key.display())
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{tls}{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = TestRegistry { service, dir };
        registry.resume();
        registry
    }

    /// Starts (again) on the same port and storage.
    fn resume(&mut self) {
        let mut command = Command::new(registry_binary());
        command.args(["serve", &self.dir.path().join("config.yml").display().to_string()]);
        self.service.start(command, "the registry");
    }

    fn stop(&mut self) {
        self.service.stop();
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> &str {
        &self.service.address
    }

    fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.host())
    }

    /// The file that holds blob `digest` in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }
}

/// A rulehost run: exit code, stdout, stderr.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `rulehost ARGS` with credentials only from `env`, a docker config only from
/// `docker_config`, and the store in `cache`.
fn rulehost_in(cache: &Path, docker_config: &Path, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut command = command();
    command
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("RULEHOST_REGISTRY_USERNAME")
        .env_remove("RULEHOST_REGISTRY_PASSWORD")
        .env("XDG_CACHE_HOME", cache);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.args(args).output().unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A workplace: a key pair, an empty docker config, a store.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let place = Place { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(place.path("docker")).unwrap();
        std::fs::create_dir_all(place.path("keys")).unwrap();
        let run = place.run(&["key", "generate", "--name", "platform", "--dir", &place.arg("keys")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        place
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(&[], args)
    }

    fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Outcome {
        rulehost_in(&self.path("cache"), &self.path("docker"), env, args)
    }

    /// `rulehost pull REFERENCE` with the store in `cache` (a fresh one, say) and `env`.
    fn pull_into(
        &self,
        cache: &Path,
        env: &[(&str, &str)],
        registry: &TestRegistry,
        reference: &str,
    ) -> Outcome {
        rulehost_in(
            cache,
            &self.path("docker"),
            env,
            &["pull", "--insecure-registry", registry.host(), reference],
        )
    }

    /// Pushes `rule`, signed with the place's key when `signed`; the manifest digest.
    fn push(&self, registry: &TestRegistry, rule: &str, reference: &str, signed: bool) -> String {
        let key = self.arg("keys/platform.key");
        let mut args = vec!["push", "--insecure-registry", registry.host(), rule, reference];
        if signed {
            args.extend(["--key", &key]);
        }
        let run = self.run(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let digest = run.stdout.trim().to_owned();
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
        digest
    }
}

fn soft_cell_file(place: &Place) -> String {
    let path = place.path("soft-cell.wasm");
    std::fs::write(&path, BUNDLED_SOFT_CELL).unwrap();
    path.display().to_string()
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl").args(["-sS", "--fail-with-body"]).args(args).output().unwrap();
    assert!(output.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn push_then_pull_gives_the_same_bytes_and_the_registry_the_alerts_of_the_file_online_and_offline() {
    let mut registry = TestRegistry::start(None);
    let place = Place::new();
    let rule = soft_cell_file(&place);
    let reference = registry.reference("detect/soft-cell:1.0.0");
    let digest = place.push(&registry, &rule, &reference, true);

    // The manifest, as any client reads it: the CNCF Wasm layout and the rule's facts.
    let manifest: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &registry.url("/v2/detect/soft-cell/manifests/1.0.0"),
    ]))
    .unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["annotations"]["dev.rulehost.rule.id"], "fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7");
    assert_eq!(manifest["annotations"]["dev.rulehost.contract"], "detect:rule@0.2.0");
    let config: serde_json::Value = serde_json::from_str(&curl(&[&registry
        .url(&format!("/v2/detect/soft-cell/blobs/{}", manifest["config"]["digest"].as_str().unwrap()))]))
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert!(config["component"]["exports"].as_array().unwrap().iter().any(|e| e == "evaluate"), "{config}");
    assert_eq!(config["component"]["target"], "detect:rule/rule@0.2.0");
    assert_eq!(config["layerDigests"][0], manifest["layers"][0]["digest"]);
    // The signature is a referrer, listed under the tag schema (this registry has no API).
    let index: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        "Accept: application/vnd.oci.image.index.v1+json",
        &registry.url(&format!("/v2/detect/soft-cell/manifests/sha256-{}", &digest[7..])),
    ]))
    .unwrap();
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.rulehost.signature.v1+wasmsign2");

    let public = place.arg("keys/platform.pub");
    let out = place.arg("out");
    let pulled = place.run(&[
        "pull",
        "--insecure-registry",
        registry.host(),
        "--trust",
        &public,
        &reference,
        "-o",
        &out,
    ]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert!(pulled.stdout.starts_with(&digest), "{}", pulled.stdout);
    assert!(pulled.stderr.contains("verified: signed by platform"), "{}", pulled.stderr);
    assert_eq!(std::fs::read(place.path("out/soft-cell.wasm")).unwrap(), BUNDLED_SOFT_CELL);
    assert!(place.path("out/soft-cell.wasm.sig").exists());

    let from_file = place.run(&["eval", "--rules", &rule, SAMPLE]);
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    assert!(from_file.stdout.contains("fa2f7d8a"), "{}", from_file.stdout);
    let eval = |extra: &[&str], rules: &str| {
        let mut args = vec!["eval", "--trust", &public, "--rules", rules];
        args.extend_from_slice(extra);
        args.push(SAMPLE);
        place.run(&args)
    };
    let online = eval(&["--insecure-registry", registry.host()], &reference);
    assert_eq!(online.code, 0, "{}", online.stderr);
    assert_eq!(online.stdout, from_file.stdout);
    let inspect = place.run(&["inspect", "--insecure-registry", registry.host(), "--json", &reference]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(inspect.stdout.contains("fa2f7d8a-6726-465a-aa72-6f6e3d4c99d7"), "{}", inspect.stdout);
    let verify =
        place.run(&["verify", "--insecure-registry", registry.host(), "--trust", &public, &reference]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert!(
        verify.stdout.contains(&format!("{reference}: verified: signed by platform")),
        "{}",
        verify.stdout
    );
    let cases = "rules-wasm/soft-cell/cases.json";
    let tested = place.run(&["test", "--insecure-registry", registry.host(), &reference, cases]);
    assert_eq!(tested.code, 0, "{}{}", tested.stdout, tested.stderr);

    // The registry goes away: --offline uses the store, and a reference pinned by digest
    // never goes to the network again.
    registry.stop();
    let offline = eval(&["--offline"], &reference);
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    assert_eq!(offline.stdout, from_file.stdout);
    let pinned = format!("{}@{digest}", registry.reference("detect/soft-cell"));
    let pinned_run = eval(&["--insecure-registry", registry.host()], &pinned);
    assert_eq!(pinned_run.code, 0, "{}", pinned_run.stderr);
    assert_eq!(pinned_run.stdout, from_file.stdout);
    // What the store does not hold is an error, offline or not.
    let other = registry.reference("detect/other:1");
    let missing = eval(&["--offline"], &other);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("not in the local store"), "{}", missing.stderr);
    let down = eval(&["--insecure-registry", registry.host()], &other);
    assert_eq!(down.code, 2);
    assert!(down.stderr.contains(&format!("registry {}", registry.host())), "{}", down.stderr);
}

#[test]
fn an_unsigned_artifact_is_refused_by_the_trust_policy_and_a_changed_blob_by_its_digest() {
    let registry = TestRegistry::start(None);
    let place = Place::new();
    let rule = soft_cell_file(&place);
    let reference = registry.reference("detect/unsigned:1");
    place.push(&registry, &rule, &reference, false);
    let public = place.arg("keys/platform.pub");
    let refused = place.run(&[
        "eval",
        "--insecure-registry",
        registry.host(),
        "--trust",
        &public,
        "--rules",
        &reference,
        SAMPLE,
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("unsigned") || refused.stderr.contains("no signature"),
        "{}",
        refused.stderr
    );

    // The layer's bytes change in the registry's storage: a fresh store refuses them.
    let reference = registry.reference("detect/changed:1");
    place.push(&registry, &rule, &reference, true);
    let layer = format!("sha256:{}", sha256_hex(BUNDLED_SOFT_CELL));
    let blob = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let run = place.pull_into(fresh.path(), &[], &registry, &reference);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("refused") && run.stderr.contains(&layer), "{}", run.stderr);
    assert!(
        !fresh.path().join("rulehost/components/oci/rules").exists(),
        "nothing was written for the loaders"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Uploads a blob with curl, as the distribution API takes it (POST, then PUT ?digest=).
fn curl_blob(registry: &TestRegistry, repository: &str, bytes: &[u8], dir: &Path) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let file = dir.join(&digest[7..]);
    std::fs::write(&file, bytes).unwrap();
    let headers = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &registry.url(&format!("/v2/{repository}/blobs/uploads/")),
    ]);
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .unwrap()
        .trim()
        .to_owned();
    let location = if location.starts_with('/') { registry.url(&location) } else { location };
    let separator = if location.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{separator}digest={digest}"),
    ]);
    digest
}

fn curl_manifest(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    manifest: &serde_json::Value,
    dir: &Path,
) {
    let file = dir.join(format!("manifest-{tag}.json"));
    std::fs::write(&file, serde_json::to_vec(manifest).unwrap()).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &registry.url(&format!("/v2/{repository}/manifests/{tag}")),
    ]);
}

#[test]
fn an_artifact_pushed_by_hand_runs_and_manifests_of_other_shapes_are_refused() {
    let registry = TestRegistry::start(None);
    let place = Place::new();
    let work = place.path("curl");
    std::fs::create_dir_all(&work).unwrap();
    let repository = "by-hand/soft-cell";
    let layer = curl_blob(&registry, repository, BUNDLED_SOFT_CELL, &work);
    let config = br#"{"architecture":"wasm","os":"wasip2","layerDigests":[]}"#;
    let config_digest = curl_blob(&registry, repository, config, &work);
    let descriptor = |media_type: &str, digest: &str, size: usize| serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
    let wasm_layer = descriptor("application/wasm", &layer, BUNDLED_SOFT_CELL.len());
    let manifest = |config_type: &str, layers: Vec<serde_json::Value>| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(config_type, &config_digest, config.len()),
            "layers": layers,
        })
    };
    let wasm_config = "application/vnd.wasm.config.v0+json";
    curl_manifest(&registry, repository, "good", &manifest(wasm_config, vec![wasm_layer.clone()]), &work);
    curl_manifest(
        &registry,
        repository,
        "two-layers",
        &manifest(wasm_config, vec![wasm_layer.clone(), wasm_layer.clone()]),
        &work,
    );
    curl_manifest(
        &registry,
        repository,
        "image",
        &manifest("application/vnd.oci.image.config.v1+json", vec![wasm_layer.clone()]),
        &work,
    );
    let foreign = descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer, BUNDLED_SOFT_CELL.len());
    curl_manifest(&registry, repository, "foreign-layer", &manifest(wasm_config, vec![foreign]), &work);

    let eval = |tag: &str| {
        let reference = registry.reference(&format!("{repository}:{tag}"));
        place.run(&["eval", "--insecure-registry", registry.host(), "--rules", &reference, SAMPLE])
    };
    let good = eval("good");
    assert_eq!(good.code, 0, "{}", good.stderr);
    let from_file = place.run(&["eval", SAMPLE]);
    assert_eq!(good.stdout, from_file.stdout);
    for (tag, says) in [
        ("two-layers", "has 2 layers"),
        ("image", "not a Wasm artifact"),
        ("foreign-layer", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ] {
        let run = eval(tag);
        assert_eq!(run.code, 2, "{tag}: {}", run.stderr);
        assert!(
            run.stderr.contains(says) && run.stderr.contains(&format!(":{tag}")),
            "{tag}: {}",
            run.stderr
        );
    }
}

#[test]
fn credentials_come_from_the_environment_or_the_docker_config_and_wrong_ones_name_the_registry() {
    let registry = TestRegistry::start(Some(("ci", "s3cret-pass")));
    let place = Place::new();
    let rule = soft_cell_file(&place);
    let reference = registry.reference("private/soft-cell:1");
    let push = |env: &[(&str, &str)]| {
        place.run_with(env, &["push", "--insecure-registry", registry.host(), &rule, &reference])
    };
    let anonymous = push(&[]);
    assert_eq!(anonymous.code, 2);
    assert!(anonymous.stderr.contains(&format!("registry {}", registry.host())), "{}", anonymous.stderr);
    assert!(anonymous.stderr.contains("denied anonymously"), "{}", anonymous.stderr);
    let wrong = push(&[("RULEHOST_REGISTRY_USERNAME", "ci"), ("RULEHOST_REGISTRY_PASSWORD", "wrong-secret")]);
    assert_eq!(wrong.code, 2);
    assert!(wrong.stderr.contains(&format!("registry {}", registry.host())), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("denied as \"ci\""), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("wrong-secret"), "{}", wrong.stderr);
    let right = push(&[("RULEHOST_REGISTRY_USERNAME", "ci"), ("RULEHOST_REGISTRY_PASSWORD", "s3cret-pass")]);
    assert_eq!(right.code, 0, "{}", right.stderr);
    // The docker config.json that `docker login` writes.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret-pass");
    std::fs::write(
        place.path("docker/config.json"),
        serde_json::json!({"auths": {registry.host().to_owned(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let pulled = place.run(&["pull", "--insecure-registry", registry.host(), &reference]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    // A credential helper (`credsStore`), asked through its get protocol.
    let helpers = place.path("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-fake");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$server\" = \"{}\" ] || exit 1\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"ci\",\"Secret\":\"s3cret-pass\"}}'\n",
            registry.host()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&helper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&helper, permissions).unwrap();
    std::fs::write(place.path("docker/config.json"), r#"{"credsStore": "fake"}"#).unwrap();
    let path = format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap());
    let fresh = tempfile::tempdir().unwrap();
    let helped = place.pull_into(fresh.path(), &[("PATH", &path)], &registry, &reference);
    assert_eq!(helped.code, 0, "{}", helped.stderr);
    let unhelped = place.pull_into(fresh.path(), &[], &registry, &reference);
    assert_eq!(unhelped.code, 2, "without the helper on PATH: {}", unhelped.stderr);
    assert!(unhelped.stderr.contains("docker-credential-fake"), "{}", unhelped.stderr);
}

/// A certificate authority and a server certificate for 127.0.0.1, made with openssl.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    run(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=rulehost test CA",
        "-days",
        "2",
        "-out",
        "ca.pem",
    ]);
    run(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"]);
    run(&["req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr"]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

#[test]
fn a_registry_on_tls_is_trusted_through_a_given_authority_and_refused_without_it() {
    let place = Place::new();
    let certs = place.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, certificate, key) = certificates(&certs);
    let registry = TestRegistry::start_with(None, Some((&certificate, &key)));
    let rule = soft_cell_file(&place);
    let reference = registry.reference("tls/soft-cell:1");
    let ca = ca.display().to_string();
    let pushed = place.run(&["push", "--registry-ca", &ca, &rule, &reference]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let untrusted = place.run(&["eval", "--rules", &reference, SAMPLE]);
    assert_eq!(untrusted.code, 2, "{}", untrusted.stderr);
    assert!(untrusted.stderr.contains(&format!("registry {}", registry.host())), "{}", untrusted.stderr);
    assert!(untrusted.stderr.to_lowercase().contains("certificate"), "{}", untrusted.stderr);
    let trusted = place.run(&["eval", "--registry-ca", &ca, "--rules", &reference, SAMPLE]);
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    assert_eq!(trusted.stdout, place.run(&["eval", SAMPLE]).stdout);
    // A file of several certificates is read whole; a file of none is refused by its name.
    let bundle = certs.join("bundle.pem");
    std::fs::write(&bundle, [std::fs::read(&certificate).unwrap(), std::fs::read(&ca).unwrap()].concat())
        .unwrap();
    let bundle = bundle.display().to_string();
    let bundled = place.run(&["eval", "--registry-ca", &bundle, "--rules", &reference, SAMPLE]);
    assert_eq!(bundled.code, 0, "{}", bundled.stderr);
    assert_eq!(bundled.stdout, trusted.stdout);
    let notes = certs.join("notes.txt");
    std::fs::write(&notes, "the CA is on the wiki\n").unwrap();
    let notes = notes.display().to_string();
    let refused = place.run(&["eval", "--registry-ca", &notes, "--rules", &reference, SAMPLE]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&notes) && refused.stderr.contains("no PEM certificate"),
        "{}",
        refused.stderr
    );
}

/// A registry that answers with fixed bodies: `manifest` for every tag, `blob` for every
/// blob. With `bearer` (a user and password), it asks for a bearer token as Docker Hub, GHCR
/// and Harbor do: a 401 naming its token endpoint, which hands out a token for those
/// credentials; only requests bearing it are served.
fn fake_registry(manifest: Vec<u8>, blob: Vec<u8>, bearer: Option<(&str, &str)>) -> String {
    fake_registry_flooding(manifest, blob, bearer, None).0
}

/// A hostile registry's answer: to every request whose path contains `path`, this status
/// and a body of [`FLOOD_BYTES`] with no length given, as long as the client reads it.
#[derive(Clone, Copy)]
struct Flood {
    path: &'static str,
    status: &'static str,
}

/// What a flooded answer would send if it were read to its end.
const FLOOD_BYTES: u64 = 512 << 20;

/// [`fake_registry`], with the answers of `flood` replaced by floods; the counter is the
/// number of flooded bytes the client took.
fn fake_registry_flooding(
    manifest: Vec<u8>,
    blob: Vec<u8>,
    bearer: Option<(&str, &str)>,
    flood: Option<Flood>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use base64::Engine as _;
    let flooded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = flooded.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let basic = bearer.map(|(user, password)| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    });
    let realm = format!("http://{host}/token");
    // The registry's 401s name its token service; the token service's own do not.
    let challenge_of = move |status: &str, path: &str| {
        if status.starts_with("401") && !path.starts_with("/token") {
            format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n")
        } else {
            String::new()
        }
    };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut authorization = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorization = value.trim().to_owned();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            if let Some(flood) = flood.filter(|f| path.contains(f.path)) {
                let challenge = challenge_of(flood.status, &path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {}\r\nContent-Type: application/json\r\n{challenge}Connection: close\r\n\r\n",
                    flood.status
                );
                let piece = [b' '; 64 << 10];
                let mut sent = 0;
                while sent < FLOOD_BYTES && stream.write_all(&piece).is_ok() {
                    sent += piece.len() as u64;
                    counter.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                continue;
            }
            let authorized = basic.is_none() || authorization == "Bearer test-token";
            let unknown: &[u8] = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#;
            let (status, content_type, body): (&str, &str, &[u8]) = if path.starts_with("/token") {
                if Some(&authorization) == basic.as_ref() {
                    ("200 OK", "application/json", br#"{"token":"test-token","access_token":"test-token"}"#)
                } else {
                    (
                        "401 Unauthorized",
                        "application/json",
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                    )
                }
            } else if !authorized {
                (
                    "401 Unauthorized",
                    "application/json",
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#,
                )
            } else if path == "/v2/" {
                ("200 OK", "application/json", b"{}")
            } else if path.contains("/manifests/") && !path.contains("sha256-") {
                ("200 OK", "application/vnd.oci.image.manifest.v1+json", &manifest)
            } else if path.contains("/blobs/") {
                ("200 OK", "application/octet-stream", &blob)
            } else {
                ("404 Not Found", "application/json", unknown)
            };
            let challenge = challenge_of(status, &path);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
            let _ = stream.flush();
        }
    });
    (host, flooded)
}

/// The manifest of the bundled rule in the Wasm layout, as bytes.
fn soft_cell_manifest() -> Vec<u8> {
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": format!("sha256:{}", sha256_hex(BUNDLED_SOFT_CELL)), "size": BUNDLED_SOFT_CELL.len()}],
    }))
    .unwrap()
}

#[test]
fn a_registry_that_asks_for_a_bearer_token_gets_one_for_the_credentials() {
    let place = Place::new();
    let host = fake_registry(soft_cell_manifest(), BUNDLED_SOFT_CELL.to_vec(), Some(("ci", "token-pass")));
    let reference = format!("oci://{host}/hub/soft-cell:1");
    let eval = |password: &str| {
        let fresh = tempfile::tempdir().unwrap();
        rulehost_in(
            fresh.path(),
            &place.path("docker"),
            &[("RULEHOST_REGISTRY_USERNAME", "ci"), ("RULEHOST_REGISTRY_PASSWORD", password)],
            &["eval", "--insecure-registry", &host, "--rules", &reference, SAMPLE],
        )
    };
    let served = eval("token-pass");
    assert_eq!(served.code, 0, "{}", served.stderr);
    assert_eq!(served.stdout, place.run(&["eval", SAMPLE]).stdout);
    let denied = eval("not-it");
    assert_eq!(denied.code, 2, "{}", denied.stderr);
    assert!(
        denied.stderr.contains(&format!("registry {host}")) && denied.stderr.contains("as \"ci\""),
        "{}",
        denied.stderr
    );
    assert!(!denied.stderr.contains("not-it"), "{}", denied.stderr);
}

/// A registry (or the token service it names) that answers with a body without end, on a
/// success or an error, is cut off at the bound of what it may send: the pull fails (or,
/// for the signatures' listing, goes on without them) naming what was too large, and the
/// host never holds more than that bound.
#[test]
fn a_registry_that_floods_an_answer_is_cut_off_at_its_bound() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let place = Place::new();
    let flooding = |flood: Flood, bearer: Option<(&str, &str)>| {
        fake_registry_flooding(soft_cell_manifest(), BUNDLED_SOFT_CELL.to_vec(), bearer, Some(flood))
    };
    // What the sockets' buffers hold beyond the bound is all the registry got to send.
    let within_bound = |flooded: &AtomicU64, what: &str| {
        let taken = flooded.load(Ordering::Relaxed);
        assert!(taken < (4 << 20) + (16 << 20), "{what}: the host took {taken} bytes of the flood");
    };
    for (flood, bearer, says) in [
        (Flood { path: "/manifests/", status: "200 OK" }, None, "the manifest is larger than 4194304 bytes"),
        (Flood { path: "/manifests/", status: "404 Not Found" }, None, "404"),
        (Flood { path: "/manifests/", status: "500 Internal Server Error" }, None, "500"),
        (Flood { path: "/token", status: "200 OK" }, Some(("ci", "token-pass")), "the token is larger than"),
        (Flood { path: "/token", status: "401 Unauthorized" }, Some(("ci", "token-pass")), "401"),
        (Flood { path: "/blobs/", status: "500 Internal Server Error" }, None, "500"),
    ] {
        let (host, flooded) = flooding(flood, bearer);
        let reference = format!("oci://{host}/flood/rule:1");
        let fresh = tempfile::tempdir().unwrap();
        let run = rulehost_in(
            fresh.path(),
            &place.path("docker"),
            &[("RULEHOST_REGISTRY_USERNAME", "ci"), ("RULEHOST_REGISTRY_PASSWORD", "token-pass")],
            &["eval", "--insecure-registry", &host, "--allow-unsigned", "--rules", &reference, SAMPLE],
        );
        let what = format!("{} {}", flood.path, flood.status);
        assert_eq!(run.code, 2, "{what}: {}", run.stderr);
        assert!(run.stderr.contains(&host) && run.stderr.contains(says), "{what}: {}", run.stderr);
        within_bound(&flooded, &what);
    }
    // A push reads its answers under the same bounds (the blobs are found there already;
    // the manifest's PUT is answered with a flood).
    let (host, flooded) = flooding(Flood { path: "/manifests/", status: "500 Internal Server Error" }, None);
    let rule = soft_cell_file(&place);
    let push =
        place.run(&["push", "--insecure-registry", &host, &rule, &format!("oci://{host}/flood/rule:1")]);
    assert_eq!(push.code, 2, "{}", push.stderr);
    assert!(push.stderr.contains(&host) && push.stderr.contains("500"), "{}", push.stderr);
    within_bound(&flooded, "push");
    // The signatures' listing flooded: the artifact is pulled without a signature.
    let (host, flooded) = flooding(Flood { path: "/referrers/", status: "200 OK" }, None);
    let reference = format!("oci://{host}/flood/rule:1");
    let run =
        place.run(&["eval", "--insecure-registry", &host, "--allow-unsigned", "--rules", &reference, SAMPLE]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, place.run(&["eval", SAMPLE]).stdout);
    assert!(run.stderr.contains("the signatures could not be listed"), "{}", run.stderr);
    within_bound(&flooded, "referrers");
}

/// A tag moved to another artifact between the manifest fetch and the blob fetch (or a
/// registry that lies): the layer that comes is not the one the manifest names, and is
/// refused by its digest, whether its size differs or not.
#[test]
fn a_layer_that_is_not_the_one_the_manifest_names_is_caught_by_digest() {
    let place = Place::new();
    let other = std::fs::read(test_rule("match-all")).unwrap();
    let layer = format!("sha256:{}", sha256_hex(BUNDLED_SOFT_CELL));
    let mut other_sized = other.clone();
    other_sized.resize(BUNDLED_SOFT_CELL.len(), 0);
    for blob in [other, other_sized] {
        let host = fake_registry(soft_cell_manifest(), blob, None);
        let reference = format!("oci://{host}/moved/rule:stable");
        let run = place.run(&["eval", "--insecure-registry", &host, "--rules", &reference, SAMPLE]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("refused") && run.stderr.contains(&layer), "{}", run.stderr);
    }
}

#[test]
fn run_follows_a_tag_and_keeps_the_running_version_when_the_new_one_is_unsigned_or_the_registry_is_down() {
    let mut registry = TestRegistry::start(None);
    let place = Place::new();
    let reference = registry.reference("detect/versioned:stable");
    place.push(&registry, &test_rule("versioned-1"), &reference, true);
    let public = place.arg("keys/platform.pub");
    let mut child = command()
        .env("DOCKER_CONFIG", place.path("docker"))
        .env("XDG_CACHE_HOME", place.path("cache"))
        .env("RULEHOST_LOG", "info")
        .args(["run", "--rules", &reference, "--trust", &public, "--insecure-registry", registry.host()])
        .args(["--poll-interval", "1s", "--matches", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no {needle:?} in:\n{}", seen.join("\n"));
    };
    let loaded = wait_for("rule loaded");
    assert!(loaded.contains("version=1.0.0"), "{loaded}");
    // The tag moves to a signed version 2: it is pulled, verified and swapped in.
    place.push(&registry, &test_rule("versioned-2"), &reference, true);
    let swapped = wait_for("swapped");
    assert!(swapped.contains("2.0.0"), "{swapped}");
    // Then to an unsigned artifact: refused, version 2 stays.
    place.push(&registry, &test_rule("versioned-1"), &reference, false);
    let refused = wait_for("refused");
    assert!(refused.contains("unsigned") || refused.contains("no signature"), "{refused}");
    // The registry goes away: reported, the run goes on.
    registry.stop();
    wait_for("could not be asked");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(crate::util::read_data("defender-rows.jsonl").as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let versions: std::collections::BTreeSet<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["rule_version"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["2.0.0"], "{out}");
}
