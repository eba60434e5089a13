//! What reaches a terminal: text that came from elsewhere (a tracker's
//! refusal, a peer's reason, a file name from a listing) is printed with
//! its control characters replaced ([`terminal_safe`]), so a hostile
//! tracker or peer cannot move the cursor, rewrite earlier lines or set
//! the window title with escape sequences.

use std::borrow::Cow;

/// `text` with every control character but the line break and the tab
/// replaced by U+FFFD (borrowed when there is none).
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(bad) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if bad(c) { '\u{FFFD}' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_other_controls_are_replaced_line_breaks_kept() {
        let hostile = "refused\x1b[2J\x1b]0;owned\x07 \r\u{9b}31m\nnext\tcol";
        assert_eq!(
            terminal_safe(hostile),
            "refused\u{FFFD}[2J\u{FFFD}]0;owned\u{FFFD} \u{FFFD}\u{FFFD}31m\nnext\tcol"
        );
        assert!(matches!(terminal_safe("plain text\n"), Cow::Borrowed(_)));
    }
}
