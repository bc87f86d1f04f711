//! The result of running a function on one connection.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::output::ConsoleLine;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        })
    }
}

/// Why a function failed. Every kind denies the connection, logged as
/// `ConnectionFunctionError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The execution time limit was reached.
    Timeout,
    /// Linear memory (or a table) could not grow within the limit.
    MemoryLimit,
    /// The guest's stack overflowed.
    StackOverflow,
    /// The guest panicked (Rust `panic!`).
    Panic,
    /// Any other trap (unreachable, out-of-bounds access, ...).
    Trap,
    /// Custom data and console output went over the output limit.
    OutputLimit,
    /// The function returned an error instead of a decision.
    FunctionError,
    /// The function could not be instantiated.
    Instantiation,
    /// The host failed (e.g. a certificate it could not parse).
    Host,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory-limit",
            ErrorKind::StackOverflow => "stack-overflow",
            ErrorKind::Panic => "panic",
            ErrorKind::Trap => "trap",
            ErrorKind::OutputLimit => "output-limit",
            ErrorKind::FunctionError => "function-error",
            ErrorKind::Instantiation => "instantiation",
            ErrorKind::Host => "host",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function error: its kind and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Everything one call produced. Serialized as the JSON output of
/// `tollgate test --json` (and the admin API's test call).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub decision: Decision,
    /// The deny reason the function gave, if any.
    pub reason: Option<String>,
    /// Set when the function failed; the decision is then `deny`.
    pub error: Option<FunctionError>,
    /// `connectionLogCustomData`: at most 800 bytes.
    pub custom_data: Option<String>,
    /// Console lines, stdout and stderr included.
    pub console: Vec<ConsoleLine>,
    /// Wall-clock time of the call, instantiation included.
    #[serde(rename = "durationUs", serialize_with = "micros")]
    pub duration: Duration,
    /// Time the function ran on a CPU, as a percentage of its time limit
    /// (0-100).
    pub compute_utilization: u8,
    /// The outcome of an earlier call with the same answers, replayed
    /// without running the function (`RuntimeConfig::replay_bytes`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Outcome {
    /// The connection log's `connectionStatus` for this outcome.
    pub fn connection_status(&self) -> &'static str {
        match (self.decision, &self.error) {
            (Decision::Allow, _) => "Success",
            (Decision::Deny, Some(_)) => "Failed:ConnectionFunctionError",
            (Decision::Deny, None) => "Failed:ConnectionFunctionDenied",
        }
    }

    pub fn is_allow(&self) -> bool {
        self.decision == Decision::Allow
    }
}
