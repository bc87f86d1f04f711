//! Durable state: what the admin API changes, in one redb file
//! (`<state dir>/state.redb`).
//!
//! - **KVS contents** of every store, one table per store (`kvs:<name>`),
//!   plus each store's version, ETag and times (`kvs_meta`). [`State`]
//!   implements [`tollgate_kvs::Persist`]: a store attached with
//!   [`State::open_store`] commits each write here before publishing it, so
//!   a write the API acknowledged survives `kill -9`.
//! - **Functions**, both stages (`functions`, keyed `name` + stage), with
//!   their code stored once per SHA-256 (`function_code`).
//!
//! Every change is one redb write transaction with immediate durability
//! (fsync on commit): it is all there after a crash, or none of it is.
//!
//! The seeding rule: a store or function declared in the configuration is
//! taken from its file (import JSON, Wasm) only when the state has no record
//! of it; from then on the state owns it and the file is not read again.

mod functions;
mod kvs;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use redb::Database;

pub use functions::{FunctionRecord, Stage};
pub use kvs::{KvsMeta, Opened};

/// Something the state store could not do. A failed write changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("state database: {0}")]
    Db(#[from] Box<redb::Error>),
    #[error("state record {what} is corrupt: {message}")]
    Corrupt { what: String, message: String },
    #[error("{0}")]
    Kvs(#[from] tollgate_kvs::ImportError),
    /// Another writer got there first (nothing was written).
    #[error("{0}")]
    Conflict(String),
}

impl From<redb::Error> for StateError {
    fn from(e: redb::Error) -> Self {
        StateError::Db(Box::new(e))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                StateError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The state directory's database.
pub struct State {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("path", &self.path).finish()
    }
}

impl State {
    /// Opens (or creates) `dir/state.redb`; `dir` is created with mode 0700.
    /// Only one process may have it open: a second open fails.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        create_private_dir(dir).map_err(|source| StateError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("state.redb");
        let db = Database::create(&path).map_err(|e| StateError::Open {
            path: path.clone(),
            source: Box::new(e),
        })?;
        Ok(State { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt {
        what: what.into(),
        message: e.to_string(),
    }
}
