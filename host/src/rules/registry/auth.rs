//! Credentials for a registry, from where the usual tools keep them: the environment
//! (`RULEHOST_REGISTRY_USERNAME` and `RULEHOST_REGISTRY_PASSWORD`), then the docker
//! `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): its `auths`
//! entries, and its credential helpers (`credHelpers`, `credsStore`). A registry that asks for
//! a bearer token gets one in exchange for these (the client follows its challenge).
//! Secrets never reach a log or an error: [`Credentials`] prints only the user name.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// The environment variable with the user name for every registry.
pub const USERNAME_VARIABLE: &str = "RULEHOST_REGISTRY_USERNAME";
/// The environment variable with the password (or token) for every registry.
pub const PASSWORD_VARIABLE: &str = "RULEHOST_REGISTRY_PASSWORD";

/// How to present oneself to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// A user name and a password (or a token used as one).
    Basic {
        /// The user name.
        username: String,
        /// The secret.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <secret>)"),
        }
    }
}

impl Credentials {
    /// Where they came from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "anonymously".to_owned(),
            Credentials::Basic { username, .. } => format!("as {username:?}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials for `registry` (`host[:port]`); an unreadable config is an error that
/// names the file, never its contents.
pub fn credentials_for(registry: &str) -> Result<Credentials, String> {
    if let (Ok(username), Ok(password)) = (std::env::var(USERNAME_VARIABLE), std::env::var(PASSWORD_VARIABLE))
    {
        return Ok(Credentials::Basic { username, password });
    }
    let Some(path) = docker_config_path() else { return Ok(Credentials::Anonymous) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let config: DockerConfig = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a docker config.json (line {})", path.display(), e.line()))?;
    if let Some(helper) = config.cred_helpers.get(registry).or(config.creds_store.as_ref())
        && let Some(credentials) = ask_helper(helper, registry)?
    {
        return Ok(credentials);
    }
    for (key, entry) in &config.auths {
        if registry_of_key(key) != registry {
            continue;
        }
        if let Some(encoded) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    format!("{}: the auth of {key:?} is not base64 of user:password", path.display())
                })?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("{}: the auth of {key:?} is not user:password", path.display()))?;
            return Ok(Credentials::Basic { username: username.to_owned(), password: password.to_owned() });
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Credentials::Basic { username: username.clone(), password: password.clone() });
        }
    }
    Ok(Credentials::Anonymous)
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// `https://host:port/v1/` → `host:port`: the forms docker and others write as keys.
fn registry_of_key(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Asks `docker-credential-<helper>` for `registry`'s credentials (its `get` protocol: the
/// server on stdin, JSON on stdout). A helper that knows nothing of the registry gives none.
fn ask_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("credential helper {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| format!("credential helper {program}: {e}"))?;
    if !output.status.success() {
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| format!("credential helper {program}: its answer is not the helper protocol's JSON"))?;
    Ok(Some(Credentials::Basic { username: answer.username, password: answer.secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_docker_config_name_their_registry_and_secrets_stay_out_of_debug() {
        assert_eq!(registry_of_key("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(registry_of_key("127.0.0.1:5000"), "127.0.0.1:5000");
        let credentials = Credentials::Basic { username: "ci".into(), password: "hunter2".into() };
        assert!(!format!("{credentials:?}").contains("hunter2"));
        assert!(!credentials.describe().contains("hunter2"));
    }
}
