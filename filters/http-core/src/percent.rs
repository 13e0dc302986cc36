//! Strict percent-decoding (RFC 3986 §2.1) and the encoding it inverts.

/// Decodes `%XX`, and `+` as a space when `plus_is_space` (a form, as in
/// `application/x-www-form-urlencoded`). `None` for a broken escape (`%`
/// not followed by two hex digits): a value that could be read two ways is
/// refused rather than guessed.
#[must_use]
pub fn decode(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// [`decode`] into a string: `None` also when the bytes are not UTF-8.
#[must_use]
pub fn decode_utf8(text: &str, plus_is_space: bool) -> Option<String> {
    String::from_utf8(decode(text, plus_is_space)?).ok()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986 §2.3), for
/// a value in a query string.
#[must_use]
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn broken_escapes_are_refused() {
        assert_eq!(decode("a%2", false), None);
        assert_eq!(decode("a%zz", false), None);
        assert_eq!(decode("a%+1", false), None);
        assert_eq!(decode("%41+b", true).as_deref(), Some(&b"A b"[..]));
        assert_eq!(decode("%41+b", false).as_deref(), Some(&b"A+b"[..]));
        assert_eq!(decode_utf8("%ff", false), None);
    }

    #[test]
    fn encoding_keeps_only_unreserved_bytes() {
        assert_eq!(encode("a b/c?d=é~"), "a%20b%2Fc%3Fd%3D%C3%A9~");
    }

    proptest! {
        #[test]
        fn decoding_never_panics(s in "\\PC{0,64}", plus in any::<bool>()) {
            let _ = decode(&s, plus);
        }

        #[test]
        fn decode_inverts_encode(s in "\\PC{0,40}", plus in any::<bool>()) {
            prop_assert_eq!(decode_utf8(&encode(&s), plus), Some(s));
        }

        #[test]
        fn text_without_escapes_decodes_to_itself(s in "[^%+]{0,40}") {
            prop_assert_eq!(decode_utf8(&s, true), Some(s));
        }
    }
}
