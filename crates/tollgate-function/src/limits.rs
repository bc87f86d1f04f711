//! Per-function resource limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits one connection function runs under. Every call gets a fresh
/// instance, so each limit applies to a single connection.
///
/// Defaults are chosen for Wasm components built from Rust (whose standard
/// library alone needs about 1 MiB of linear memory for its stack); CloudFront's
/// JavaScript functions get 5 ms, 2 MB of memory and 10 KB of code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Execution time per connection, in microseconds, counted while the
    /// function runs on a CPU (waiting for a worker thread does not count).
    /// Default 5000 (5 ms). Enforced by epoch interruption: a function is
    /// stopped at the first epoch tick after its time is up.
    pub time_us: u64,
    /// Linear memory per instance, in bytes. Default 16 MiB.
    pub memory_bytes: u64,
    /// Size of the Wasm component, in bytes. Default 4 MiB.
    pub module_bytes: u64,
    /// Core instances per component instance. Default 16.
    pub instances: u32,
    /// Tables per component instance. Default 16.
    pub tables: u32,
    /// Elements per table. Default 20000.
    pub table_elements: u32,
    /// Linear memories per component instance. Default 4.
    pub memories: u32,
    /// Bytes of output per connection: custom log data and console lines
    /// (including stdout and stderr) together. Exceeding it is a function
    /// error. Default 64 KiB.
    pub output_bytes: u64,
}

/// The most custom log data kept per connection (`connectionLogCustomData`).
pub const MAX_CUSTOM_DATA_BYTES: usize = 800;

/// The most of a deny reason or a function's error message kept (they go to
/// the connection log's `reason`); longer ones are cut at a character
/// boundary and end with `…`.
pub const MAX_REASON_BYTES: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_us: 5_000,
            memory_bytes: 16 << 20,
            module_bytes: 4 << 20,
            instances: 16,
            tables: 16,
            table_elements: 20_000,
            memories: 4,
            output_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// The execution time limit as a [`Duration`].
    pub fn time(&self) -> Duration {
        Duration::from_micros(self.time_us)
    }

    /// Checks that the limits make sense and fit within the runtime's own
    /// ceilings (the pooling allocator is sized once, for all functions).
    pub fn validate(&self, ceiling: &Limits) -> Result<(), String> {
        let checks: [(&str, u64, u64); 7] = [
            ("time_us", self.time_us, ceiling.time_us),
            ("memory_bytes", self.memory_bytes, ceiling.memory_bytes),
            ("module_bytes", self.module_bytes, ceiling.module_bytes),
            ("instances", self.instances.into(), ceiling.instances.into()),
            ("tables", self.tables.into(), ceiling.tables.into()),
            (
                "table_elements",
                self.table_elements.into(),
                ceiling.table_elements.into(),
            ),
            ("memories", self.memories.into(), ceiling.memories.into()),
        ];
        for (name, value, max) in checks {
            if value == 0 {
                return Err(format!("limit {name} must be greater than 0"));
            }
            if value > max {
                return Err(format!(
                    "limit {name} = {value} is above the runtime's ceiling of {max}"
                ));
            }
        }
        if self.output_bytes < MAX_CUSTOM_DATA_BYTES as u64 {
            return Err(format!(
                "limit output_bytes = {} must be at least {MAX_CUSTOM_DATA_BYTES}",
                self.output_bytes
            ));
        }
        Ok(())
    }

    /// The ceilings a runtime accepts by default: what per-function limits may
    /// be raised to.
    pub fn default_ceiling() -> Limits {
        Limits {
            time_us: 1_000_000,
            memory_bytes: 256 << 20,
            module_bytes: 64 << 20,
            instances: 64,
            tables: 64,
            table_elements: 1_000_000,
            memories: 8,
            output_bytes: u64::MAX,
        }
    }
}
