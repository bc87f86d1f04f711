//! Runs Tollgate connection functions.
//!
//! A connection function is a Wasm component targeting the
//! `tollgate:connection/connection-function` world (`wit/connection.wit`).
//! The proxy calls it once per new TLS connection, after certificate
//! verification and before any HTTP, and it returns allow or deny.
//!
//! The lifecycle, built for one call per connection:
//!
//! * [`Runtime::load`] compiles a component once per version (or loads it from
//!   the on-disk cache, keyed by content hash), links it (`InstancePre`) and
//!   instantiates it once to refuse, at load time, a component of the wrong
//!   world or one that cannot fit its limits.
//! * [`Function::call`] creates a fresh `Store` and instance from the pooling
//!   allocator for every connection (no state survives between connections),
//!   runs `on-connection`, and turns everything into an [`Outcome`]. A trap,
//!   panic, timeout, memory exhaustion or oversize output is a deny carrying
//!   an [`ErrorKind`]; the host never panics on guest behaviour.
//! * Unless a call asks the host something it cannot ask again, its
//!   questions and answers are recorded; a later call that gets the same
//!   answers to the same questions (asked again, of its own connection and
//!   the stores as they are then) has the earlier call's outcome without an
//!   instance (`replay.rs`, [`RuntimeConfig::replay_bytes`]).
//!
//! Time is enforced by epoch interruption: a ticker thread advances the epoch
//! (every millisecond by default), and at each tick a running guest is
//! stopped if its running time has reached its limit. A function whose limit
//! is at most [`RuntimeConfig::max_inline_time`] (10 ms) runs inline on the
//! caller's thread, like the handshake's cryptography; one allowed more runs
//! on a fiber and yields its thread at every tick. Host functions never wait
//! (`wasi_io`): a guest that tries to sleep is stopped.

mod connection;
mod host;
mod limits;
mod outcome;
mod output;
mod replay;
mod runtime;
mod wasi_io;

pub use connection::{
    CertFields, CertSource, ConnectionInfo, ConnectionJsonError, new_connection_id,
};
pub use limits::{Limits, MAX_CUSTOM_DATA_BYTES, MAX_REASON_BYTES};
pub use outcome::{Decision, ErrorKind, FunctionError, Outcome};
pub use output::{ConsoleLevel, ConsoleLine};
pub use runtime::{
    Function, FunctionSpec, LoadError, Runtime, RuntimeConfig, RuntimeError, StoreSet,
};
