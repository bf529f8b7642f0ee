//! Stock symbols: eight ASCII bytes, right-padded with spaces.
//!
//! Owns the conversions between the wire form and text. Never allocates on the way in.

use crate::itch::Stock;

/// The symbol without trailing spaces; non-UTF-8 bytes yield `"?"`.
pub fn trim(s: &Stock) -> &str {
    let end = s.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    core::str::from_utf8(&s[..end]).unwrap_or("?")
}

/// Pads `text` to the wire form; `None` if longer than 8 bytes or not printable ASCII.
pub fn pad(text: &str) -> Option<Stock> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > 8 || !b.iter().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    let mut s = [b' '; 8];
    s[..b.len()].copy_from_slice(b);
    Some(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pad_and_trim_round_trip() {
        let s = super::pad("AAPL").unwrap();
        assert_eq!(&s, b"AAPL    ");
        assert_eq!(super::trim(&s), "AAPL");
        assert_eq!(super::pad("TOOLONGSYM"), None);
        assert_eq!(super::pad(""), None);
        assert_eq!(super::trim(b"        "), "");
    }
}
