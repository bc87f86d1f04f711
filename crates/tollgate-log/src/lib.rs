//! Tollgate's connection and access logs.
//!
//! Two record types, [`ConnectionRecord`] (one per connection attempt, success or
//! failure, with the CloudFront connection-log field names) and [`AccessRecord`]
//! (one per HTTP request), share a `connectionId` so the two can be joined.
//!
//! A [`Logger`] serialises a record on the caller's thread into one JSON line and
//! hands it to a writer thread through a bounded queue. The handshake path never
//! waits on the disk: when the queue is full the line is dropped and counted
//! ([`Logger::dropped`]); the writer reports the count on stderr (through
//! `tracing`) once the queue drains. File sinks are reopened on request
//! ([`Logger::reopen`], wired to SIGHUP by the server) so that logrotate can move
//! the file away.

mod record;
mod sink;

pub use record::{AccessRecord, ConnectionRecord, timestamp_now};
pub use sink::{LogError, Logger, SinkSpec};
