//! Tollgate's TLS layer: what is decided in the handshake.
//!
//! - [`TrustStore`]: a PEM bundle of CAs, parsed once. Self-signed CAs are
//!   trust anchors; other CAs help build paths. Unusable entries are skipped
//!   with a [`TrustStoreWarning`] naming them; limits from the reference.
//! - [`CrlSet`]: CRLs (PEM or DER) whose signatures are verified against their
//!   issuer at load, so a handshake only looks serial numbers up.
//! - [`ClientVerifier`]: the rustls client-certificate verifier for the four
//!   modes — chain to the trust store (webpki), clientAuth EKU when an EKU is
//!   present, depth limit, CRLs on every certificate of the path,
//!   ignore-expiry — with every failure a [`VerifyFailure`] whose
//!   [`code`](VerifyFailure::code) is the reference's connectionStatus code
//!   ([`handshake_failure_code`] recovers it from the handshake error).
//! - [`ServerCertificates`] and [`server_config`]: certificates by SNI; TLS 1.2
//!   and 1.3 with AEAD suites; **no session resumption with client auth**, so
//!   every mTLS connection is fully verified.
//! - [`origin_client_config`]: the client side towards origins (origin mTLS).
//!
//! Invariant: fail closed. Anything the verifier cannot establish (unknown
//! issuer, unreadable certificate, CRL lookup failure) refuses the connection.

mod crl;
mod der;
mod origin;
mod pem;
mod server;
mod trust;
mod verify;

pub use crl::{CrlError, CrlSet};
pub use origin::origin_client_config;
pub use pem::{PemError, load_certs, load_key};
pub use server::{
    ServerCertError, ServerCertSpec, ServerCertificates, TlsConfigError, server_config,
};
pub use trust::{TrustStore, TrustStoreError, TrustStoreLimits, TrustStoreWarning};
pub use verify::{
    ClientAuthMode, ClientAuthPolicy, ClientVerifier, MAX_CLIENT_CERT_BYTES, Usage, VerifiedChain,
    VerifyFailure, handshake_failure_code, take_refused_leaf,
};
