//! The edge: where a connection's life is decided.
//!
//! ```text
//! config ──load──▶ ListenerPlan ──bind──▶ accept ──▶ TLS handshake (tollgate-tls verifier)
//!                                                   │
//!                         connection object ◀───────┘
//!                                │
//!                      connection function (tollgate-function)
//!                                │
//!                      allow ──▶ HTTP (tollgate-proxy) ──▶ origin
//!                      deny  ──▶ reset, no HTTP
//! ```
//!
//! Invariants:
//! - **Fail closed.** Every error between accept and "allow" refuses the
//!   connection and writes a connection-log record with a reference §5 code
//!   and a reason. A function error refuses unless the listener says
//!   `on_error = "allow"`.
//! - **Nothing HTTP before the decision.** The TLS stream is not handed to
//!   hyper until the function has allowed the connection; a refused connection
//!   is reset without a response.
//! - **Load once.** Certificates, trust stores, CRLs and functions are loaded
//!   and checked by [`load`] before a socket is bound; the per-connection path
//!   only uses what was prepared.

mod connection;
mod established;
mod load;
mod server;
mod watch;

pub use connection::Verdict;
pub use established::Change;
pub use load::{
    ListenerPlan, LoadFailure, Loaded, Reuse, compile_record, load, load_with, new_function_etag,
    record_limits, section_limits,
};
pub use server::{BindError, ReloadError, Reloader, Server};
pub use watch::{watch, watched_files};
