//! Write [Tollgate](https://example.invalid/tollgate) connection functions in Rust.
//!
//! A connection function runs once for every new TLS connection, after the
//! client certificate was verified and before any HTTP is read, and decides
//! whether the connection may go on. This crate wraps the bindings of the
//! `tollgate:connection@0.1.0` WIT world in an idiomatic API:
//!
//! ```no_run
//! use tollgate_guest::prelude::*;
//!
//! tollgate_guest::connection_function!(check);
//!
//! fn check(conn: &Connection) -> Result<Decision> {
//!     let Some(serial) = conn.client_serial_hex() else {
//!         return Ok(Decision::deny("no client certificate"));
//!     };
//!     if Kvs::exists_in("revoked", &serial)? {
//!         log_custom_data(&format!("REVOKED:{serial}"));
//!         return Ok(Decision::deny("certificate revoked"));
//!     }
//!     log_custom_data(&format!("VALID:{serial}"));
//!     Ok(Decision::Allow)
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the
//! component is `target/wasm32-wasip2/release/<name>.wasm`. Test it with
//! `tollgate test <name>.wasm --cert client.pem --kvs revoked=revoked.json`.
//!
//! # Outcomes
//!
//! The entry point returns [`Decision::Allow`], [`Decision::Deny`], or an
//! [`Error`]. An error (like a panic, a trap or running out of time) denies
//! the connection and is logged as `ConnectionFunctionError`; a deny is logged
//! as `ConnectionFunctionDenied`. Fail closed: when in doubt, return an error.
//!
//! # Output
//!
//! [`log_custom_data`] sets the connection log's `connectionLogCustomData`
//! (at most 800 bytes are kept). [`console`] lines, and anything written to
//! stdout or stderr, are captured for `tollgate test` and bounded by the
//! runtime's output limit: a function that prints without end is stopped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "connection-function",
        pub_export_macro: true,
        export_macro_name: "__tollgate_export_world",
        default_bindings_module: "tollgate_guest::bindings",
    });
}

use bindings::tollgate::connection::{kvs as raw_kvs, log as raw_log, types as raw};

pub use raw::{KeyUsage, NameAttribute};

/// Everything a function usually needs: `use tollgate_guest::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Certificate, Connection, Decision, Error, Kvs, Result, SubjectAltName, console,
        log_custom_data,
    };
}

/// What to do with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve HTTP on this connection.
    Allow,
    /// Close the connection without an HTTP response. The reason, if any, is
    /// logged.
    Deny(Option<String>),
}

impl Decision {
    /// A deny with a reason.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny(Some(reason.into()))
    }

    /// Allow when `condition` holds, else deny with `reason`.
    pub fn allow_if(condition: bool, reason: impl Into<String>) -> Decision {
        if condition {
            Decision::Allow
        } else {
            Decision::deny(reason)
        }
    }

    fn into_raw(self) -> raw::Decision {
        match self {
            Decision::Allow => raw::Decision::Allow,
            Decision::Deny(reason) => raw::Decision::Deny(reason),
        }
    }
}

/// An error inside a function. Returning one denies the connection, logged as
/// `ConnectionFunctionError` with this error's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// [`Kvs::open`] named a store that is not associated with the function.
    NoSuchStore(String),
    /// [`Kvs::get`] found a value that is not UTF-8.
    NotUtf8 { key: String },
    /// [`Kvs::get_json`] found a value that is not the expected JSON.
    Json { key: String, message: String },
    /// Anything else, in the function's own words.
    Message(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchStore(name) => {
                write!(
                    f,
                    "no key-value store named {name:?} is associated with this function"
                )
            }
            Error::NotUtf8 { key } => write!(f, "the value of key {key:?} is not UTF-8"),
            Error::Json { key, message } => {
                write!(
                    f,
                    "the value of key {key:?} is not the expected JSON: {message}"
                )
            }
            Error::Message(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::Message(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::Message(message.to_owned())
    }
}

/// `Result<T, tollgate_guest::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The connection being decided on.
///
/// Each accessor asks the host; the host parses and formats a field only when
/// it is asked for, so call what you need and keep the result if you use it
/// twice.
pub struct Connection<'a> {
    raw: &'a raw::Connection,
}

