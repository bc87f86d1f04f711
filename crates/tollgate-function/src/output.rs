//! What a function writes: custom log data and console lines, under one
//! byte budget per connection. stdout and stderr of the guest land here too.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::limits::MAX_CUSTOM_DATA_BYTES;

/// Where a console line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// A line the guest wrote to stdout.
    Stdout,
    /// A line the guest wrote to stderr (a Rust panic message lands here).
    Stderr,
}

/// One console line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleLine {
    pub level: ConsoleLevel,
    pub text: String,
}

/// The output of one call, shared between the host imports and the guest's
/// stdout/stderr streams.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub custom_data: Option<String>,
    pub console: Vec<ConsoleLine>,
    used: u64,
    limit: u64,
    pub exceeded: bool,
    stdout_partial: Vec<u8>,
    stderr_partial: Vec<u8>,
}

/// The budget was exceeded; the guest is trapped.
#[derive(Debug, thiserror::Error)]
#[error("output limit of {limit} bytes per connection exceeded")]
pub(crate) struct OutputLimitExceeded {
    pub limit: u64,
}

impl Output {
    pub fn new(limit: u64) -> Output {
        Output {
            limit,
            ..Output::default()
        }
    }

    fn charge(&mut self, bytes: usize) -> Result<(), OutputLimitExceeded> {
        self.used = self.used.saturating_add(bytes as u64);
        if self.used > self.limit {
            self.exceeded = true;
            return Err(OutputLimitExceeded { limit: self.limit });
        }
        Ok(())
    }

    pub fn set_custom_data(&mut self, text: String) -> Result<(), OutputLimitExceeded> {
        self.charge(text.len())?;
        self.custom_data = Some(truncate_utf8(text, MAX_CUSTOM_DATA_BYTES));
        Ok(())
    }

    pub fn console(
        &mut self,
        level: ConsoleLevel,
        text: String,
    ) -> Result<(), OutputLimitExceeded> {
        // A line costs its text and one byte more (as its newline would on
        // stdout): empty lines are not free.
        self.charge(text.len() + 1)?;
        self.console.push(ConsoleLine { level, text });
        Ok(())
    }

    fn stream_write(
        &mut self,
        level: ConsoleLevel,
        bytes: &[u8],
    ) -> Result<(), OutputLimitExceeded> {
        self.charge(bytes.len())?;
        let partial = match level {
            ConsoleLevel::Stderr => &mut self.stderr_partial,
            _ => &mut self.stdout_partial,
        };
        partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            lines.push(ConsoleLine { level, text });
        }
        self.console.extend(lines);
        Ok(())
    }

    /// Moves unterminated stdout/stderr text into the console.
    pub fn finish(&mut self) {
        for (level, partial) in [
            (
                ConsoleLevel::Stdout,
                std::mem::take(&mut self.stdout_partial),
            ),
            (
                ConsoleLevel::Stderr,
                std::mem::take(&mut self.stderr_partial),
            ),
        ] {
            if !partial.is_empty() {
                let text = String::from_utf8_lossy(&partial).into_owned();
                self.console.push(ConsoleLine { level, text });
            }
        }
    }
}

/// A guest's deny reason or error message, as the connection log keeps it:
/// at most [`crate::MAX_REASON_BYTES`], cut at a character boundary and
/// ending with `…` when cut.
pub(crate) fn bound_reason(text: String) -> String {
    let max = crate::MAX_REASON_BYTES;
    if text.len() <= max {
        return text;
    }
    let mut cut = truncate_utf8(text, max - '…'.len_utf8());
    cut.push('…');
    cut
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub fn truncate_utf8(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A handle on the shared output.
#[derive(Debug, Clone)]
pub(crate) struct SharedOutput(Arc<Mutex<Output>>);

impl SharedOutput {
    pub fn new(limit: u64) -> SharedOutput {
        SharedOutput(Arc::new(Mutex::new(Output::new(limit))))
    }

    pub fn lock(&self) -> MutexGuard<'_, Output> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // data is plain and still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn stdout(&self) -> GuestStream {
        GuestStream {
            output: self.clone(),
            level: ConsoleLevel::Stdout,
        }
    }

    pub fn stderr(&self) -> GuestStream {
        GuestStream {
            output: self.clone(),
            level: ConsoleLevel::Stderr,
        }
    }
}

/// The guest's stdout or stderr.
#[derive(Debug, Clone)]
pub(crate) struct GuestStream {
    output: SharedOutput,
    level: ConsoleLevel,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.output
            .lock()
            .stream_write(self.level, &bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::from(e)))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = self
            .output
            .lock()
            .stream_write(self.level, buf)
            .map(|()| buf.len())
            .map_err(std::io::Error::other);
        std::task::Poll::Ready(result)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_at_a_character_boundary() {
        assert_eq!(bound_reason("revoked".into()), "revoked");
        let exact = "a".repeat(crate::MAX_REASON_BYTES);
        assert_eq!(bound_reason(exact.clone()), exact);
        let long = "é".repeat(crate::MAX_REASON_BYTES);
        let cut = bound_reason(long);
        assert!(cut.len() <= crate::MAX_REASON_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }

    #[test]
    fn every_console_line_costs_at_least_a_byte() {
        let mut out = Output::new(10);
        for _ in 0..10 {
            out.console(ConsoleLevel::Info, String::new()).unwrap();
        }
        assert!(out.console(ConsoleLevel::Info, String::new()).is_err());
        assert!(out.exceeded);
        assert_eq!(out.console.len(), 10);
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let text = "é".repeat(500); // 1000 bytes, 2 per char
        let cut = truncate_utf8(text, 801);
        assert_eq!(cut.len(), 800);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_utf8("short".into(), 800), "short");
    }

    #[test]
    fn streams_split_lines_and_budget_is_shared() {
        let mut out = Output::new(40);
        out.stream_write(ConsoleLevel::Stdout, b"one\ntw").unwrap();
        out.stream_write(ConsoleLevel::Stdout, b"o\n").unwrap();
        out.stream_write(ConsoleLevel::Stderr, b"tail").unwrap();
        out.set_custom_data("x".repeat(20)).unwrap();
        assert!(
            out.console(ConsoleLevel::Info, "too much!!".into())
                .is_err()
        );
        assert!(out.exceeded);
        out.finish();
        let texts: Vec<_> = out
            .console
            .iter()
            .map(|l| (l.level, l.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (ConsoleLevel::Stdout, "one"),
                (ConsoleLevel::Stdout, "two"),
                (ConsoleLevel::Stderr, "tail")
            ]
        );
    }
}
