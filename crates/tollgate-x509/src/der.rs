//! Just enough DER reading for the fast serial path and the few structures
//! read from raw bytes (names, extended key usage, other names).

/// One DER element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The identifier octets (one byte unless the tag number is ≥ 31).
    pub tag: &'a [u8],
    /// The contents octets.
    pub contents: &'a [u8],
    /// The whole element: identifier, length and contents.
    pub raw: &'a [u8],
}

impl Tlv<'_> {
    /// Whether the identifier is this single byte (`0x30` SEQUENCE ...).
    pub fn is(&self, tag: u8) -> bool {
        self.tag == [tag]
    }
}

/// Reads one element with a definite length; returns it and the rest.
/// `None` for truncated input, an indefinite length, or a length of more
/// than four bytes.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let &first = input.first()?;
    let mut pos = 1;
    if first & 0x1f == 0x1f {
        // High tag number: base-128 bytes, the last without the top bit.
        loop {
            let &b = input.get(pos)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if pos > 5 {
                return None;
            }
        }
    }
    let tag_end = pos;
    let &len_byte = input.get(pos)?;
    pos += 1;
    let len = if len_byte < 0x80 {
        usize::from(len_byte)
    } else {
        let n = usize::from(len_byte & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(pos..pos + n)?;
        pos += n;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let end = pos.checked_add(len)?;
    let contents = input.get(pos..end)?;
    Some((
        Tlv {
            tag: &input[..tag_end],
            contents,
            raw: &input[..end],
        },
        &input[end..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_long_and_high_tag_forms() {
        let (tlv, rest) = read(&[0x02, 0x01, 0x05, 0xff]).unwrap();
        assert!(tlv.is(0x02));
        assert_eq!(tlv.contents, [0x05]);
        assert_eq!(tlv.raw, [0x02, 0x01, 0x05]);
        assert_eq!(rest, [0xff]);

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        let (tlv, rest) = read(&long).unwrap();
        assert_eq!(tlv.contents.len(), 0x80);
        assert!(rest.is_empty());

        let (tlv, _) = read(&[0x9f, 0x81, 0x00, 0x01, 0xaa]).unwrap();
        assert_eq!(tlv.tag, [0x9f, 0x81, 0x00]);
        assert_eq!(tlv.contents, [0xaa]);

        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x02, 0x00],
            &[0x1f, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(read(bad).is_none(), "{bad:02x?}");
        }
    }
}
