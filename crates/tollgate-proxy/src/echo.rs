//! The built-in origin: answers every request with a JSON document of what it
//! received (method, path, headers, and the client certificate the proxy
//! presented, when served over TLS). Used by `tollgate demo` and the tests.
//! `?delay=MS` in the query delays the answer; `?stall=MS` sends the head
//! and half the body at once and the rest `MS` later.
//!
//! Headers appear twice in the JSON: `headers` is a map from lowercase name to
//! value (for a name received more than once, the last value), and
//! `headerList` is every header received as a `[name, value]` pair, duplicates
//! included (names in the order they were first seen, each name's values in
//! the order received), so a test can tell one value from several.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Counts what reached the echo origin.
#[derive(Debug, Default)]
pub struct EchoStats {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
}

/// Serves `listener` forever (until the task is dropped). With `tls`, every
/// connection is TLS; a client certificate, if the config asks for one, is
/// reported in the JSON as `clientCertificatePresented`.
pub async fn serve_echo(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    stats: Arc<EchoStats>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_one(TokioIo::new(tcp), false, stats).await,
                Some(cfg) => {
                    let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await else {
                        return;
                    };
                    let presented = stream.get_ref().1.peer_certificates().is_some();
                    serve_one(TokioIo::new(stream), presented, stats).await
                }
            }
        });
    }
}

async fn serve_one<IO>(io: TokioIo<IO>, client_cert: bool, stats: Arc<EchoStats>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let stats = stats.clone();
        async move {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            // `?delay=MS` answers late: for shutdown and timeout tests.
            let param = |name: &str| {
                req.uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(name)))
                    .and_then(|ms| ms.parse::<u64>().ok())
            };
            let delay = param("delay=");
            // `?stall=MS`: the head and half the body at once, the rest late.
            let stall = param("stall=");
            if let Some(ms) = delay {
                tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
            }
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let mut headers = serde_json::Map::new();
            let mut header_list = Vec::new();
            for (name, value) in req.headers() {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                header_list.push(serde_json::json!([name.as_str(), value]));
                headers.insert(name.as_str().to_owned(), value.into());
            }
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let doc = serde_json::json!({
                "method": method,
                "path": path,
                "headers": headers,
                "headerList": header_list,
                "bodyBytes": body.len(),
                "clientCertificatePresented": client_cert,
            });
            let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            text.push('\n');
            let mut text = Bytes::from(text);
            let body = Stalled {
                rest: stall.map(|_| text.split_off(text.len() / 2)),
                first: Some(text),
                sleep: Box::pin(tokio::time::sleep(std::time::Duration::from_millis(
                    stall.unwrap_or(0).min(60_000),
                ))),
            };
            let response = Response::builder()
                .header("content-type", "application/json")
                .body(body)
                .unwrap_or_else(|_| {
                    Response::new(Stalled {
                        first: None,
                        rest: None,
                        sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
                    })
                });
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

/// The echo's body: `first` at once, then `rest` (if any) once `sleep` is
/// over.
struct Stalled {
    first: Option<Bytes>,
    rest: Option<Bytes>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::future::Future;
        use std::task::Poll;
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(first))));
        }
        if self.rest.is_none() {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(
            self.rest
                .take()
                .map(|rest| Ok(hyper::body::Frame::data(rest))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
        hyper::body::SizeHint::with_exact(len(&self.first) + len(&self.rest))
    }
}