impl<'a> Connection<'a> {
    #[doc(hidden)]
    pub fn from_raw(raw: &'a raw::Connection) -> Self {
        Connection { raw }
    }

    /// Unique id of the connection, as in the connection and access logs.
    pub fn id(&self) -> String {
        self.raw.id()
    }

    /// The client's IP address.
    pub fn client_ip(&self) -> IpAddr {
        ip_from_raw(self.raw.client_ip())
    }

    pub fn client_port(&self) -> u16 {
        self.raw.client_port()
    }

    /// The local address the client connected to.
    pub fn server_ip(&self) -> IpAddr {
        ip_from_raw(self.raw.server_ip())
    }

    pub fn server_port(&self) -> u16 {
        self.raw.server_port()
    }

    /// The server name the client asked for (SNI), if any.
    pub fn sni(&self) -> Option<String> {
        self.raw.sni()
    }

    /// The negotiated ALPN protocol (`h2`, `http/1.1`), if any.
    pub fn alpn(&self) -> Option<String> {
        self.raw.alpn()
    }

    /// `TLSv1.2` or `TLSv1.3`.
    pub fn tls_version(&self) -> String {
        self.raw.tls_version()
    }

    /// IANA cipher suite name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub fn cipher_suite(&self) -> String {
        self.raw.cipher_suite()
    }

    /// Name of the listener that accepted the connection.
    pub fn listener(&self) -> String {
        self.raw.listener()
    }

    /// How long the TLS handshake took.
    pub fn handshake_duration(&self) -> Duration {
        Duration::from_micros(self.raw.handshake_duration_us())
    }

    /// The client's leaf certificate, if one was presented.
    pub fn client_certificate(&self) -> Option<Certificate> {
        self.raw.client_certificate().map(|raw| Certificate { raw })
    }

    /// The leaf's serial number without colons (`4a3f5c92`), if a
    /// certificate was presented: the same as
    /// `client_certificate()?.serial_hex()`, in one host call.
    pub fn client_serial_hex(&self) -> Option<String> {
        self.raw.client_serial_hex()
    }

    /// The intermediates the client sent after its leaf, in order.
    pub fn intermediates(&self) -> Vec<Certificate> {
        self.raw
            .intermediates()
            .into_iter()
            .map(|raw| Certificate { raw })
            .collect()
    }

    /// True when a certificate of the chain was outside its validity period
    /// and admitted only because the listener ignores expiry.
    pub fn expiry_ignored(&self) -> bool {
        self.raw.expiry_ignored()
    }
}

fn ip_from_raw(ip: raw::IpAddress) -> IpAddr {
    match ip {
        raw::IpAddress::Ipv4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        raw::IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    }
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
    /// Any other kind, as text.
    Other(String),
}

/// The validity period of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// Unix seconds.
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// A certificate the client presented.
pub struct Certificate {
    raw: raw::Certificate,
}

impl Certificate {
    /// Lowercase hex with colons: `4a:3f:5c:92`.
    pub fn serial_number(&self) -> String {
        self.raw.serial_number()
    }

    /// The serial number with the colons removed: `4a3f5c92`. This is the form
    /// revocation stores are usually keyed by.
    pub fn serial_hex(&self) -> String {
        self.raw.serial_number().replace(':', "")
    }

    /// RFC 2253 subject: `CN=client.example.com,O=Example Corp,C=US`.
    pub fn subject(&self) -> String {
        self.raw.subject()
    }

    /// All subject attributes, in certificate order.
    pub fn subject_attributes(&self) -> Vec<NameAttribute> {
        self.raw.subject_attributes()
    }

    /// Values of one subject attribute, by short name (`"OU"`) or dotted OID.
    pub fn subject_attribute(&self, name: &str) -> Vec<String> {
        self.raw.subject_attribute(name)
    }

