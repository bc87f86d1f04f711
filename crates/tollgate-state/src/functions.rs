//! Function versions: a record per name and stage, code stored once per
//! SHA-256.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{State, StateError, corrupt};

/// `name \0 STAGE` → record (JSON).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
/// SHA-256 (hex) → Wasm component.
const CODE: TableDefinition<&str, &[u8]> = TableDefinition::new("function_code");

/// A function's stage (reference §2): `DEVELOPMENT` is editable and
/// testable; only `LIVE` serves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Stage {
    Development,
    Live,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Development => "DEVELOPMENT",
            Stage::Live => "LIVE",
        }
    }

    /// `DEVELOPMENT` or `LIVE`, any case.
    pub fn parse(s: &str) -> Option<Stage> {
        if s.eq_ignore_ascii_case("DEVELOPMENT") {
            Some(Stage::Development)
        } else if s.eq_ignore_ascii_case("LIVE") {
            Some(Stage::Live)
        } else {
            None
        }
    }
}

/// One stage of a function, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRecord {
    pub name: String,
    pub stage: Stage,
    pub etag: String,
    pub sha256: String,
    pub size: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// Time limit in microseconds (`None`: the runtime default).
    pub time_limit_us: Option<u64>,
    /// Linear memory limit in bytes (`None`: the runtime default).
    pub memory_limit_bytes: Option<u64>,
    /// The stores the function may open.
    pub kvs: Vec<String>,
    #[serde(default)]
    pub comment: String,
}

fn key(name: &str, stage: Stage) -> String {
    format!("{name}\0{}", stage.as_str())
}

impl State {
    /// Every function record, by name then stage.
    pub fn functions(&self) -> Result<Vec<FunctionRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| corrupt(format!("functions[{:?}]", k.value()), e))?,
            );
        }
        Ok(out)
    }

    /// One stage of a function.
    pub fn function(&self, name: &str, stage: Stage) -> Result<Option<FunctionRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(raw) = table.get(key(name, stage).as_str())? else {
            return Ok(None);
        };
        serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(|e| corrupt(format!("functions[{name}/{}]", stage.as_str()), e))
    }

    /// The code with this SHA-256.
    pub fn function_code(&self, sha256: &str) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(CODE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(sha256)?.map(|v| v.value().to_vec()))
    }

    /// Commits these records (and `code`, if given, under its SHA-256) in one
    /// transaction, then drops code no record uses any more.
    pub fn put_functions(
        &self,
        records: &[&FunctionRecord],
        code: Option<(&str, &[u8])>,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RECORDS)?;
            for record in records {
                let raw = serde_json::to_vec(record)
                    .map_err(|e| corrupt(format!("functions[{}]", record.name), e))?;
                table.insert(key(&record.name, record.stage).as_str(), raw.as_slice())?;
            }
            let mut code_table = txn.open_table(CODE)?;
            if let Some((sha, bytes)) = code {
                code_table.insert(sha, bytes)?;
            }
            collect_garbage(&table, &mut code_table)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// What a successful load adds to the state, in one transaction: each
    /// new store's current contents (then attached, so later writes persist)
    /// and each new function's two stages with its code. All or nothing: if
    /// any function has meanwhile got a record in the state (an upload during
    /// the load), nothing is written and the error says which.
    pub fn seed(
        self: &std::sync::Arc<Self>,
        stores: &[&tollgate_kvs::Store],
        functions: &[(&FunctionRecord, &FunctionRecord, &[u8])],
    ) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        for store in stores {
            let snapshot = store.snapshot();
            crate::kvs::write_kvs(
                &txn,
                store.name(),
                tollgate_kvs::Change::Replace(&snapshot),
                snapshot.meta(),
            )?;
        }
        {
            let mut table = txn.open_table(RECORDS)?;
            let mut code_table = txn.open_table(CODE)?;
            for (dev, live, code) in functions {
                for stage in [Stage::Development, Stage::Live] {
                    if table.get(key(&dev.name, stage).as_str())?.is_some() {
                        return Err(StateError::Conflict(format!(
                            "functions[{}] was created in the state while the configuration was loading; load again",
                            dev.name
                        )));
                    }
                }
                for record in [dev, live] {
                    let raw = serde_json::to_vec(record)
                        .map_err(|e| corrupt(format!("functions[{}]", record.name), e))?;
                    table.insert(key(&record.name, record.stage).as_str(), raw.as_slice())?;
                }
                code_table.insert(dev.sha256.as_str(), *code)?;
            }
        }
        txn.commit()?;
        for store in stores {
            let persist: std::sync::Arc<dyn tollgate_kvs::Persist> = self.clone();
            store
                .attach_persistence(persist)
                .map_err(|e| corrupt(format!("kvs {}", store.name()), e))?;
        }
        Ok(())
    }

    /// Deletes both stages of a function (and code no other record uses).
    /// Returns whether there was anything to delete.
    pub fn delete_function(&self, name: &str) -> Result<bool, StateError> {
        let txn = self.db.begin_write()?;
        let existed;
        {
            let mut table = txn.open_table(RECORDS)?;
            let a = table
                .remove(key(name, Stage::Development).as_str())?
                .is_some();
            let b = table.remove(key(name, Stage::Live).as_str())?.is_some();
            existed = a || b;
            let mut code_table = txn.open_table(CODE)?;
            collect_garbage(&table, &mut code_table)?;
        }
        txn.commit()?;
        Ok(existed)
    }
}

fn collect_garbage(
    records: &redb::Table<&str, &[u8]>,
    code: &mut redb::Table<&str, &[u8]>,
) -> Result<(), StateError> {
    let mut used = BTreeSet::new();
    for item in records.iter()? {
        let (k, v) = item?;
        let record: FunctionRecord = serde_json::from_slice(v.value())
            .map_err(|e| corrupt(format!("functions[{:?}]", k.value()), e))?;
        used.insert(record.sha256);
    }
    let mut unused = Vec::new();
    for item in code.iter()? {
        let (k, _) = item?;
        if !used.contains(k.value()) {
            unused.push(k.value().to_owned());
        }
    }
    for sha in unused {
        code.remove(sha.as_str())?;
    }
    Ok(())
}
