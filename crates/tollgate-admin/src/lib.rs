//! The admin API: changes to a running proxy, over HTTP/JSON.
//! KVS contents and function versions (both stages) live in the state
//! (`tollgate-state`); listeners serve LIVE function versions only.
//!
//! It listens on its own address (`127.0.0.1:9901` by default; a non-loopback
//! address needs TLS, which the configuration check enforces) and every call,
//! `/metrics` included, needs `Authorization: Bearer <token>`. The routes are
//! described in `docs/admin-api.md` and `docs/openapi.yaml`; [`ROUTES`] is
//! the list the documents are tested against.
//!
//! Invariants:
//! - **Refused means unchanged.** A request that fails authentication, is too
//!   large, malformed, of the wrong type, or carries a stale `If-Match`
//!   changes nothing.
//! - **Acknowledged means durable.** A KVS write is answered only after the
//!   state store committed it (fsync); the new contents are published to
//!   connection functions at the same moment, before the answer.

mod functions;
mod http_io;
mod kvs;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tollgate_edge::Reloader;

pub use http_io::ApiError;
use http_io::{json_response, read_body};

/// Every route: method and path pattern (`{name}` is one path segment).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/status"),
    ("POST", "/reload"),
    ("GET", "/kvs"),
    ("GET", "/kvs/{store}"),
    ("PUT", "/kvs/{store}"),
    ("GET", "/kvs/{store}/keys"),
    ("POST", "/kvs/{store}/keys"),
    ("GET", "/kvs/{store}/keys/{key}"),
    ("PUT", "/kvs/{store}/keys/{key}"),
    ("DELETE", "/kvs/{store}/keys/{key}"),
    ("GET", "/functions"),
    ("GET", "/functions/{name}"),
    ("PUT", "/functions/{name}"),
    ("DELETE", "/functions/{name}"),
    ("POST", "/functions/{name}/publish"),
    ("POST", "/functions/{name}/test"),
];

/// What the admin API works on.
pub struct Admin {
    reloader: Reloader,
    token: String,
    max_body_bytes: usize,
}

impl Admin {
    /// `token` is what callers must send as `Authorization: Bearer <token>`;
    /// it must not be empty.
    pub fn new(reloader: Reloader, token: String, max_body_bytes: usize) -> Result<Admin, String> {
        if token.trim().is_empty() {
            return Err("the admin token is empty".into());
        }
        Ok(Admin {
            reloader,
            token: token.trim().to_owned(),
            max_body_bytes,
        })
    }

