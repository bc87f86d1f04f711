//! Immutable contents of a store.

use std::hash::BuildHasher;
use std::sync::OnceLock;
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

/// The contents of a store at one version. Never changes once built.
pub struct Snapshot {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: std::hash::RandomState,
    sorted: OnceLock<Vec<u32>>,
    meta: Meta,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    fn key(&self, e: &Entry) -> &[u8] {
        &self.arena[e.offset..e.offset + e.key_len as usize]
    }

    fn value(&self, e: &Entry) -> &[u8] {
        let start = e.offset + e.key_len as usize;
        &self.arena[start..start + e.value_len as usize]
    }

    fn find(&self, key: &str) -> Option<&Entry> {
        let hash = self.hasher.hash_one(key.as_bytes());
        self.index
            .find(hash, |&i| {
                self.key(&self.entries[i as usize]) == key.as_bytes()
            })
            .map(|&i| &self.entries[i as usize])
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.find(key).map(|e| self.value(e))
    }

    /// Whether `key` is present.
    pub fn exists(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// All entries, in insertion (import) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|e| {
            // Keys were validated as UTF-8 when the snapshot was built.
            let key = std::str::from_utf8(self.key(e)).unwrap_or_default();
            (key, self.value(e))
        })
    }

    /// Up to `limit` entries in byte-wise key order, starting after `after`
    /// (exclusive), for paged listing. The sort happens once per snapshot.
    pub fn keys_after(&self, after: Option<&str>, limit: usize) -> Vec<(&str, &[u8])> {
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
            .take(limit)
            .map(|&i| {
                let e = &self.entries[i as usize];
                (
                    std::str::from_utf8(self.key(e)).unwrap_or_default(),
                    self.value(e),
                )
            })
            .collect()
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
            arena: self.arena,
            entries: self.entries,
            index: self.index,
            hasher: self.hasher,
            sorted: OnceLock::new(),
            meta,
        }
    }
}
