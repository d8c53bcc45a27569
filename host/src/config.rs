//! Settings that operators set once: a TOML file (`--config`, or `rulehost/config.toml` in
//! the user's config directory), each setting overridden by its flag.
//!
//! ```toml
//! rules = ["/etc/rulehost/rules"]       # default for --rules
//! cache_dir = "/var/cache/rulehost"     # compiled components (default: the user's cache)
//! cache_max_mib = 1024                  # the entries used longest ago go past this
//!
//! [trust]
//! keys = ["/etc/rulehost/policy.toml"]  # default for --trust
//! allow_unsigned = false
//!
//! [limits]
//! max_memory_mib = 64
//! deadline_ms = 1000
//! fuel = 100000000                      # absent: fuel metering off
//! max_alerts = 10000
//! max_artifact_mib = 64
//! max_failures = 3
//! ```
//!
//! Relative paths in the file are relative to the file's folder.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::runtime::Limits;

/// A config file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped settings.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// rulehost's default.
    Default,
    /// The config file.
    File(PathBuf),
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Flag => f.write_str("command line"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rules: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
    cache_max_mib: Option<u64>,
    #[serde(default)]
    trust: TrustSection,
    #[serde(default)]
    limits: LimitsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustSection {
    #[serde(default)]
    keys: Vec<PathBuf>,
    allow_unsigned: Option<bool>,
}

/// The limits a file or the flags may set; `None` leaves the value to the next layer.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Linear memory per rule, MiB.
    pub max_memory_mib: Option<u64>,
    /// Deadline per call, ms.
    pub deadline_ms: Option<u64>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Alerts per summarize call.
    pub max_alerts: Option<usize>,
    /// Largest artifact, MiB.
    pub max_artifact_mib: Option<u64>,
    /// Consecutive failures before quarantine.
    pub max_failures: Option<u32>,
}

type LimitsSection = LimitSettings;

/// What the command line says; empty or `None` where it says nothing.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--rules`.
    pub rules: Vec<PathBuf>,
    /// `--trust`.
    pub trust: Vec<PathBuf>,
    /// `--allow-unsigned`.
    pub allow_unsigned: bool,
    /// The limits' flags.
    pub limits: LimitSettings,
    /// `--cache-dir`.
    pub cache_dir: Option<PathBuf>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--cache-max-mib`.
    pub cache_max_mib: Option<u64>,
}

/// The effective settings and where each came from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// Rule paths (empty: the bundled rule).
    pub rules: Vec<PathBuf>,
    /// Trust policy paths (empty: no policy).
    pub trust: Vec<PathBuf>,
    /// Whether unsigned artifacts load under a policy.
    pub allow_unsigned: bool,
    /// The sandbox's limits.
    pub limits: Limits,
    /// Where compiled components are cached (`None`: off).
    pub cache_dir: Option<PathBuf>,
    /// The bound of the cache directory, in bytes.
    pub cache_max_bytes: u64,
    /// Each setting's source, by name.
    pub sources: BTreeMap<&'static str, Source>,
}

/// The config file in the user's config directory: `$XDG_CONFIG_HOME/rulehost/config.toml`,
/// else `~/.config/rulehost/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    Some(crate::dirs::user_dir("XDG_CONFIG_HOME", ".config")?.join("config.toml"))
}