    /// Serves connections from `listener` until `shutdown` resolves; with
    /// `tls`, over HTTPS.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return,
            };
            let admin = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(req, peer).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                // A client that does not finish its request head in time is
                // dropped (the API must stay reachable).
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10));
                let result = match acceptor {
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "admin TLS handshake failed");
                            return;
                        }
                    },
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "admin connection ended");
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = match self.authorize(&req) {
            Err(e) => e.into_response(),
            Ok(()) => match self.route(req).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            },
        };
        tracing::info!(%peer, %method, %path, status = response.status().as_u16(), "admin call");
        response
    }

    /// Constant-time comparison of the bearer token.
    fn authorize(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(given) = given else {
            return Err(ApiError::unauthorized(
                "missing Authorization: Bearer <token>",
            ));
        };
        let (a, b) = (given.as_bytes(), self.token.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in b.iter().enumerate() {
            diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
        }
        if diff == 0 {
            Ok(())
        } else {
            Err(ApiError::unauthorized("wrong token"))
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        let (parts, body) = req.into_parts();
        let segments: Vec<String> = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .map(http_io::percent_decode)
            .collect::<Result<_, _>>()?;
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = parts.uri.query().unwrap_or("");
        let body = Limited::new(body, self.max_body_bytes);
        let m = &parts.method;
        let h = &parts.headers;
        match (m, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => Ok(status::metrics(&self.reloader)),
            (&Method::GET, ["status"]) => Ok(json_response(
                StatusCode::OK,
                &status::status(&self.reloader),
            )),
            (&Method::POST, ["reload"]) => {
                read_body(body).await?;
                status::reload(&self.reloader).await
            }
            (&Method::GET, ["kvs"]) => kvs::list_stores(&self.reloader),
            (&Method::GET, ["kvs", store]) => kvs::describe(&self.reloader, store),
            (&Method::PUT, ["kvs", store]) => {
                let json = http_io::json_body(h, body).await?;
                kvs::import(&self.reloader, store, h, json).await
            }
            (&Method::GET, ["kvs", store, "keys"]) => kvs::list_keys(&self.reloader, store, query),
            (&Method::POST, ["kvs", store, "keys"]) => {
                let json = http_io::json_body(h, body).await?;
                kvs::update_keys(&self.reloader, store, h, &json).await
            }
            (&Method::GET, ["kvs", store, "keys", key]) => kvs::get_key(&self.reloader, store, key),
            (&Method::PUT, ["kvs", store, "keys", key]) => {
                let json = http_io::json_body(h, body).await?;
                kvs::put_key(&self.reloader, store, key, h, &json).await
            }
            (&Method::DELETE, ["kvs", store, "keys", key]) => {
                read_body(body).await?;
                kvs::delete_key(&self.reloader, store, key, h).await
            }
            (&Method::GET, ["functions"]) => functions::list(&self.reloader),
            (&Method::GET, ["functions", name]) => functions::describe(&self.reloader, name, query),
            (&Method::PUT, ["functions", name]) => {
                let code = http_io::typed_body(h, body, "application/wasm").await?;
                functions::put(&self.reloader, name, query, h, code).await
            }
            (&Method::DELETE, ["functions", name]) => {
                read_body(body).await?;
                functions::delete(&self.reloader, name, h).await
            }
            (&Method::POST, ["functions", name, "publish"]) => {
                read_body(body).await?;
                functions::publish(&self.reloader, name, h).await
            }
            (&Method::POST, ["functions", name, "test"]) => {
                let json = http_io::json_body(h, body).await?;
                functions::test(&self.reloader, name, query, &json).await
            }
            _ => {
                let path_known = ROUTES
                    .iter()
                    .any(|(_, pattern)| http_io::matches(pattern, &segments));
                if path_known {
                    Err(ApiError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "MethodNotAllowed",
                        format!("{m} is not allowed on {}", parts.uri.path()),
                    ))
                } else {
                    Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("no route {}", parts.uri.path()),
                    ))
                }
            }
        }
    }
}

/// Reads the bearer token from `token_file` or the `token_env` variable.
pub fn read_token(section: &tollgate_config::AdminSection) -> Result<String, String> {
    let token = match (&section.token_file, &section.token_env) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| format!("admin token file {}: {e}", path.display()))?,
        (None, Some(var)) => {
            std::env::var(var).map_err(|e| format!("admin token variable {var}: {e}"))?
        }
        (None, None) => return Err("the admin API needs token_file or token_env".into()),
    };
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(format!(
            "the admin token is {} characters; use at least 16 (e.g. `openssl rand -hex 32`)",
            token.len()
        ));
    }
    Ok(token)
}

/// A warning (about `token_file`) when the token file can be read by other
/// users than its owner: the token grants every admin operation.
pub fn token_file_warning(section: &tollgate_config::AdminSection) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = section.token_file.as_ref()?;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0)
            .then(|| format!("readable by group or others (mode {mode:03o}); `chmod 600` it"))
    }
    #[cfg(not(unix))]
    {
        let _ = section;
        None
    }
}

/// An HTTPS configuration for the admin listener (no client certificates;
/// HTTP/1.1 only).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("admin tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("admin tls_cert {}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("admin tls_key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("admin TLS: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
