//! The terminal: its width, and colour when it takes it.

pub(crate) const GREEN: &str = "32";

pub(crate) const RED: &str = "31";

/// The terminal's width: asked of the terminal, else `$COLUMNS`.
pub(crate) fn terminal_width() -> Option<usize> {
    terminal_size::terminal_size()
        .map(|(width, _)| width.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .filter(|&width| width > 0)
}

/// Colour only for a terminal, and never when `NO_COLOR` is set (no-color.org).
pub(crate) fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) fn paint(text: &str, color: &str, enabled: bool) -> String {
    if enabled { format!("\x1b[{color}m{text}\x1b[0m") } else { text.to_owned() }
}