impl Settings {
    /// Resolves the settings: `flags`, else the file at `path` (an explicit path must
    /// exist; the default one may not), else the defaults.
    pub fn resolve(path: Option<&Path>, flags: &Flags) -> Result<Self, ConfigError> {
        let (file, file_path) = match path {
            Some(path) => (read(path)?, Some(path.to_path_buf())),
            None => match default_path().filter(|p| p.is_file()) {
                Some(path) => (read(&path)?, Some(path)),
                None => (File::default(), None),
            },
        };
        let base = file_path.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let from_file = Source::File(file_path.clone().unwrap_or_default());
        let mut sources = BTreeMap::new();
        let mut pick_paths = |name: &'static str, flag: &[PathBuf], in_file: &[PathBuf]| -> Vec<PathBuf> {
            if !flag.is_empty() {
                sources.insert(name, Source::Flag);
                flag.to_vec()
            } else if !in_file.is_empty() {
                sources.insert(name, from_file.clone());
                // A registry reference is not a path relative to the file.
                in_file
                    .iter()
                    .map(|p| match p.to_str().is_some_and(crate::rules::registry::is_reference) {
                        true => p.clone(),
                        false => base.join(p),
                    })
                    .collect()
            } else {
                sources.insert(name, Source::Default);
                Vec::new()
            }
        };
        let rules = pick_paths("rules", &flags.rules, &file.rules);
        let trust = pick_paths("trust", &flags.trust, &file.trust.keys);
        let allow_unsigned = if flags.allow_unsigned {
            sources.insert("allow_unsigned", Source::Flag);
            true
        } else if let Some(value) = file.trust.allow_unsigned {
            sources.insert("allow_unsigned", from_file.clone());
            value
        } else {
            sources.insert("allow_unsigned", Source::Default);
            false
        };

        let cache_dir = if flags.no_cache {
            sources.insert("cache_dir", Source::Flag);
            None
        } else if let Some(dir) = &flags.cache_dir {
            sources.insert("cache_dir", Source::Flag);
            Some(dir.clone())
        } else if let Some(dir) = &file.cache_dir {
            sources.insert("cache_dir", from_file.clone());
            Some(base.join(dir))
        } else {
            sources.insert("cache_dir", Source::Default);
            crate::runtime::ComponentCache::default_dir()
        };
        let defaults = Limits::default();
        // A setting from its flag, else the file, else `$default`; where it came from noted.
        macro_rules! pick {
            ($name:ident, $flag:expr, $in_file:expr, $default:expr) => {{
                match ($flag, $in_file) {
                    (Some(v), _) => {
                        sources.insert(stringify!($name), Source::Flag);
                        Some(v)
                    }
                    (None, Some(v)) => {
                        sources.insert(stringify!($name), from_file.clone());
                        Some(v)
                    }
                    (None, None) => {
                        sources.insert(stringify!($name), Source::Default);
                        $default
                    }
                }
            }};
        }
        macro_rules! limit {
            ($name:ident, $default:expr) => {
                pick!($name, flags.limits.$name, file.limits.$name, $default)
            };
        }
        let cache_max_bytes = pick!(cache_max_mib, flags.cache_max_mib, file.cache_max_mib, None)
            .map_or(crate::runtime::DEFAULT_CACHE_MAX_BYTES, |mib: u64| mib.saturating_mul(1 << 20));
        let limits = Limits {
            memory_bytes: limit!(max_memory_mib, Some((defaults.memory_bytes >> 20) as u64))
                .map_or(defaults.memory_bytes, |mib| (mib as usize).saturating_mul(1 << 20)),
            deadline: limit!(deadline_ms, Some(defaults.deadline.as_millis() as u64))
                .map_or(defaults.deadline, Duration::from_millis),
            fuel: limit!(fuel, defaults.fuel),
            max_alerts: limit!(max_alerts, Some(defaults.max_alerts)).unwrap_or(defaults.max_alerts),
            max_artifact_bytes: limit!(max_artifact_mib, Some(defaults.max_artifact_bytes >> 20))
                .map_or(defaults.max_artifact_bytes, |mib| mib.saturating_mul(1 << 20)),
            max_consecutive_failures: limit!(max_failures, Some(defaults.max_consecutive_failures))
                .unwrap_or(defaults.max_consecutive_failures),
            ..defaults
        };
        Ok(Settings {
            file: file_path,
            rules,
            trust,
            allow_unsigned,
            limits,
            cache_dir,
            cache_max_bytes,
            sources,
        })
    }

    /// The component cache the settings describe (`None`: off).
    pub fn component_cache(&self) -> Option<crate::runtime::ComponentCache> {
        let cache = crate::runtime::ComponentCache::new(self.cache_dir.clone()?);
        Some(cache.with_max_bytes(self.cache_max_bytes))
    }

    /// Each setting as `(name, value, source)`, for `rulehost config show`.
    pub fn describe(&self) -> Vec<(&'static str, String, String)> {
        let paths = |paths: &[PathBuf], none: &str| {
            if paths.is_empty() {
                none.to_owned()
            } else {
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            }
        };
        let l = &self.limits;
        let values: Vec<(&'static str, String)> = vec![
            ("rules", paths(&self.rules, "(the bundled Soft Cell rule)")),
            ("trust", paths(&self.trust, "(none: any rule loads)")),
            ("allow_unsigned", self.allow_unsigned.to_string()),
            ("max_memory_mib", (l.memory_bytes >> 20).to_string()),
            ("deadline_ms", l.deadline.as_millis().to_string()),
            ("fuel", l.fuel.map_or_else(|| "off".to_owned(), |f| f.to_string())),
            ("max_alerts", l.max_alerts.to_string()),
            ("max_artifact_mib", (l.max_artifact_bytes >> 20).to_string()),
            ("max_failures", l.max_consecutive_failures.to_string()),
            (
                "cache_dir",
                self.cache_dir.as_ref().map_or_else(|| "(off)".to_owned(), |d| d.display().to_string()),
            ),
            ("cache_max_mib", (self.cache_max_bytes >> 20).to_string()),
        ];
        values
            .into_iter()
            .map(|(name, value)| {
                let source = self.sources.get(name).map_or_else(|| "default".to_owned(), Source::to_string);
                (name, value, source)
            })
            .collect()
    }
}

