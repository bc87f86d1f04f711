//! Named key-value stores for connection functions.
//!
//! A [`Store`] holds its contents as an immutable [`Snapshot`] behind an
//! [`arc_swap::ArcSwap`]. Readers take the current snapshot without a lock
//! (an atomic load and a reference count) and keep it as long as they like:
//! a function sees one snapshot for its whole invocation. Writers build a new
//! snapshot and publish it atomically; a failed write publishes nothing.
//!
//! A snapshot keeps every key and value in one byte arena, indexed by a hash
//! table of entry numbers, so a million keys cost little more than their
//! bytes and a lookup is one hash and one probe.

mod import;
mod snapshot;
mod store;

pub use import::{EntryProblem, ImportError, parse_import};
pub use snapshot::{Meta, Snapshot};
pub use store::{Change, Persist, Restored, Store, Stores, UpdateError};

use serde::{Deserialize, Serialize};

/// Size limits of a store. The defaults are CloudFront KeyValueStore's; raise
/// them for large revocation lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes per key (UTF-8). Default 512.
    pub max_key_bytes: usize,
    /// Bytes per value. Default 1024.
    pub max_value_bytes: usize,
    /// Bytes of keys and values together. Default 5 MiB.
    pub max_store_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 512,
            max_value_bytes: 1024,
            max_store_bytes: 5 * 1024 * 1024,
        }
    }
}
