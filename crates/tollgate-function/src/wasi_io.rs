//! `wasi:io` (poll and streams) for a guest that must never wait.
//!
//! A Rust guest's standard library imports `wasi:io` for its stdio. The
//! streams a function gets are in-memory (stdout and stderr go to the bounded
//! console, stdin is closed), so every operation on them completes at once.
//! Linking synchronous host functions lets a call run inline, without a fiber
//! (see `runtime.rs`); each operation is the `wasmtime-wasi-io` implementation
//! polled exactly once. One that is not ready — a guest sleeping, or waiting on
//! a clock — is refused with [`WouldBlock`]: a connection function decides
//! from what it has, it cannot wait (and a wait would hold the connection
//! without spending the CPU time its limit counts).
//!
//! Why not `wasmtime_wasi`'s own synchronous bindings: their blocking
//! operations `block_on` the ambient tokio runtime, which panics on a tokio
//! worker thread — where every call runs.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};

use crate::host::HostState;

/// The error that stops a guest which tried to wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "the function tried to wait (sleep, or block on a clock or stream); connection functions cannot block"
)]
pub struct WouldBlock;

/// Links `wasi:io/error`, `wasi:io/poll` and `wasi:io/streams`.
pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // Streams and pollables: WASI, which a replay does not ask again.
    fn table(state: &mut HostState) -> Io<'_> {
        state.unrepeatable();
        Io(state.table())
    }
    fn error_table(state: &mut HostState) -> &mut ResourceTable {
        state.unrepeatable();
        state.table()
    }
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<HostState, ErrorData>(l, error_table)?;
    poll::add_to_linker::<HostState, IoData>(l, table)?;
    streams::add_to_linker::<HostState, IoData>(l, table)?;
    Ok(())
}

struct ErrorData;
impl HasData for ErrorData {
    type Data<'a> = &'a mut ResourceTable;
}

struct IoData;
impl HasData for IoData {
    type Data<'a> = Io<'a>;
}

/// The resource table, seen through the synchronous `wasi:io` traits.
pub(crate) struct Io<'a>(&'a mut ResourceTable);

/// Polls `f` once: its value if it is ready, [`WouldBlock`] if not.
fn now<F: Future>(f: F) -> Result<F::Output, WouldBlock> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => Err(WouldBlock),
    }
}

/// [`now`] for the operations that return a stream result.
fn now_stream<T>(f: impl Future<Output = StreamResult<T>>) -> StreamResult<T> {
    now(f).map_err(|e| StreamError::Trap(e.into()))?
}

impl poll::Host for Io<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        now(async_poll::Host::poll(self.0, pollables))?
    }
}

impl poll::HostPollable for Io<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        now(async_poll::HostPollable::ready(self.0, pollable))?
    }
    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        now(async_poll::HostPollable::block(self.0, pollable))?
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

impl streams::Host for Io<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(
            match async_streams::Host::convert_stream_error(self.0, err)? {
                async_streams::StreamError::LastOperationFailed(e) => {
                    streams::StreamError::LastOperationFailed(e)
                }
                async_streams::StreamError::Closed => streams::StreamError::Closed,
            },
        )
    }
}

type OutputStream = streams::OutputStream;
type InputStream = streams::InputStream;

impl streams::HostOutputStream for Io<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        now(async_streams::HostOutputStream::drop(self.0, stream))?
    }
    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        async_streams::HostOutputStream::check_write(self.0, stream)
    }
    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        async_streams::HostOutputStream::write(self.0, stream, bytes)
    }
    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        now_stream(async_streams::HostOutputStream::blocking_write_and_flush(
            self.0, stream, bytes,
        ))
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        now_stream(
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len),
        )
    }
    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        async_streams::HostOutputStream::subscribe(self.0, stream)
    }
    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        async_streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }
    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        async_streams::HostOutputStream::flush(self.0, stream)
    }
    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        now_stream(async_streams::HostOutputStream::blocking_flush(
            self.0, stream,
        ))
    }
    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        async_streams::HostOutputStream::splice(self.0, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        now_stream(async_streams::HostOutputStream::blocking_splice(
            self.0, dst, src, len,
        ))
    }
}

impl streams::HostInputStream for Io<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        now(async_streams::HostInputStream::drop(self.0, stream))?
    }
    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        async_streams::HostInputStream::read(self.0, stream, len)
    }
    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        now_stream(async_streams::HostInputStream::blocking_read(
            self.0, stream, len,
        ))
    }
    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        async_streams::HostInputStream::skip(self.0, stream, len)
    }
    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        now_stream(async_streams::HostInputStream::blocking_skip(
            self.0, stream, len,
        ))
    }
    fn subscribe(
        &mut self,
        stream: Resource<InputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        async_streams::HostInputStream::subscribe(self.0, stream)
    }
}
