//! One connection's life: handshake → connection object → function →
//! decision → HTTP. This file is where a connection is allowed or refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tollgate_config::{MtlsMode, OnError};
use tollgate_function::{CertSource, ConnectionInfo, Decision};
use tollgate_log::{ConnectionRecord, timestamp_now};
use tollgate_proxy::{CertCheck, ConnectionContext, identity_headers, serve_connection};
use tollgate_x509::CertInfo;
use tracing::Instrument;

use crate::established::Established;
use crate::load::ListenerPlan;

/// The verdict on a connection before any HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `code` is a reference §5 connectionStatus code (without `Failed:`).
    Refuse {
        code: &'static str,
        reason: String,
    },
}

/// Handles an accepted TCP connection to completion.
pub(crate) async fn handle(
    plan: Arc<ListenerPlan>,
    established: Arc<Established>,
    tcp: TcpStream,
    client: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let id = tollgate_function::new_connection_id();
    let span = tracing::info_span!("connection", id = %id, listener = %plan.name, client = %client);
    let active = plan.metrics.active.clone();
    active.inc();
    let _active = Active(active);
    run(plan, established, tcp, client, id, shutdown)
        .instrument(span)
        .await
}

/// Counts a connection as active until dropped.
struct Active(Arc<tollgate_metrics::Gauge>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn run(
    plan: Arc<ListenerPlan>,
    established: Arc<Established>,
    tcp: TcpStream,
    client: SocketAddr,
    id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let server = tcp
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let _ = tcp.set_nodelay(true);
    let mut record = ConnectionRecord {
        event_timestamp: timestamp_now(),
        connection_id: id.clone(),
        client_ip: client.ip().to_string(),
        client_port: client.port(),
        server_ip: server.ip().to_string(),
        server_port: server.port(),
        listener: plan.name.to_string(),
        ..Default::default()
    };
    let metrics = tollgate_metrics::metrics();
    let refuse = |mut record: ConnectionRecord, code: &str, reason: String| {
        metrics.connections.with(&[&plan.name, code]).inc();
        record.connection_status = format!("Failed:{code}");
        tracing::info!(status = %record.connection_status, %reason, "connection refused");
        record.reason = Some(reason);
        plan.connection_log.log(&record);
    };

    // 1. Handshake (and, inside it, certificate verification).
    let acceptor = tokio_rustls::TlsAcceptor::from(plan.tls.clone());
    let timeout = plan.section.limits.handshake_timeout;
    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Err(_) => {
            return refuse(
                record,
                "TcpTimeout",
                format!("TLS handshake not finished within {timeout:?}"),
            );
        }
        Ok(Err(err)) => {
            let (code, reason) = classify_handshake_error(&err);
            // Which certificate was refused, for the log (taken on this
            // thread right after the failing poll; see take_refused_leaf).
            if let Some(info) = tollgate_tls::take_refused_leaf()
                .filter(|_| code.starts_with("ClientCert"))
                .and_then(|der| CertInfo::parse(&der).ok())
            {
                record.client_leaf_cert_serial_number = Some(info.serial_number());
                record.client_leaf_cert_subject = Some(info.subject());
                record.client_leaf_cert_issuer = Some(info.issuer());
                record.client_leaf_cert_validity = Some(info.validity_header());
            }
            return refuse(record, code, reason);
        }
        Ok(Ok(stream)) => stream,
    };
    let handshake = start.elapsed();
    plan.metrics.handshake.observe(handshake);
    let (_, tls) = stream.get_ref();
    record.tls_handshake_duration = Some(millis(handshake));
    record.tls_protocol = tls.protocol_version().map(protocol_name);
    record.tls_cipher = tls
        .negotiated_cipher_suite()
        .map(|s| cipher_name(s.suite()));
    record.tls_sni = tls.server_name().map(str::to_owned);
    let alpn = tls
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let chain: Vec<Vec<u8>> = tls
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
        .unwrap_or_default();

    // 2. The connection object's facts for the log and the headers.
    let leaf = match chain.first().map(|der| CertInfo::parse(der)) {
        None => None,
        Some(Ok(info)) => Some(Arc::new(info)),
        Some(Err(e)) if plan.mode == MtlsMode::Passthrough => {
            // Passthrough admits any certificate rustls could check the key of;
            // fields we cannot parse are simply not logged.
            tracing::debug!(error = %e, "client certificate fields unreadable");
            None
        }
        Some(Err(e)) => {
            return refuse(
                record,
                "ClientCertInvalid",
                format!("client certificate unreadable after verification: {e}"),
            );
        }
    };
    if let Some(info) = &leaf {
        record.client_leaf_cert_serial_number = Some(info.serial_number());
        record.client_leaf_cert_subject = Some(info.subject());
        record.client_leaf_cert_issuer = Some(info.issuer());
        record.client_leaf_cert_validity = Some(info.validity_header());
    }
    // Asked of the verifier (the path it built), not guessed from what the
    // client sent.
    let expiry_ignored = match (&plan.verifier, chain.split_first()) {
        (Some(verifier), Some((leaf_der, rest))) if plan.ignore_expiry => {
            let intermediates: Vec<CertificateDer<'_>> = rest
                .iter()
                .map(|der| CertificateDer::from(der.as_slice()))
                .collect();
            match verifier.expiry_ignored(
                &CertificateDer::from(leaf_der.as_slice()),
                leaf.as_deref(),
                &intermediates,
                UnixTime::now(),
            ) {
                Ok(ignored) => ignored,
                Err(failure) => {
                    return refuse(
                        record,
                        failure.code(),
                        format!("client certificate refused on re-verification: {failure}"),
                    );
                }
            }
        }
        _ => false,
    };
    record.expiry_ignored = expiry_ignored;

    // 3. The pause: the function decides before a single HTTP byte is read.
    let info = Arc::new(ConnectionInfo {
        id: id.clone(),
        client,
        server,
        sni: record.tls_sni.clone(),
        alpn: alpn.clone(),
        tls_version: record.tls_protocol.clone().unwrap_or_default(),
        cipher_suite: record.tls_cipher.clone().unwrap_or_default(),
        listener: plan.name.to_string(),
        handshake_duration: handshake,
        chain: chain.iter().cloned().map(CertSource::Der).collect(),
        expiry_ignored,
        leaf: leaf.clone(),
    });
    let verdict = match &plan.function {
        None => Verdict::Allow,
        Some((function, on_error)) => {
            let outcome = function.call(info.clone()).await;
            let function_metrics = plan.metrics.function.as_ref();
            if let Some(m) = function_metrics {
                m.seconds.observe(outcome.duration);
                if outcome.replayed {
                    m.replays.inc();
                }
            }
            if let Some(err) = &outcome.error {
                metrics
                    .function_errors
                    .with(&[function.name(), err.kind.as_str()])
                    .inc();
            } else if outcome.decision == Decision::Deny
                && let Some(m) = function_metrics
            {
                m.denies.inc();
            }
            record.function_name = Some(function.name().to_owned());
            record.function_duration = Some(millis(outcome.duration));
            record.function_compute_utilization = Some(u32::from(outcome.compute_utilization));
            record.function_replayed = outcome.replayed;
            record.connection_log_custom_data = outcome.custom_data.clone();
            match (&outcome.error, outcome.decision) {
                (Some(err), _) => {
                    let reason = format!("function error ({}): {}", err.kind.as_str(), err.message);
                    match on_error {
                        OnError::Deny => Verdict::Refuse {
                            code: "ConnectionFunctionError",
                            reason,
                        },
                        OnError::Allow => {
                            record.reason =
                                Some(format!("{reason}; admitted because on_error = \"allow\""));
                            Verdict::Allow
                        }
                    }
                }
                (None, Decision::Allow) => Verdict::Allow,
                (None, Decision::Deny) => Verdict::Refuse {
                    code: "ConnectionFunctionDenied",
                    reason: outcome
                        .reason
                        .clone()
                        .unwrap_or_else(|| "denied by the connection function".into()),
                },
            }
        }
    };
    if let Verdict::Refuse { code, reason } = verdict {
        refuse(record, code, reason);
        // No HTTP response: reset the connection.
        let (tcp, _) = stream.into_inner();
        let _ = tcp.set_zero_linger();
        drop(tcp);
        return;
    }
    record.connection_status = "Success".into();
    plan.metrics.success.inc();
    plan.connection_log.log(&record);

    // 4. HTTP.
    let check = match plan.mode {
        MtlsMode::Off => CertCheck::None,
        MtlsMode::Passthrough => CertCheck::Passthrough,
        MtlsMode::Required | MtlsMode::Optional => CertCheck::Verified,
    };
    let ctx = Arc::new(ConnectionContext {
        identity: identity_headers(&plan.section.headers, check, &chain, leaf.as_deref(), &id),
        connection_id: id,
        listener: plan.name.clone(),
        client,
        connection_id_header: plan.section.headers.connection_id.clone(),
        access_log: plan.access_log.clone(),
    });
    let h2 = alpn.as_deref() == Some("h2");
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    // Registered for re-checks when revocation data changes; a refusal
    // then closes the connection at once (no graceful end).
    let checkable =
        plan.function.is_some() || matches!(plan.mode, MtlsMode::Required | MtlsMode::Optional);
    let registration = (plan.section.recheck_established && checkable)
        .then(|| established.register(info, chain.clone()));
    let revoked = async move {
        match registration {
            Some(mut r) => {
                let _ = (&mut r.closed).await;
                // Keep the registration alive until here.
                drop(r);
            }
            None => std::future::pending::<()>().await,
        }
    };
    let serving = serve_connection(
        stream,
        h2,
        ctx,
        plan.origin.clone(),
        &plan.section.http,
        stop,
    );
    let result = tokio::select! {
        result = serving => result,
        () = revoked => {
            tracing::info!("connection closed: refused on re-check");
            return;
        }
    };
    match result {
        Ok(served) => tracing::debug!(
            requests = served.requests,
            idle_closed = served.idle_closed,
            "connection closed"
        ),
        Err(err) => tracing::debug!(error = %err, "connection ended with an HTTP error"),
    }
}

/// Maps a failed handshake to a connectionStatus code and a reason.
fn classify_handshake_error(err: &std::io::Error) -> (&'static str, String) {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return (tollgate_tls::handshake_failure_code(tls), tls.to_string());
    }
    ("TcpError", err.to_string())
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn protocol_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// IANA names (`TLS_AES_128_GCM_SHA256`); rustls calls TLS 1.3 suites `TLS13_…`.
fn cipher_name(suite: rustls::CipherSuite) -> String {
    let name = suite
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{suite:?}"));
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}
