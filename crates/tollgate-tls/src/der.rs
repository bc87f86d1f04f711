//! The little DER and base64 this crate needs beyond webpki and x509-parser.

/// One TLV read from the start of an input: (tag, contents, whole TLV, rest).
pub(crate) type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one TLV at the start of `input`.
pub(crate) fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &rest[..len], &input[..header + len], &rest[len..]))
}

/// The parts of a signed structure (certificate, CRL): the signed bytes, the
/// signature algorithm (AlgorithmIdentifier contents) and the signature.
pub(crate) struct Signed<'a> {
    pub tbs: &'a [u8],
    pub algorithm: &'a [u8],
    pub signature: &'a [u8],
}

pub(crate) fn signed(der: &[u8]) -> Option<Signed<'_>> {
    let (0x30, outer, _, _) = tlv(der)? else {
        return None;
    };
    let (_, _, tbs, rest) = tlv(outer)?;
    let (0x30, algorithm, _, rest) = tlv(rest)? else {
        return None;
    };
    let (0x03, bits, _, _) = tlv(rest)? else {
        return None;
    };
    let (&unused, signature) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    Some(Signed {
        tbs,
        algorithm,
        signature,
    })
}

/// A SubjectPublicKeyInfo (with or without its outer SEQUENCE) split into the
/// algorithm (AlgorithmIdentifier contents) and the key bits.
pub(crate) fn spki_parts(spki: &[u8], wrapped: bool) -> Option<(&[u8], &[u8])> {
    let contents = if wrapped {
        let (0x30, c, _, _) = tlv(spki)? else {
            return None;
        };
        c
    } else {
        spki
    };
    let (0x30, algorithm, _, rest) = tlv(contents)? else {
        return None;
    };
    let (0x03, bits, _, _) = tlv(rest)? else {
        return None;
    };
    let (&0, key) = bits.split_first()? else {
        return None;
    };
    Some((algorithm, key))
}

pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if padding > 2 || out.is_empty() {
        return None;
    }
    Some(out)
}
