//! PEM files: bundles of certificates (with `#` comments), CRLs, private keys.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: entry {index} (line {line}): {message}")]
    Entry {
        source_name: String,
        index: usize,
        line: usize,
        message: String,
    },
    #[error("{source_name}: {message}")]
    File {
        source_name: String,
        message: String,
    },
}

/// One `-----BEGIN …-----` block.
#[derive(Debug)]
pub(crate) struct Block {
    pub label: String,
    /// 1-based line of the BEGIN line.
    pub line: usize,
    /// 1-based position among the blocks of the file.
    pub index: usize,
    pub der: Vec<u8>,
}

/// Splits a PEM text into blocks. Lines outside blocks (comments starting with
/// `#`, blank lines, OpenSSL's "subject=" explanations) are ignored; a block that
/// does not decode is an error naming it.
pub(crate) fn blocks(text: &[u8], source: &str) -> Result<Vec<Block>, PemError> {
    let text = std::str::from_utf8(text).map_err(|_| PemError::File {
        source_name: source.to_owned(),
        message: "not PEM text (not UTF-8); DER files hold one item and are not bundles".into(),
    })?;
    let mut out = Vec::new();
    let mut current: Option<(String, usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some((label, start, body)) = &mut current {
            if let Some(end) = line.strip_prefix("-----END ") {
                let end_label = end.trim_end_matches('-');
                let index = out.len() + 1;
                if end_label != label {
                    return Err(PemError::Entry {
                        source_name: source.to_owned(),
                        index,
                        line: *start,
                        message: format!("BEGIN {label} ends with END {end_label}"),
                    });
                }
                let pem = format!("-----BEGIN {label}-----\n{body}-----END {label}-----\n");
                let der = decode_block(&pem).map_err(|message| PemError::Entry {
                    source_name: source.to_owned(),
                    index,
                    line: *start,
                    message,
                })?;
                out.push(Block {
                    label: std::mem::take(label),
                    line: *start,
                    index,
                    der,
                });
                current = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(begin) = line.strip_prefix("-----BEGIN ") {
            current = Some((begin.trim_end_matches('-').to_owned(), n + 1, String::new()));
        }
    }
    if let Some((label, start, _)) = current {
        return Err(PemError::Entry {
            source_name: source.to_owned(),
            index: out.len() + 1,
            line: start,
            message: format!("BEGIN {label} has no END line"),
        });
    }
    Ok(out)
}

fn decode_block(pem: &str) -> Result<Vec<u8>, String> {
    // The label is checked by the caller; decode the base64 generically.
    let mut body = String::new();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        body.push_str(line);
    }
    crate::der::base64_decode(&body).ok_or_else(|| "invalid base64".to_owned())
}

/// Reads a PEM file of certificates (a chain, leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let text = read(path)?;
    let source = path.display().to_string();
    let blocks = blocks(&text, &source)?;
    let certs: Vec<CertificateDer<'static>> = blocks
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.der))
        .collect();
    if certs.is_empty() {
        return Err(PemError::File {
            source_name: source,
            message: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| PemError::File {
        source_name: path.display().to_string(),
        message: format!("no usable private key (PKCS#8, SEC1 or PKCS#1 PEM): {e}"),
    })
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_text_between_blocks_are_ignored() {
        let text = b"# our CAs\nsubject=CN=x\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\n# next\n-----BEGIN X509 CRL-----\nAw==\n-----END X509 CRL-----\n";
        let b = blocks(text, "t.pem").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].label.as_str(), b[0].line, b[0].der.as_slice()),
            ("CERTIFICATE", 3, &[0u8, 1, 2][..])
        );
        assert_eq!((b[1].label.as_str(), b[1].index), ("X509 CRL", 2));
    }

    #[test]
    fn a_broken_block_is_named() {
        let text = b"-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = blocks(text, "t.pem").unwrap_err().to_string();
        assert!(
            err.contains("t.pem: entry 2 (line 4): invalid base64"),
            "{err}"
        );
        let err = blocks(b"-----BEGIN CERTIFICATE-----\nAAEC\n", "t.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no END line"), "{err}");
    }
}
