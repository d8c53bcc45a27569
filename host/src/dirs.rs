//! Where rulehost keeps its files for a user: config and caches.

use std::path::PathBuf;

/// rulehost's folder in one of the user's base directories: `$variable/rulehost`, else
/// `~/<fallback>/rulehost` (the XDG base directory convention).
pub(crate) fn user_dir(variable: &str, fallback: &str) -> Option<PathBuf> {
    let base = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(fallback)))?;
    Some(base.join("rulehost"))
}
