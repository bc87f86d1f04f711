//! Immutable contents of a store.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use hashbrown::HashTable;

/// Size and version of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub key_count: u64,
    /// Sum of the byte lengths of all keys and values.
    pub total_size_bytes: u64,
    /// When the store was created (fixed across updates).
    pub created: SystemTime,
    /// When this snapshot was published.
    pub last_modified: SystemTime,
    /// Opaque tag of this version; changes with every publish.
    pub etag: String,
    /// Publish count of the store, starting at 1.
    pub version: u64,
}

fn rfc3339(t: SystemTime) -> String {
    let unix = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Meta {
    /// `created` as RFC 3339 UTC (`2024-01-15T00:00:00Z`).
    pub fn created_rfc3339(&self) -> String {
        rfc3339(self.created)
    }

    /// `last_modified` as RFC 3339 UTC.
    pub fn last_modified_rfc3339(&self) -> String {
        rfc3339(self.last_modified)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: usize,
    key_len: u32,
    value_len: u32,
}

/// Keys and values in one arena with a hash index: a snapshot's base.
struct Table {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: std::hash::RandomState,
    sorted: OnceLock<Vec<u32>>,
}

/// Changes on top of a base table: a value, or `None` for a key deleted
/// from the base. Kept small: past [`MAX_OVERLAY`] the next write rebuilds.
type Overlay = BTreeMap<Box<str>, Option<Box<[u8]>>>;

/// Overlay entries before a write folds everything into a new base.
pub(crate) fn max_overlay(base_len: usize) -> usize {
    4096usize.max(base_len / 64)
}

/// The contents of a store at one version. Never changes once built.
///
/// A base table (rebuilt by imports and, now and then, by updates) plus an
/// overlay of the keys changed since, so that a write to a large store costs
/// in proportion to the overlay, not to the store.
pub struct Snapshot {
    base: Arc<Table>,
    overlay: Arc<Overlay>,
    meta: Meta,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("meta", &self.meta)
            .field("overlay", &self.overlay.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        if !self.overlay.is_empty()
            && let Some(v) = self.overlay.get(key)
        {
            return v.as_deref();
        }
        self.base.get(key)
    }

    /// Whether `key` is present.
    pub fn exists(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.meta.key_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.meta.key_count == 0
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Entries changed since the base was built (for compaction decisions).
    pub(crate) fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Keys in the base table.
    pub(crate) fn base_len(&self) -> usize {
        self.base.entries.len()
    }

    /// All entries: the base's (in import order) not changed since, then the
    /// changed ones in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let overlay = &self.overlay;
        self.base
            .iter()
            .filter(move |(k, _)| !overlay.contains_key(*k))
            .chain(
                overlay
                    .iter()
                    .filter_map(|(k, v)| v.as_deref().map(|v| (&**k, v))),
            )
    }

    /// Up to `limit` entries in byte-wise key order, starting after `after`
    /// (exclusive), for paged listing.
    pub fn keys_after(&self, after: Option<&str>, limit: usize) -> Vec<(&str, &[u8])> {
        use std::ops::Bound;
        let mut base = self.base.sorted_from(after).peekable();
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut over = self
            .overlay
            .range::<str, _>((lower, Bound::Unbounded))
            .peekable();
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let take_base = match (base.peek(), over.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((bk, _)), Some((ok, _))) => bk.as_bytes() < ok.as_bytes(),
            };
            if take_base {
                if let Some(entry) = base.next() {
                    out.push(entry);
                }
                continue;
            }
            let Some((key, value)) = over.next() else {
                break;
            };
            // The overlay wins over the base for the same key.
            if base.peek().is_some_and(|(bk, _)| *bk == &**key) {
                base.next();
            }
            if let Some(v) = value {
                out.push((&**key, &**v));
            }
        }
        out
    }

    /// This snapshot with `puts` and `deletes` applied on its overlay (the
    /// caller checked them); `meta` describes the result.
    pub(crate) fn with_changes(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
        meta: Meta,
    ) -> Snapshot {
        let mut overlay = (*self.overlay).clone();
        for key in deletes {
            if self.base.get(key).is_some() {
                overlay.insert(key.as_str().into(), None);
            } else {
                overlay.remove(key.as_str());
            }
        }
        for (key, value) in puts {
            overlay.insert(key.as_str().into(), Some(value.as_slice().into()));
        }
        Snapshot {
            base: self.base.clone(),
            overlay: Arc::new(overlay),
            meta,
        }
    }
}

