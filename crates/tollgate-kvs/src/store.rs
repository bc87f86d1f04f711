//! A named store: the current snapshot, and the ways to replace it.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::import::{EntryProblem, ImportError};
use crate::snapshot::{Builder, Meta, Snapshot, max_overlay};
use crate::{Limits, import};

/// A write that was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The caller's `If-Match` is not the current ETag (HTTP 412).
    #[error("the store has changed: If-Match {given:?} is not the current ETag {current:?}")]
    PreconditionFailed { given: String, current: String },
    #[error("cannot delete key {0:?}: it does not exist")]
    NoSuchKey(String),
    #[error("key {0:?} is both put and deleted")]
    PutAndDelete(String),
    #[error("key {0:?} is put twice")]
    DuplicatePut(String),
    #[error("key {0:?} is deleted twice")]
    DuplicateDelete(String),
    /// An import body that cannot be used.
    #[error("{0}")]
    Import(String),
    /// A put breaks a limit (the problem names which).
    #[error("put of key {key:?}: {problem}")]
    Invalid { key: String, problem: EntryProblem },
    /// The durable state refused the write; nothing was published.
    #[error("the write could not be made durable: {0}")]
    NotDurable(String),
}

/// A change about to be published, as the durable state sees it.
pub enum Change<'a> {
    /// The whole contents become this snapshot's (an import).
    Replace(&'a Snapshot),
    /// Keys put (new or changed values) and keys deleted.
    Update {
        puts: &'a [(String, Vec<u8>)],
        deletes: &'a [String],
    },
}

/// Makes a store's writes durable before they are published: called under
/// the store's write lock with the change and the meta of the new snapshot.
/// An error refuses the write and nothing is published, so a write that
/// returned `Ok` is durable.
pub trait Persist: Send + Sync {
    fn persist(&self, store: &str, change: Change<'_>, meta: &Meta) -> Result<(), String>;
}

/// Keys put and keys deleted by one update.
type Edits<'a> = (&'a [(String, Vec<u8>)], &'a [String]);

/// What a restored store continues from.
#[derive(Debug, Clone)]
pub struct Restored {
    pub created: SystemTime,
    pub last_modified: SystemTime,
    pub version: u64,
    pub etag: String,
}

/// One named store.
pub struct Store {
    name: String,
    limits: Limits,
    current: ArcSwap<Snapshot>,
    /// Serializes writers; readers never take it.
    write: Mutex<()>,
    created: SystemTime,
    salt: u64,
    /// Set once: at construction, or when the store is made durable later.
    persist: std::sync::OnceLock<Arc<dyn Persist>>,
    /// Overrides the overlay size that triggers a rebuild (tests).
    overlay_limit: Option<usize>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .field("meta", self.current.load().meta())
            .finish()
    }
}

fn etag(salt: u64, version: u64) -> String {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u64(version);
    format!("E{:X}{:013X}", version, h.finish() & 0xF_FFFF_FFFF_FFFF)
}

impl Store {
    /// An empty store.
    pub fn new(name: &str, limits: Limits) -> Store {
        let created = SystemTime::now();
        let salt = std::hash::RandomState::new().hash_one(name);
        let empty = Builder::with_capacity(0, 0).finish(created, 1, etag(salt, 1));
        Store {
            name: name.to_owned(),
            limits,
            current: ArcSwap::from_pointee(empty),
            write: Mutex::new(()),
            created,
            salt,
            persist: std::sync::OnceLock::new(),
            overlay_limit: None,
        }
    }

    /// Rebuilds the snapshot once more than `n` keys changed since the last
    /// rebuild (by default a few thousand, or 1/64 of a large store).
    #[doc(hidden)]
    pub fn with_overlay_limit(mut self, n: usize) -> Store {
        self.overlay_limit = Some(n);
        self
    }

    /// Writes to this store are made durable by `persist` before they are
    /// published.
    pub fn with_persistence(self, persist: Arc<dyn Persist>) -> Store {
        let _ = self.persist.set(persist);
        self
    }

