//! Errors in words, for messages.

/// `error` and its sources, one after another (`a: b: c`): for a library's errors whose
/// message leaves out their cause.
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