    /// The subject common name; the last one if there are several.
    pub fn common_name(&self) -> Option<String> {
        self.raw.subject_attribute("CN").pop()
    }

    /// The subject organizations (`O`).
    pub fn organizations(&self) -> Vec<String> {
        self.raw.subject_attribute("O")
    }

    /// The subject organizational units (`OU`).
    pub fn organizational_units(&self) -> Vec<String> {
        self.raw.subject_attribute("OU")
    }

    /// RFC 2253 issuer.
    pub fn issuer(&self) -> String {
        self.raw.issuer()
    }

    pub fn issuer_attributes(&self) -> Vec<NameAttribute> {
        self.raw.issuer_attributes()
    }

    pub fn issuer_attribute(&self, name: &str) -> Vec<String> {
        self.raw.issuer_attribute(name)
    }

    pub fn validity(&self) -> Validity {
        let v = self.raw.validity();
        Validity {
            not_before: v.not_before,
            not_after: v.not_after,
            not_before_unix: v.not_before_unix,
            not_after_unix: v.not_after_unix,
        }
    }

    /// SHA-256 of the DER encoding, 64 lowercase hex digits.
    pub fn sha256_fingerprint(&self) -> String {
        self.raw.sha256_fingerprint()
    }

    pub fn subject_alt_names(&self) -> Vec<SubjectAltName> {
        self.raw
            .subject_alt_names()
            .into_iter()
            .map(|san| match san {
                raw::SubjectAltName::Dns(v) => SubjectAltName::Dns(v),
                raw::SubjectAltName::Ip(v) => match v.parse() {
                    Ok(ip) => SubjectAltName::Ip(ip),
                    Err(_) => SubjectAltName::Other(v),
                },
                raw::SubjectAltName::Uri(v) => SubjectAltName::Uri(v),
                raw::SubjectAltName::Email(v) => SubjectAltName::Email(v),
                raw::SubjectAltName::Other(v) => SubjectAltName::Other(v),
            })
            .collect()
    }

    /// The URI SANs, e.g. SPIFFE IDs.
    pub fn uris(&self) -> Vec<String> {
        self.subject_alt_names()
            .into_iter()
            .filter_map(|san| match san {
                SubjectAltName::Uri(uri) => Some(uri),
                _ => None,
            })
            .collect()
    }

    /// The DNS SANs.
    pub fn dns_names(&self) -> Vec<String> {
        self.subject_alt_names()
            .into_iter()
            .filter_map(|san| match san {
                SubjectAltName::Dns(name) => Some(name),
                _ => None,
            })
            .collect()
    }

    /// None when the certificate has no key usage extension.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.raw.key_usage()
    }

    /// None when the certificate has no extended key usage extension.
    pub fn extended_key_usage(&self) -> Option<Vec<String>> {
        self.raw.extended_key_usage()
    }

    /// The DER encoding (empty for a certificate described only by fields in
    /// a `tollgate test --connection` file).
    pub fn der(&self) -> Vec<u8> {
        self.raw.der()
    }
}

/// A key-value store associated with the function.
///
/// Its contents do not change during one invocation: updates published while
/// the function runs are seen by the next connection.
pub struct Kvs {
    raw: raw_kvs::Store,
}

/// Size and version of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub key_count: u64,
    pub total_size_bytes: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub last_updated: String,
    pub etag: String,
}

/// An error opening a store (`not-utf8` cannot happen there).
fn store_error(e: raw_kvs::Error) -> Error {
    match e {
        raw_kvs::Error::NoSuchStore(name) => Error::NoSuchStore(name),
        raw_kvs::Error::NotUtf8 => Error::Message("unexpected store error".into()),
    }
}

impl Kvs {
    /// Open a store by name. Fails with [`Error::NoSuchStore`] when the store
    /// is not associated with the function.
    pub fn open(name: &str) -> Result<Kvs> {
        raw_kvs::Store::open(name)
            .map(|raw| Kvs { raw })
            .map_err(store_error)
    }