    /// Attaches `persist` to a store whose current contents the caller has
    /// already made durable (e.g. in one transaction with other records):
    /// later writes go through it. Fails if the store already persists.
    pub fn attach_persistence(&self, persist: Arc<dyn Persist>) -> Result<(), String> {
        let _guard = self.lock();
        self.persist
            .set(persist)
            .map_err(|_| format!("store {} is already durable", self.name))
    }

    /// A store continuing from durable state: these entries, at this version
    /// and ETag. Entries are checked against the limits like an import.
    pub fn restore<'a>(
        name: &str,
        limits: Limits,
        from: Restored,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Store, ImportError> {
        let mut builder = Builder::with_capacity(0, 0);
        for (index, (key, value)) in entries.into_iter().enumerate() {
            if let Err(problem) = import::check_entry(key, value, &limits, builder.total_bytes()) {
                return Err(ImportError::Entry {
                    index,
                    key: Some(key.to_owned()),
                    problem,
                });
            }
            if let Err(first) = builder.insert(key, value) {
                return Err(ImportError::Entry {
                    index,
                    key: Some(key.to_owned()),
                    problem: EntryProblem::DuplicateKey { first },
                });
            }
        }
        let mut store = Store::new(name, limits);
        store.created = from.created;
        let snapshot = builder.finish_at(from.created, from.last_modified, from.version, from.etag);
        store.current = ArcSwap::from_pointee(snapshot);
        Ok(store)
    }

