//! Percent-encoding as both signature schemes use it: RFC 3986, only `A-Za-z0-9-_.~` raw,
//! upper-case hex, UTF-8.

/// Percent-encodes `s`.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay_raw() {
        assert_eq!(
            pct("aZ9-_.~ /*+=&:例"),
            "aZ9-_.~%20%2F%2A%2B%3D%26%3A%E4%BE%8B"
        );
    }
}
