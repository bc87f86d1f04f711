//! Standard base64 (RFC 4648 §4, with padding), for PEM and RFC 9440.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the base64 of `bytes` to `out`.
pub(crate) fn encode_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
            out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
            out.push_str("==");
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
            out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
            out.push(char::from(ALPHABET[(n >> 6) as usize & 63]));
            out.push('=');
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut s = String::new();
    encode_into(&mut s, bytes);
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::encode(input.as_bytes()), want);
        }
        // Every 6-bit value, including `+` and `/`.
        assert_eq!(super::encode(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(super::encode(&[0x00, 0x10, 0x83]), "ABCD");
    }
}