    /// Whether `key` is in the store `name`: the same as
    /// `Kvs::open(name)?.exists(key)`, in one host call. Fails with
    /// [`Error::NoSuchStore`] when the store is not associated with the
    /// function.
    pub fn exists_in(name: &str, key: &str) -> Result<bool> {
        raw_kvs::exists_in(name, key).map_err(store_error)
    }

    /// The value as a string; `None` when the key is missing.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        self.raw.get(key).map_err(|e| match e {
            raw_kvs::Error::NotUtf8 => Error::NotUtf8 {
                key: key.to_owned(),
            },
            raw_kvs::Error::NoSuchStore(name) => Error::NoSuchStore(name),
        })
    }

    /// The value as bytes; `None` when the key is missing.
    pub fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.raw.get_bytes(key)
    }

    /// The value parsed as JSON; `None` when the key is missing.
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(bytes) = self.raw.get_bytes(key) else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Json {
                key: key.to_owned(),
                message: e.to_string(),
            })
    }

    /// Whether the key is present.
    pub fn exists(&self, key: &str) -> bool {
        self.raw.exists(key)
    }

    pub fn meta(&self) -> Meta {
        let m = self.raw.meta();
        Meta {
            key_count: m.key_count,
            total_size_bytes: m.total_size_bytes,
            created: m.created,
            last_updated: m.last_updated,
            etag: m.etag,
        }
    }
}

/// Set this connection's `connectionLogCustomData`. At most 800 bytes of
/// UTF-8 are kept, cut at a character boundary; a later call replaces an
/// earlier one.
pub fn log_custom_data(text: &str) {
    raw_log::log_custom_data(text);
}

/// Debug lines, shown by `tollgate test` and the test API, never in the
/// connection log. Bounded by the runtime's output limit.
pub mod console {
    use super::raw_log::{Level, console};

    pub fn debug(text: &str) {
        console(Level::Debug, text);
    }
    pub fn info(text: &str) {
        console(Level::Info, text);
    }
    pub fn warn(text: &str) {
        console(Level::Warn, text);
    }
    pub fn error(text: &str) {
        console(Level::Error, text);
    }
}

/// What an entry point may return: a [`Decision`], or a `Result` of one.
pub trait IntoOutcome {
    #[doc(hidden)]
    fn into_outcome(self) -> std::result::Result<raw::Decision, String>;
}

impl IntoOutcome for Decision {
    fn into_outcome(self) -> std::result::Result<raw::Decision, String> {
        Ok(self.into_raw())
    }
}

impl<E: fmt::Display> IntoOutcome for std::result::Result<Decision, E> {
    fn into_outcome(self) -> std::result::Result<raw::Decision, String> {
        self.map(Decision::into_raw).map_err(|e| e.to_string())
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::Guest;
    pub use crate::bindings::tollgate::connection::types::{
        Connection as RawConnection, Decision as RawDecision,
    };

    pub fn dispatch<O: crate::IntoOutcome>(
        conn: &RawConnection,
        handler: impl FnOnce(&crate::Connection<'_>) -> O,
    ) -> Result<RawDecision, String> {
        handler(&crate::Connection::from_raw(conn)).into_outcome()
    }
}

/// Declare the function's entry point: a `fn(&Connection) -> Decision` or
/// `fn(&Connection) -> Result<Decision>`.
///
/// ```no_run
/// use tollgate_guest::prelude::*;
///
/// tollgate_guest::connection_function!(allow_all);
///
/// fn allow_all(_conn: &Connection) -> Decision {
///     Decision::Allow
/// }
/// ```
#[macro_export]
macro_rules! connection_function {
    ($handler:path) => {
        #[doc(hidden)]
        pub struct __TollgateConnectionFunction;

        impl $crate::__private::Guest for __TollgateConnectionFunction {
            fn on_connection(
                conn: &$crate::__private::RawConnection,
            ) -> ::core::result::Result<$crate::__private::RawDecision, ::std::string::String> {
                $crate::__private::dispatch(conn, $handler)
            }
        }

        $crate::bindings::__tollgate_export_world!(__TollgateConnectionFunction with_types_in $crate::bindings);
    };
}