impl Table {
    fn key(&self, e: &Entry) -> &[u8] {
        &self.arena[e.offset..e.offset + e.key_len as usize]
    }

    fn value(&self, e: &Entry) -> &[u8] {
        let start = e.offset + e.key_len as usize;
        &self.arena[start..start + e.value_len as usize]
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        let hash = self.hasher.hash_one(key.as_bytes());
        self.index
            .find(hash, |&i| {
                self.key(&self.entries[i as usize]) == key.as_bytes()
            })
            .map(|&i| self.value(&self.entries[i as usize]))
    }

    fn entry(&self, e: &Entry) -> (&str, &[u8]) {
        // Keys were validated as UTF-8 when the table was built.
        (
            std::str::from_utf8(self.key(e)).unwrap_or_default(),
            self.value(e),
        )
    }

    /// All entries, in insertion (import) order.
    fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|e| self.entry(e))
    }

    /// Entries in byte-wise key order after `after` (exclusive). The sort
    /// happens once per table.
    fn sorted_from(&self, after: Option<&str>) -> impl Iterator<Item = (&str, &[u8])> {
        let sorted = self.sorted.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| {
                self.key(&self.entries[a as usize])
                    .cmp(self.key(&self.entries[b as usize]))
            });
            order
        });
        let start = match after {
            None => 0,
            Some(after) => {
                sorted.partition_point(|&i| self.key(&self.entries[i as usize]) <= after.as_bytes())
            }
        };
        sorted[start..]
            .iter()
            .map(|&i| self.entry(&self.entries[i as usize]))
    }
}

/// Builds a snapshot entry by entry, refusing duplicates.
pub(crate) struct Builder {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: std::hash::RandomState,
    total: u64,
}

impl Builder {
    pub fn with_capacity(entries: usize, bytes: usize) -> Builder {
        Builder {
            arena: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(entries),
            index: HashTable::with_capacity(entries),
            hasher: std::hash::RandomState::new(),
            total: 0,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry; returns the index of an existing entry with this key
    /// instead if there is one.
    pub fn insert(&mut self, key: &str, value: &[u8]) -> Result<(), usize> {
        let hash = self.hasher.hash_one(key.as_bytes());
        let arena = &self.arena;
        let entries = &self.entries;
        if let Some(&existing) = self.index.find(hash, |&i| {
            let e = &entries[i as usize];
            &arena[e.offset..e.offset + e.key_len as usize] == key.as_bytes()
        }) {
            return Err(existing as usize);
        }
        let entry = Entry {
            offset: self.arena.len(),
            key_len: key.len() as u32,
            value_len: value.len() as u32,
        };
        self.arena.extend_from_slice(key.as_bytes());
        self.arena.extend_from_slice(value);
        let i = self.entries.len() as u32;
        self.entries.push(entry);
        let (hasher, arena, entries) = (&self.hasher, &self.arena, &self.entries);
        self.index.insert_unique(hash, i, |&j| {
            let e = &entries[j as usize];
            hasher.hash_one(&arena[e.offset..e.offset + e.key_len as usize])
        });
        self.total += (key.len() + value.len()) as u64;
        Ok(())
    }

    pub fn finish(self, created: SystemTime, version: u64, etag: String) -> Snapshot {
        self.finish_at(created, SystemTime::now(), version, etag)
    }

    pub fn finish_at(
        self,
        created: SystemTime,
        last_modified: SystemTime,
        version: u64,
        etag: String,
    ) -> Snapshot {
        let meta = Meta {
            key_count: self.entries.len() as u64,
            total_size_bytes: self.total,
            created,
            last_modified,
            etag,
            version,
        };
        Snapshot {
            base: Arc::new(Table {
                arena: self.arena,
                entries: self.entries,
                index: self.index,
                hasher: self.hasher,
                sorted: OnceLock::new(),
            }),
            overlay: Arc::new(Overlay::new()),
            meta,
        }
    }
}
