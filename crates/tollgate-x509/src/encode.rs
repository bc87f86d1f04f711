//! Encodings of a certificate for origin headers.

use crate::base64;

/// `:<base64 DER>:` — an RFC 9440 byte sequence, as in `Client-Cert`.
pub fn rfc9440_item(der: &[u8]) -> String {
    let mut out = String::with_capacity(der.len().div_ceil(3) * 4 + 2);
    out.push(':');
    base64::encode_into(&mut out, der);
    out.push(':');
    out
}

/// `Client-Cert-Chain`: the items of the chain (leaf excluded), joined by
/// `, `, order kept.
pub fn rfc9440_list<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter()
        .map(rfc9440_item)
        .collect::<Vec<_>>()
        .join(", ")
}

/// URL-encodes a PEM for `CloudFront-Viewer-Cert-Pem`: every byte except the
/// unreserved `A-Z a-z 0-9 - . _ ~` is percent-encoded (space → `%20`,
/// newline → `%0A`, `+` → `%2B`, `/` → `%2F`, `=` → `%3D`).
pub fn url_encode_cloudfront(pem: &str) -> String {
    percent_encode(pem, b"-._~")
}

/// URL-encodes a PEM for ALB's `X-Amzn-Mtls-Clientcert-Leaf` and
/// `X-Amzn-Mtls-Clientcert`: as CloudFront, but `+`, `=` and `/` are left as
/// they are.
pub fn url_encode_alb(pem: &str) -> String {
    percent_encode(pem, b"-._~+=/")
}

fn percent_encode(text: &str, keep: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB+a/b=\n-----END CERTIFICATE-----\n";

    #[test]
    fn cloudfront_pem_encoding() {
        assert_eq!(
            url_encode_cloudfront(PEM),
            "-----BEGIN%20CERTIFICATE-----%0AMIIB%2Ba%2Fb%3D%0A-----END%20CERTIFICATE-----%0A"
        );
    }

    #[test]
    fn alb_pem_encoding_keeps_plus_slash_equals() {
        assert_eq!(
            url_encode_alb(PEM),
            "-----BEGIN%20CERTIFICATE-----%0AMIIB+a/b=%0A-----END%20CERTIFICATE-----%0A"
        );
    }

    #[test]
    fn rfc9440_items_and_lists() {
        assert_eq!(rfc9440_item(b"foo"), ":Zm9v:");
        assert_eq!(rfc9440_list([&b"foo"[..], &b"fo"[..]]), ":Zm9v:, :Zm8=:");
        assert_eq!(rfc9440_list(std::iter::empty()), "");
    }
}
