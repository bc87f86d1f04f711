//! The origin client: one connection pool per listener, http or https, with
//! origin mTLS when configured.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tollgate_config::{OriginSection, OriginUrl};

/// The body type sent to the origin.
pub type OriginBody = BoxBody<Bytes, hyper::Error>;

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("{0}")]
    Config(String),
    #[error("origin unreachable: {0}")]
    Connect(String),
    #[error("origin did not answer within {0:?}")]
    Timeout(Duration),
}

/// A configured origin.
pub struct Origin {
    client: Client<HttpsConnector<HttpConnector>, OriginBody>,
    url: OriginUrl,
    authority: http::uri::Authority,
    scheme: http::uri::Scheme,
    response_timeout: Duration,
}

impl Origin {
    /// `tls` is the client config for an https origin (built by tollgate-tls from
    /// the origin's CA and client certificate); ignored for http.
    pub fn new(
        section: &OriginSection,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Origin, OriginError> {
        let url = section.parsed_url().map_err(OriginError::Config)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(section.connect_timeout));
        http.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match (url.https, tls) {
            (true, Some(tls)) => builder
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .wrap_connector(http),
            (true, None) => {
                return Err(OriginError::Config(
                    "an https origin needs a TLS client configuration".into(),
                ));
            }
            (false, _) => builder
                .with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(section.pool_idle_timeout)
            .pool_max_idle_per_host(section.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let host = if url.host.contains(':') {
            format!("[{}]:{}", url.host, url.port)
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let authority = host
            .parse()
            .map_err(|e| OriginError::Config(format!("origin authority {host:?}: {e}")))?;
        Ok(Origin {
            client,
            scheme: if url.https {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            url,
            authority,
            response_timeout: section.response_timeout,
        })
    }

    /// How long the origin may take to answer, and to send each next piece
    /// of a response body.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The origin URI for a client request's path and query.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, OriginError> {
        let mut pq = String::with_capacity(self.url.path_prefix.len() + path_and_query.len());
        pq.push_str(&self.url.path_prefix);
        pq.push_str(path_and_query);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| OriginError::Config(format!("request path: {e}")))
    }

    /// Sends a request and waits for the response head.
    pub async fn send(
        &self,
        request: Request<OriginBody>,
    ) -> Result<Response<Incoming>, OriginError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(OriginError::Connect(error_chain(&err))),
            Err(_) => Err(OriginError::Timeout(self.response_timeout)),
        }
    }
}

/// An error with its sources, `a: b: c`, so that a TLS failure under a connect
/// error is visible in the log.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