    /// A store holding the contents of an import file.
    pub fn from_import_json(name: &str, limits: Limits, json: &[u8]) -> Result<Store, ImportError> {
        let store = Store::new(name, limits);
        store.import_json(json)?;
        Ok(store)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The current contents. Lock-free; the snapshot never changes.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current snapshot if `if_match` is its ETag (call with the write
    /// lock held).
    fn check_etag(&self, if_match: &str) -> Result<Arc<Snapshot>, UpdateError> {
        let current = self.current.load_full();
        if current.meta().etag != if_match {
            return Err(UpdateError::PreconditionFailed {
                given: if_match.to_owned(),
                current: current.meta().etag.clone(),
            });
        }
        Ok(current)
    }

    /// Builds the next snapshot, makes it durable (if the store persists),
    /// and publishes it. Called with the write lock held.
    /// `update` is `None` for a replacement (import), or the puts and deletes.
    fn publish(
        &self,
        make: impl FnOnce(u64, String) -> Snapshot,
        update: Option<Edits<'_>>,
    ) -> Result<Arc<Snapshot>, String> {
        let version = self.current.load().meta().version + 1;
        let snapshot = Arc::new(make(version, etag(self.salt, version)));
        if let Some(persist) = self.persist.get() {
            let change = match update {
                None => Change::Replace(&snapshot),
                Some((puts, deletes)) => Change::Update { puts, deletes },
            };
            persist.persist(&self.name, change, snapshot.meta())?;
        }
        self.current.store(snapshot.clone());
        Ok(snapshot)
    }

    /// Replaces the whole contents with an import file. On error the current
    /// contents stay.
    pub fn import_json(&self, json: &[u8]) -> Result<Arc<Snapshot>, ImportError> {
        let builder = import::parse(json, &self.limits)?;
        let _guard = self.lock();
        self.publish(|v, e| builder.finish(self.created, v, e), None)
            .map_err(ImportError::NotDurable)
    }

    /// [`Store::import_json`] if `if_match` is the current ETag.
    pub fn import_json_if_match(
        &self,
        if_match: &str,
        json: &[u8],
    ) -> Result<Arc<Snapshot>, UpdateError> {
        let builder =
            import::parse(json, &self.limits).map_err(|e| UpdateError::Import(e.to_string()))?;
        let _guard = self.lock();
        self.check_etag(if_match)?;
        self.publish(|v, e| builder.finish(self.created, v, e), None)
            .map_err(UpdateError::NotDurable)
    }

    /// Puts and deletes keys, all or nothing, if `if_match` is the current
    /// ETag. A small change lands on the snapshot's overlay (cost in
    /// proportion to the overlay); every few thousand changed keys (1/64 of
    /// the store for large stores) a write rebuilds the whole snapshot.
    pub fn update(
        &self,
        if_match: &str,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
    ) -> Result<Arc<Snapshot>, UpdateError> {
        let _guard = self.lock();
        let current = self.check_etag(if_match)?;
        let mut put_map: BTreeMap<&str, &[u8]> = BTreeMap::new();
        for (key, value) in &puts {
            if let Err(problem) = import::check_entry(key, value, &self.limits, 0) {
                return Err(UpdateError::Invalid {
                    key: key.clone(),
                    problem,
                });
            }
            if put_map.insert(key, value).is_some() {
                return Err(UpdateError::DuplicatePut(key.clone()));
            }
        }
        let mut delete_set = HashSet::new();
        for key in &deletes {
            if put_map.contains_key(key.as_str()) {
                return Err(UpdateError::PutAndDelete(key.clone()));
            }
            if !current.exists(key) {
                return Err(UpdateError::NoSuchKey(key.clone()));
            }
            if !delete_set.insert(key.as_str()) {
                return Err(UpdateError::DuplicateDelete(key.clone()));
            }
        }
        // Size and count after the change.
        let mut count = current.len() as u64;
        let mut total = current.meta().total_size_bytes;
        for key in &deletes {
            let old = current.get(key).map_or(0, <[u8]>::len);
            count -= 1;
            total -= (key.len() + old) as u64;
        }
        for (key, value) in &puts {
            match current.get(key) {
                Some(old) => total -= (key.len() + old.len()) as u64,
                None => count += 1,
            }
            total += (key.len() + value.len()) as u64;
        }
        if total > self.limits.max_store_bytes {
            let key = puts.first().map(|(k, _)| k.clone()).unwrap_or_default();
            return Err(UpdateError::Invalid {
                key,
                problem: EntryProblem::StoreTooLarge {
                    size: total,
                    max: self.limits.max_store_bytes,
                },
            });
        }
        let edits = Some((puts.as_slice(), deletes.as_slice()));
        let limit = self
            .overlay_limit
            .unwrap_or_else(|| max_overlay(current.base_len()));
        if current.overlay_len() + puts.len() + deletes.len() <= limit {
            // A small change: on the overlay, O(overlay) however large the store.
            let created = self.created;
            return self
                .publish(
                    |version, etag| {
                        let meta = Meta {
                            key_count: count,
                            total_size_bytes: total,
                            created,
                            last_modified: SystemTime::now(),
                            etag,
                            version,
                        };
                        current.with_changes(&puts, &deletes, meta)
                    },
                    edits,
                )
                .map_err(UpdateError::NotDurable);
        }
        // The overlay is full: fold everything into a new base.
        let mut builder = Builder::with_capacity(count as usize, total as usize);
        for (key, value) in current.iter() {
            if delete_set.contains(key) {
                continue;
            }
            let value = put_map.remove(key).unwrap_or(value);
            let _ = builder.insert(key, value);
        }
        for (key, value) in put_map {
            let _ = builder.insert(key, value);
        }
        self.publish(|v, e| builder.finish(self.created, v, e), edits)
            .map_err(UpdateError::NotDurable)
    }
}

/// Stores by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    stores: Arc<BTreeMap<String, Arc<Store>>>,
}

impl Stores {
    pub fn new() -> Stores {
        Stores::default()
    }

    /// Adds or replaces a store (copy on write).
    pub fn insert(&mut self, store: Arc<Store>) {
        Arc::make_mut(&mut self.stores).insert(store.name().to_owned(), store);
    }

    pub fn get(&self, name: &str) -> Option<Arc<Store>> {
        self.stores.get(name).cloned()
    }

    /// Store names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }
}
