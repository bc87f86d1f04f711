//! A small DER writer for certificates rcgen cannot make: multi-valued
//! RDNs, Latin-1 TeletexStrings, values that are not strings, negative or
//! v1 serials, hand-made SAN entries. The signature is not valid (nothing
//! here verifies it); the key is a real P-256 key so tools accept the
//! certificate.

#![allow(dead_code)]

pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn set(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

/// DER of a dotted OID.
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u128> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut contents = Vec::new();
    let mut subids = vec![arcs[0] * 40 + arcs[1]];
    subids.extend(&arcs[2..]);
    for mut v in subids {
        let mut groups = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            groups.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        groups.reverse();
        contents.extend(groups);
    }
    tlv(0x06, &contents)
}

pub fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

pub fn printable(s: &str) -> Vec<u8> {
    tlv(0x13, s.as_bytes())
}

pub fn ia5(s: &str) -> Vec<u8> {
    tlv(0x16, s.as_bytes())
}

/// TeletexString holding Latin-1 bytes.
pub fn teletex_latin1(s: &str) -> Vec<u8> {
    let bytes: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect();
    tlv(0x14, &bytes)
}

pub fn bmp(s: &str) -> Vec<u8> {
    let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1e, &bytes)
}

pub fn universal(s: &str) -> Vec<u8> {
    let bytes: Vec<u8> = s.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect();
    tlv(0x1c, &bytes)
}

/// A Name from RDNs (certificate order), each a list of (OID, value DER).
pub fn name(rdns: &[&[(&str, Vec<u8>)]]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = rdns
        .iter()
        .map(|rdn| {
            let atvs: Vec<Vec<u8>> = rdn.iter().map(|(o, v)| seq(&[oid(o), v.clone()])).collect();
            set(&atvs)
        })
        .collect();
    seq(&rdns)
}

/// An Extension with a DER value.
pub fn extension(oid_text: &str, value: &[u8]) -> Vec<u8> {
    seq(&[oid(oid_text), tlv(0x04, value)])
}

pub struct Spec {
    /// Version field present (v3) or absent (v1).
    pub v3: bool,
    /// INTEGER contents of the serial, written as given.
    pub serial: Vec<u8>,
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
    /// UTCTime texts.
    pub not_before: &'static str,
    pub not_after: &'static str,
    pub extensions: Vec<Vec<u8>>,
}

impl Default for Spec {
    fn default() -> Spec {
        let cn = name(&[&[("2.5.4.3", utf8("builder"))]]);
        Spec {
            v3: true,
            serial: vec![0x01],
            issuer: cn.clone(),
            subject: cn,
            not_before: "240115000000Z",
            not_after: "250115000000Z",
            extensions: Vec::new(),
        }
    }
}

pub fn certificate(spec: &Spec) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let ecdsa_sha256 = seq(&[oid("1.2.840.10045.4.3.2")]);
    let mut tbs = Vec::new();
    if spec.v3 {
        tbs.push(tlv(0xa0, &tlv(0x02, &[0x02])));
    }
    tbs.push(tlv(0x02, &spec.serial));
    tbs.push(ecdsa_sha256.clone());
    tbs.push(spec.issuer.clone());
    tbs.push(seq(&[
        tlv(0x17, spec.not_before.as_bytes()),
        tlv(0x17, spec.not_after.as_bytes()),
    ]));
    tbs.push(spec.subject.clone());
    tbs.push(rcgen::PublicKeyData::subject_public_key_info(&key));
    if !spec.extensions.is_empty() {
        tbs.push(tlv(0xa3, &seq(&spec.extensions)));
    }
    // A syntactically valid ECDSA signature value: SEQUENCE { r, s }.
    let sig = seq(&[tlv(0x02, &[0x01]), tlv(0x02, &[0x01])]);
    let mut bits = vec![0x00];
    bits.extend(sig);
    seq(&[seq(&tbs), ecdsa_sha256, tlv(0x03, &bits)])
}
