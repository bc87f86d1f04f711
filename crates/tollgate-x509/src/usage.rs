//! Key usage bits and extended key usage names.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// The X.509 key usage bits (RFC 5280 §4.2.1.3), bit 0 digitalSignature to
/// bit 8 decipherOnly. Combine with `|`, test with [`contains`](Self::contains).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyUsage(u16);

impl KeyUsage {
    pub const DIGITAL_SIGNATURE: KeyUsage = KeyUsage(1 << 0);
    /// Formerly nonRepudiation.
    pub const CONTENT_COMMITMENT: KeyUsage = KeyUsage(1 << 1);
    pub const KEY_ENCIPHERMENT: KeyUsage = KeyUsage(1 << 2);
    pub const DATA_ENCIPHERMENT: KeyUsage = KeyUsage(1 << 3);
    pub const KEY_AGREEMENT: KeyUsage = KeyUsage(1 << 4);
    pub const KEY_CERT_SIGN: KeyUsage = KeyUsage(1 << 5);
    pub const CRL_SIGN: KeyUsage = KeyUsage(1 << 6);
    pub const ENCIPHER_ONLY: KeyUsage = KeyUsage(1 << 7);
    pub const DECIPHER_ONLY: KeyUsage = KeyUsage(1 << 8);

    /// Every bit with its RFC 5280 name, in bit order.
    pub const NAMED: [(KeyUsage, &'static str); 9] = [
        (Self::DIGITAL_SIGNATURE, "digitalSignature"),
        (Self::CONTENT_COMMITMENT, "contentCommitment"),
        (Self::KEY_ENCIPHERMENT, "keyEncipherment"),
        (Self::DATA_ENCIPHERMENT, "dataEncipherment"),
        (Self::KEY_AGREEMENT, "keyAgreement"),
        (Self::KEY_CERT_SIGN, "keyCertSign"),
        (Self::CRL_SIGN, "cRLSign"),
        (Self::ENCIPHER_ONLY, "encipherOnly"),
        (Self::DECIPHER_ONLY, "decipherOnly"),
    ];

    const ALL: u16 = (1 << 9) - 1;

    /// No bit set (an extension present with no usage asserted).
    pub const fn empty() -> KeyUsage {
        KeyUsage(0)
    }

    /// From bits in this type's order; bits above 8 are dropped.
    pub const fn from_bits(bits: u16) -> KeyUsage {
        KeyUsage(bits & Self::ALL)
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: KeyUsage) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The RFC 5280 names of the bits set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(bit, _)| self.contains(*bit))
            .map(|(_, name)| name)
    }
}

impl BitOr for KeyUsage {
    type Output = KeyUsage;
    fn bitor(self, rhs: KeyUsage) -> KeyUsage {
        KeyUsage(self.0 | rhs.0)
    }
}

impl BitOrAssign for KeyUsage {
    fn bitor_assign(&mut self, rhs: KeyUsage) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for KeyUsage {
    type Output = KeyUsage;
    fn bitand(self, rhs: KeyUsage) -> KeyUsage {
        KeyUsage(self.0 & rhs.0)
    }
}

/// The names joined by `,`: `digitalSignature,keyEncipherment`.
impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyUsage({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_names_and_operators() {
        let ku = KeyUsage::DIGITAL_SIGNATURE | KeyUsage::KEY_CERT_SIGN;
        assert_eq!(ku.bits(), 0b10_0001);
        assert!(ku.contains(KeyUsage::KEY_CERT_SIGN));
        assert!(!ku.contains(KeyUsage::KEY_CERT_SIGN | KeyUsage::CRL_SIGN));
        assert_eq!(ku.to_string(), "digitalSignature,keyCertSign");
        assert_eq!(format!("{ku:?}"), "KeyUsage(digitalSignature,keyCertSign)");
        assert_eq!(KeyUsage::DECIPHER_ONLY.bits(), 0x100);
        assert_eq!(KeyUsage::from_bits(0xffff).names().count(), 9);
        assert!(KeyUsage::empty().is_empty());
        assert_eq!(KeyUsage::empty().to_string(), "");
        for (i, (bit, _)) in KeyUsage::NAMED.iter().enumerate() {
            assert_eq!(bit.bits(), 1 << i);
        }
    }
}