fn read(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file in a temporary folder, removed with it.
    struct TempFile {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn file_with(text: &str) -> TempFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        TempFile { _dir: dir, path }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file = file_with(
            "rules = [\"rules\"]\n[trust]\nkeys = [\"a.pub\"]\n[limits]\ndeadline_ms = 250\nfuel = 5000\n",
        );
        let flags =
            Flags { limits: LimitSettings { fuel: Some(7), ..Default::default() }, ..Default::default() };
        let settings = Settings::resolve(Some(&file.path), &flags).unwrap();
        assert_eq!(settings.limits.deadline, Duration::from_millis(250));
        assert_eq!(settings.limits.fuel, Some(7));
        assert_eq!(settings.limits.max_alerts, Limits::default().max_alerts);
        assert_eq!(settings.rules, [file.path.parent().unwrap().join("rules")], "relative to the file");
        assert_eq!(settings.sources["deadline_ms"], Source::File(file.path.clone()));
        assert_eq!(settings.sources["fuel"], Source::Flag);
        assert_eq!(settings.sources["max_alerts"], Source::Default);
        assert_eq!(settings.sources["trust"], Source::File(file.path.clone()));
    }

    #[test]
    fn the_cache_bound_comes_from_the_flag_the_file_or_the_default() {
        let file = file_with("cache_max_mib = 200\n");
        let from_file = Settings::resolve(Some(&file.path), &Flags::default()).unwrap();
        assert_eq!(from_file.cache_max_bytes, 200 << 20);
        assert_eq!(from_file.sources["cache_max_mib"], Source::File(file.path.clone()));
        assert_eq!(from_file.component_cache().map(|c| c.max_bytes()), Some(200 << 20));
        let flags = Flags { cache_max_mib: Some(50), ..Default::default() };
        let from_flag = Settings::resolve(Some(&file.path), &flags).unwrap();
        assert_eq!(from_flag.cache_max_bytes, 50 << 20);
        let default = Settings::resolve(Some(&file_with("").path), &Flags::default()).unwrap();
        assert_eq!(default.cache_max_bytes, crate::runtime::DEFAULT_CACHE_MAX_BYTES);
        let off = Flags { no_cache: true, ..Default::default() };
        assert!(Settings::resolve(Some(&file.path), &off).unwrap().component_cache().is_none());
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let file = file_with("[limits]\ndeadline = 5\n");
        let error = Settings::resolve(Some(&file.path), &Flags::default()).unwrap_err().to_string();
        assert!(error.starts_with(&file.path.display().to_string()), "{error}");
        assert!(error.contains("unknown field `deadline`"), "{error}");
        let missing = Settings::resolve(Some(Path::new("/nonexistent/config.toml")), &Flags::default());
        assert!(missing.is_err());
    }
}
