//! The HTTP side of Tollgate: what happens on a connection after its
//! connection function said allow.
//!
//! - [`serve_connection`] serves HTTP/1.1 or HTTP/2 (chosen by ALPN) with hyper,
//!   with limits on the request head, a header-read timeout for slow clients,
//!   an idle timeout, and graceful shutdown.
//! - Every request is forwarded to the listener's [`Origin`] (pooled, http or
//!   https, origin mTLS) after hop-by-hop headers and **every client-sent
//!   identity header** are removed, `X-Forwarded-For`/`-Proto`/`-Host` set, and
//!   the connection's identity headers ([`identity_headers`], built once per
//!   connection) added.
//! - One access-log record per request, with the connection's id.
//!
//! A failure to reach the origin is a `502` (a timeout `504`) to the client,
//! logged in the access record's `error`.

pub mod echo;
mod headers;
mod origin;
mod serve;

pub use headers::{
    CertCheck, IDENTITY_HEADERS, identity_headers, strip_hop_by_hop, strip_identity_headers,
};
pub use origin::{Origin, OriginBody, OriginError};
pub use serve::{ConnectionContext, ProxyBody, Served, serve_connection};
