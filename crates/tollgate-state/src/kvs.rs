//! KVS contents: one table per store, and each store's meta.

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tollgate_kvs::{Change, Limits, Meta, Persist, Restored, Store};

use crate::{State, StateError, corrupt, from_ms, to_ms};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("kvs_meta");

fn data_table(name: &str) -> String {
    format!("kvs:{name}")
}

/// A store's version, ETag and times, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvsMeta {
    pub version: u64,
    pub etag: String,
    pub created_ms: u64,
    pub last_modified_ms: u64,
}

impl KvsMeta {
    fn of(meta: &Meta) -> KvsMeta {
        KvsMeta {
            version: meta.version,
            etag: meta.etag.clone(),
            created_ms: to_ms(meta.created),
            last_modified_ms: to_ms(meta.last_modified),
        }
    }
}

/// Where an opened store's contents came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The state had it: the import file (if any) was not read.
    FromState,
    /// First sight of this store: seeded from its import file, now owned by
    /// the state.
    Seeded,
    /// First sight, no import file: empty.
    Empty,
}

impl State {
    /// The committed meta of a store, if the state has it.
    pub fn kvs_meta(&self, name: &str) -> Result<Option<KvsMeta>, StateError> {
        let txn = self.db.begin_read()?;
        read_meta(&txn, name)
    }

    /// Every committed entry of a store, in key order.
    pub fn kvs_entries(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let txn = self.db.begin_read()?;
        read_entries(&txn, name)
    }

    /// A store's meta and entries as of one commit (`None`: not in the state).
    fn kvs_read(&self, name: &str) -> Result<Option<(KvsMeta, Entries)>, StateError> {
        let txn = self.db.begin_read()?;
        let Some(meta) = read_meta(&txn, name)? else {
            return Ok(None);
        };
        Ok(Some((meta, read_entries(&txn, name)?)))
    }

    /// The store `name` with its durable contents, attached to this state so
    /// that every later write is committed before it is published. When the
    /// state has no record of it, it is seeded from `seed` (import JSON) if
    /// given — once: afterwards the state owns it.
    pub fn open_store(
        self: &Arc<Self>,
        name: &str,
        limits: Limits,
        seed: Option<&Path>,
    ) -> Result<(Store, Opened), StateError> {
        let (store, opened) = self.prepare_store(name, limits, seed)?;
        if opened != Opened::FromState {
            self.seed(&[&store], &[])?;
        }
        Ok((store, opened))
    }

    /// [`State::open_store`] in two steps, for a caller that may still give
    /// up: a store the state knows comes back attached to it; a new one
    /// (`Seeded` or `Empty`) comes back in memory only, and reaches the state
    /// when it is passed to [`State::seed`].
    pub fn prepare_store(
        self: &Arc<Self>,
        name: &str,
        limits: Limits,
        seed: Option<&Path>,
    ) -> Result<(Store, Opened), StateError> {
        let persist: Arc<dyn Persist> = self.clone();
        if let Some((meta, entries)) = self.kvs_read(name)? {
            let store = Store::restore(
                name,
                limits,
                Restored {
                    created: from_ms(meta.created_ms),
                    last_modified: from_ms(meta.last_modified_ms),
                    version: meta.version,
                    etag: meta.etag,
                },
                entries.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            )?;
            return Ok((store.with_persistence(persist), Opened::FromState));
        }
        let store = Store::new(name, limits);
        match seed {
            None => Ok((store, Opened::Empty)),
            Some(path) => {
                let json = std::fs::read(path).map_err(|e| {
                    corrupt(
                        format!("kvs {name} import {}", path.display()),
                        format!("cannot read: {e}"),
                    )
                })?;
                store.import_json(&json)?;
                Ok((store, Opened::Seeded))
            }
        }
    }

    fn kvs_commit(&self, name: &str, change: Change<'_>, meta: &Meta) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        write_kvs(&txn, name, change, meta)?;
        txn.commit()?;
        Ok(())
    }
}

/// One store's change and its meta, inside `txn`.
pub(crate) fn write_kvs(
    txn: &redb::WriteTransaction,
    name: &str,
    change: Change<'_>,
    meta: &Meta,
) -> Result<(), StateError> {
    let table_name = data_table(name);
    let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&table_name);
    match change {
        Change::Replace(snapshot) => {
            txn.delete_table(def)?;
            let mut table = txn.open_table(def)?;
            for (k, v) in snapshot.iter() {
                table.insert(k, v)?;
            }
        }
        Change::Update { puts, deletes } => {
            let mut table = txn.open_table(def)?;
            for (k, v) in puts {
                table.insert(k.as_str(), v.as_slice())?;
            }
            for k in deletes {
                table.remove(k.as_str())?;
            }
        }
    }
    let mut metas = txn.open_table(META)?;
    let raw = serde_json::to_vec(&KvsMeta::of(meta))
        .map_err(|e| corrupt(format!("kvs_meta[{name}]"), e))?;
    metas.insert(name, raw.as_slice())?;
    Ok(())
}

fn read_meta(txn: &redb::ReadTransaction, name: &str) -> Result<Option<KvsMeta>, StateError> {
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(raw) = table.get(name)? else {
        return Ok(None);
    };
    serde_json::from_slice(raw.value())
        .map(Some)
        .map_err(|e| corrupt(format!("kvs_meta[{name}]"), e))
}

/// A store's entries, in key order.
type Entries = Vec<(String, Vec<u8>)>;

fn read_entries(txn: &redb::ReadTransaction, name: &str) -> Result<Entries, StateError> {
    let table_name = data_table(name);
    let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&table_name);
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
    for item in table.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

impl Persist for State {
    fn persist(&self, store: &str, change: Change<'_>, meta: &Meta) -> Result<(), String> {
        self.kvs_commit(store, change, meta)
            .map_err(|e| e.to_string())
    }
}
