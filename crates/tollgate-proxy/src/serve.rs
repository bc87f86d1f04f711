//! Serving HTTP on a connection the function allowed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tollgate_config::HttpSection;
use tollgate_log::{AccessRecord, Logger, timestamp_now};

use crate::headers::{strip_hop_by_hop, strip_identity_headers};
use crate::origin::{Origin, OriginError};

/// The body sent back to the client.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A response body's error: the origin's, or a stall of its body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the HTTP side knows about the connection it serves.
pub struct ConnectionContext {
    pub connection_id: String,
    pub listener: Arc<str>,
    pub client: SocketAddr,
    /// Built once per connection by [`crate::identity_headers`].
    pub identity: HeaderMap,
    /// The configured connection-id header name ("" when off), stripped from
    /// client requests like the identity headers.
    pub connection_id_header: String,
    pub access_log: Logger,
}

/// How a connection's HTTP ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    /// Closed by us because no request came within the idle timeout.
    pub idle_closed: bool,
    /// Dropped by us because a request head was not complete within the
    /// header-read timeout.
    pub header_timeout: bool,
}

/// Serves HTTP/1.1 or HTTP/2 (by `h2`, the ALPN result) on `io` until the client
/// closes, the idle timeout passes with no request in flight, or `shutdown`
/// resolves (then in-flight requests finish and the connection closes).
pub async fn serve_connection<IO>(
    io: IO,
    h2: bool,
    ctx: Arc<ConnectionContext>,
    origin: Arc<Origin>,
    settings: &HttpSection,
    shutdown: impl Future<Output = ()>,
) -> Result<Served, hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    // HTTP/1.1: bytes between requests start a request head, and any byte
    // is activity. HTTP/2: only requests are; the client's PINGs, SETTINGS
    // and WINDOW_UPDATEs would otherwise keep an idle connection (and its
    // slot) forever.
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: (!h2).then(|| activity.clone()),
    });
    let svc_activity = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let origin = origin.clone();
        let guard = InFlight::new(svc_activity.clone());
        async move { Ok::<_, Infallible>(proxy(req, &ctx, &origin, guard).await) }
    });
    let idle = settings.idle_timeout;
    let mut served = Served::default();
    tokio::pin!(shutdown);
    // HTTP/1.1 header-read timeout, from the first byte of a request head
    // (hyper's own starts as soon as the connection waits for a head, which
    // would cut idle keep-alive connections at this timeout instead of
    // `idle_timeout`).
    let header_timeout = (!h2).then_some(settings.header_read_timeout);
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            let mut shutting_down = false;
            let mut drop_at: Option<tokio::time::Instant> = None;
            loop {
                let deadline = activity.idle_deadline(idle);
                let head_deadline = header_timeout.and_then(|t| activity.head_deadline(t));
                tokio::select! {
                    () = async {
                        match head_deadline {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if header_timeout.and_then(|t| activity.head_deadline(t))
                            .is_some_and(|at| at <= tokio::time::Instant::now())
                        {
                            // A request head that does not finish: drop the
                            // connection (slowloris), nothing is answered.
                            served.requests = activity.requests.load(Ordering::Relaxed);
                            served.header_timeout = true;
                            return Ok(served);
                        }
                    }
                    result = conn.as_mut() => {
                        served.requests = activity.requests.load(Ordering::Relaxed);
                        return result.map(|()| served);
                    }
                    () = &mut shutdown, if !shutting_down => {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep_until(deadline), if !shutting_down => {
                        if activity.is_idle(idle) {
                            shutting_down = true;
                            served.idle_closed = true;
                            drop_at = Some(tokio::time::Instant::now() + settings.header_read_timeout);
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                    // Closed for idleness but still open (an HTTP/2 client
                    // that never finishes a HEADERS block and ignores the
                    // GOAWAY): dropped after one more header-read timeout
                    // with nothing in flight. A request that slipped in
                    // before the GOAWAY took effect is answered first.
                    () = async {
                        match drop_at {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if activity.in_flight.load(Ordering::Acquire) == 0 {
                            served.requests = activity.requests.load(Ordering::Relaxed);
                            return Ok(served);
                        }
                        drop_at = Some(tokio::time::Instant::now() + settings.header_read_timeout);
                    }
                }
            }
        }};
    }
    if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256);
        drive!(builder.serve_connection(io, service))
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // Ours (above) starts at a head's first byte; hyper's would start
            // while a keep-alive connection waits.
            .header_read_timeout(None)
            .max_buf_size(settings.max_header_bytes.max(8192))
            .keep_alive(true);
        drive!(builder.serve_connection(io, service))
    }
}

