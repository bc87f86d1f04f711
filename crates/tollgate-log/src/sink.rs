use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use serde::Serialize;

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkSpec {
    Stdout,
    File(PathBuf),
    /// Records are discarded (and not counted as dropped).
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open log file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot start the log writer thread: {0}")]
    Thread(io::Error),
}

enum Message {
    Line(Vec<u8>),
    /// Wake the writer (a reopen was requested).
    Wake,
    /// Everything queued before this has been written and flushed.
    Flush(mpsc::Sender<()>),
}

struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A non-blocking JSON-lines log. Cheap to clone; all clones share one writer
/// thread, one queue and one drop counter.
#[derive(Clone)]
pub struct Logger {
    tx: Option<SyncSender<Message>>,
    shared: Arc<Shared>,
    spec: SinkSpec,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger").field("spec", &self.spec).finish()
    }
}

/// The queue holds this many lines before new ones are dropped.
pub const DEFAULT_QUEUE_LINES: usize = 16 * 1024;

impl Logger {
    /// Opens the sink (a file is created or appended to) and starts its writer.
    pub fn open(spec: &SinkSpec) -> Result<Logger, LogError> {
        Logger::with_capacity(spec, DEFAULT_QUEUE_LINES)
    }

    pub fn with_capacity(spec: &SinkSpec, capacity: usize) -> Result<Logger, LogError> {
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let out: Box<dyn Write + Send> = match spec {
            SinkSpec::Off => {
                return Ok(Logger {
                    tx: None,
                    shared,
                    spec: spec.clone(),
                });
            }
            SinkSpec::Stdout => Box::new(io::stdout()),
            SinkSpec::File(path) => Box::new(open_append(path)?),
        };
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            path: match spec {
                SinkSpec::File(path) => Some(path.clone()),
                _ => None,
            },
            shared: shared.clone(),
            reported_drops: 0,
        };
        thread::Builder::new()
            .name("tollgate-log".into())
            .spawn(move || writer.run(rx))
            .map_err(LogError::Thread)?;
        Ok(Logger {
            tx: Some(tx),
            shared,
            spec: spec.clone(),
        })
    }

    pub fn spec(&self) -> &SinkSpec {
        &self.spec
    }

    /// Serialises `record` as one JSON line and queues it. Never blocks: a full
    /// queue drops the line and counts it.
    pub fn log<T: Serialize>(&self, record: &T) {
        let Some(tx) = &self.tx else { return };
        let mut line = Vec::with_capacity(512);
        if serde_json::to_writer(&mut line, record).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        line.push(b'\n');
        match tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer could not keep up (or failed).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines written to the sink.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// The last write or reopen error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Reopens a file sink by path (after rotation). Takes effect before the next
    /// line is written.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Message::Wake);
        }
    }

    /// Blocks until every line queued before the call is written and flushed.
    /// For shutdown and tests; never call it on a connection's path.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = mpsc::channel();
        if tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_owned(),
            source,
        })
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    path: Option<PathBuf>,
    shared: Arc<Shared>,
    reported_drops: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            self.handle(message);
            // Drain what is already queued before paying for a flush.
            while let Ok(message) = rx.try_recv() {
                self.handle(message);
            }
            let flushed = self.out.flush();
            self.check(flushed);
            self.report_drops();
        }
        let _ = self.out.flush();
    }

    fn handle(&mut self, message: Message) {
        if self.shared.reopen.swap(false, Ordering::AcqRel) {
            self.reopen();
        }
        match message {
            Message::Line(line) => {
                let result = self.out.write_all(&line);
                if result.is_ok() {
                    self.shared.written.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.check(result);
            }
            Message::Wake => {}
            Message::Flush(done) => {
                let flushed = self.out.flush();
                self.check(flushed);
                let _ = done.send(());
            }
        }
    }

    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let flushed = self.out.flush();
        self.check(flushed);
        match open_append(&path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 * 1024, Box::new(file));
                tracing::info!(path = %path.display(), "log file reopened");
            }
            Err(err) => {
                // Keep writing to the old handle rather than losing lines.
                tracing::error!(%err, "log file reopen failed; still writing to the old file");
                self.set_error(err.to_string());
            }
        }
    }

    fn check(&self, result: io::Result<()>) {
        if let Err(err) = result {
            self.set_error(err.to_string());
        }
    }

    fn set_error(&self, message: String) {
        if let Ok(mut slot) = self.shared.last_error.lock() {
            *slot = Some(message);
        }
    }

    fn report_drops(&mut self) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops {
            tracing::warn!(
                dropped_since_last_report = dropped - self.reported_drops,
                dropped_total = dropped,
                "log lines dropped under back-pressure"
            );
            self.reported_drops = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionRecord;

    fn record(id: &str) -> ConnectionRecord {
        ConnectionRecord {
            connection_id: id.into(),
            connection_status: "Success".into(),
            ..Default::default()
        }
    }

    #[test]
    fn file_sink_writes_json_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        let logger = Logger::open(&SinkSpec::File(path.clone())).unwrap();
        logger.log(&record("one"));
        logger.flush();
        let rotated = dir.path().join("conn.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        logger.log(&record("two"));
        logger.flush();
        logger.reopen();
        logger.log(&record("three"));
        logger.flush();

        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        let ids = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["connectionId"].as_str().unwrap().to_owned()
                })
                .collect()
        };
        assert_eq!(ids(&old), ["one", "two"]);
        assert_eq!(ids(&new), ["three"]);
        assert_eq!(logger.written(), 3);
        assert_eq!(logger.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A writer stuck on a pipe nobody reads: the queue fills, log() must return.
        let (reader, writer) = std::io::pipe().unwrap();
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel(4);
        let w = Writer {
            out: BufWriter::with_capacity(16, Box::new(writer)),
            path: None,
            shared: shared.clone(),
            reported_drops: 0,
        };
        thread::spawn(move || w.run(rx));
        let logger = Logger {
            tx: Some(tx),
            shared,
            spec: SinkSpec::Stdout,
        };
        let start = std::time::Instant::now();
        for i in 0..10_000 {
            logger.log(&record(&i.to_string()));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert!(logger.dropped() > 9_000, "dropped {}", logger.dropped());
        drop(reader);
    }

    #[test]
    fn an_unwritable_file_is_a_clear_error() {
        let err = Logger::open(&SinkSpec::File("/nonexistent-dir/x.log".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.log"), "{err}");
    }
}