async fn proxy(
    req: Request<Incoming>,
    ctx: &ConnectionContext,
    origin: &Origin,
    guard: InFlight,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let mut record = AccessRecord {
        timestamp: timestamp_now(),
        connection_id: ctx.connection_id.clone(),
        listener: ctx.listener.to_string(),
        client_ip: ctx.client.ip().to_string(),
        protocol: match parts.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .into(),
        method: parts.method.to_string(),
        host: parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_owned(),
        path: parts.uri.path().to_owned(),
        ..Default::default()
    };
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = match origin.uri_for(pq) {
        Ok(uri) => uri,
        Err(err) => {
            return local(
                StatusCode::BAD_REQUEST,
                err,
                record,
                start,
                guard,
                &ctx.access_log,
            );
        }
    };
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    strip_identity_headers(headers, &ctx.connection_id_header);
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
    ] {
        headers.remove(name);
    }
    if let Ok(ip) = HeaderValue::from_str(&record.client_ip) {
        headers.insert("x-forwarded-for", ip);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Ok(host) = HeaderValue::from_str(&record.host)
        && !record.host.is_empty()
    {
        headers.insert("x-forwarded-host", host);
    }
    if let Ok(host) = HeaderValue::from_str(origin.authority().as_str()) {
        headers.insert(HOST, host);
    }
    headers.extend(ctx.identity.clone());
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let request = Request::from_parts(parts, body.boxed());

    let origin_start = Instant::now();
    match origin.send(request).await {
        Ok(response) => {
            let m = tollgate_metrics::metrics();
            m.origin_seconds
                .with(&[&ctx.listener])
                .observe(origin_start.elapsed());
            m.origin_responses
                .with(&[&ctx.listener, response.status().as_str()])
                .inc();
            record.origin_duration = Some(millis(origin_start.elapsed()));
            record.origin_status = Some(response.status().as_u16());
            record.status = response.status().as_u16();
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let body = LoggedBody {
                inner: body.boxed(),
                stall: origin.response_timeout(),
                timer: Box::pin(tokio::time::sleep(origin.response_timeout())),
                bytes: 0,
                pending: Some(Pending {
                    record,
                    start,
                    log: ctx.access_log.clone(),
                    _guard: guard,
                }),
            };
            Response::from_parts(parts, BodyExt::boxed(body))
        }
        Err(err) => {
            let status = match err {
                OriginError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(connection_id = %ctx.connection_id, error = %err, "origin request failed");
            tollgate_metrics::metrics()
                .origin_responses
                .with(&[&ctx.listener, status.as_str()])
                .inc();
            local(status, err, record, start, guard, &ctx.access_log)
        }
    }
}

/// A response made here (the origin was not reached or answered with an error).
fn local(
    status: StatusCode,
    err: impl std::fmt::Display,
    mut record: AccessRecord,
    start: Instant,
    _guard: InFlight,
    log: &Logger,
) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    record.status = status.as_u16();
    record.bytes = text.len() as u64;
    record.error = Some(err.to_string());
    record.duration = millis(start.elapsed());
    log.log(&record);
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

struct Pending {
    record: AccessRecord,
    start: Instant,
    log: Logger,
    _guard: InFlight,
}

/// The origin's body on its way to the client; writes the access record when
/// the body ends (or the client goes away), with the bytes actually sent.
struct LoggedBody {
    inner: BoxBody<Bytes, hyper::Error>,
    /// The longest wait for the origin's next piece of body
    /// (`response_timeout`): an origin that stalls mid-body does not hold
    /// the client's connection and slot forever.
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    bytes: u64,
    pending: Option<Pending>,
}

impl LoggedBody {
    fn finish(&mut self, error: Option<String>) {
        if let Some(mut p) = self.pending.take() {
            p.record.bytes = self.bytes;
            p.record.duration = millis(p.start.elapsed());
            if error.is_some() {
                p.record.error = error;
            }
            p.log.log(&p.record);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                let next = tokio::time::Instant::now() + this.stall;
                this.timer.as_mut().reset(next);
            }
            Poll::Ready(Some(Err(err))) => {
                let text = format!("origin body: {err}");
                this.finish(Some(text));
            }
            Poll::Ready(None) => this.finish(None),
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    let text = format!(
                        "origin body stalled: nothing for {:?} (response_timeout)",
                        this.stall
                    );
                    this.finish(Some(text.clone()));
                    return Poll::Ready(Some(Err(text.into())));
                }
            }
        }
        if this.inner.is_end_stream() {
            this.finish(None);
        }
        polled.map(|frame| frame.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if self.pending.is_some() && !self.inner.is_end_stream() {
            self.finish(Some("client went away before the body was sent".into()));
        } else {
            self.finish(None);
        }
    }
}

/// Last I/O time and requests in flight, for the idle timeout; when the
/// request head being read began, for the header-read timeout.
struct Activity {
    epoch: std::sync::OnceLock<Instant>,
    last_io_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds since `epoch` of the first byte of a request head not yet
    /// complete; [`NO_HEAD`] when none is being read.
    head_started_ms: AtomicU64,
}

const NO_HEAD: u64 = u64::MAX;

impl Default for Activity {
    fn default() -> Self {
        Activity {
            epoch: std::sync::OnceLock::new(),
            last_io_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NO_HEAD),
        }
    }
}

impl Activity {
    /// Bytes arrived: between requests they start a request head.
    fn read(&self) {
        self.touch();
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let ms = self.epoch().elapsed().as_millis() as u64;
            let _ = self.head_started_ms.compare_exchange(
                NO_HEAD,
                ms,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// When the head being read must be complete, if one is being read.
    fn head_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        match self.head_started_ms.load(Ordering::Acquire) {
            NO_HEAD => None,
            ms => Some(tokio::time::Instant::from_std(
                self.epoch() + Duration::from_millis(ms) + timeout,
            )),
        }
    }

    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }
    fn touch(&self) {
        let ms = self.epoch().elapsed().as_millis() as u64;
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }
    fn last_io(&self) -> Instant {
        self.epoch() + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
    }
    fn is_idle(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last_io().elapsed() >= idle
    }
    fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let at = self.last_io() + idle;
        let now = Instant::now();
        let at = if at <= now && self.in_flight.load(Ordering::Acquire) > 0 {
            now + idle
        } else {
            at
        };
        tokio::time::Instant::from_std(at)
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        // The head is complete: hyper hands over the request.
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_started_ms.store(NO_HEAD, Ordering::Release);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's I/O, noting when bytes move (HTTP/1.1; `None` for
/// HTTP/2, where only requests count as activity).
struct Tracked<IO> {
    inner: IO,
    activity: Option<Arc<Activity>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && let Some(activity) = &self.activity
        {
            activity.read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0)
            && let Some(activity) = &self.activity
        {
            activity.touch();
        }
        polled
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0)
            && let Some(activity) = &self.activity
        {
            activity.touch();
        }
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
