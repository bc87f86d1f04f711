//! Established connections, kept per listener so that a change of
//! revocation data can re-check them: the function re-run against the new
//! data, the chain checked against the new CRLs. Those now refused are
//! closed and logged; other changes (a trust store without their CA, say)
//! apply to new connections only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tollgate_config::MtlsMode;
use tollgate_function::{ConnectionInfo, Decision};
use tollgate_log::{ConnectionRecord, timestamp_now};

use crate::load::ListenerPlan;

/// What changed, and so what a re-check re-runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A KVS write to this store: functions that open it are re-run.
    Store(String),
    /// A configuration reload: chains are checked against the CRLs and
    /// functions re-run (their stores may have been re-imported).
    Reload,
}

struct Entry {
    info: Arc<ConnectionInfo>,
    chain: Vec<Vec<u8>>,
    close: oneshot::Sender<()>,
}

/// One listener's established (allowed) connections.
#[derive(Default)]
pub(crate) struct Established {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// Keeps a connection registered until dropped; `closed` resolves when a
/// re-check refuses it.
pub(crate) struct Registration {
    owner: Arc<Established>,
    key: u64,
    pub closed: oneshot::Receiver<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.key);
    }
}

impl Established {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        info: Arc<ConnectionInfo>,
        chain: Vec<Vec<u8>>,
    ) -> Registration {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = oneshot::channel();
        self.lock().insert(key, Entry { info, chain, close });
        Registration {
            owner: self.clone(),
            key,
            closed,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Re-checks every registered connection against `plan` (the listener's
    /// current one); closes and logs those now refused. Returns how many.
    pub(crate) async fn recheck(&self, plan: &ListenerPlan, change: &Change) -> usize {
        if !plan.section.recheck_established {
            return 0;
        }
        let rerun_function = plan.function.as_ref().filter(|(f, _)| match change {
            Change::Store(name) => f.stores().names().contains(&name.as_str()),
            Change::Reload => true,
        });
        let reverify = *change == Change::Reload;
        let candidates: Vec<(u64, Arc<ConnectionInfo>, Vec<Vec<u8>>)> = self
            .lock()
            .iter()
            .map(|(k, e)| (*k, e.info.clone(), e.chain.clone()))
            .collect();
        let mut closed = 0;
        for (key, info, chain) in candidates {
            let mut refusal = None;
            // Passthrough and off listeners verify no chain; neither does a re-check.
            let verifies = matches!(plan.mode, MtlsMode::Required | MtlsMode::Optional);
            if reverify
                && verifies
                && let (Some(verifier), Some((leaf, rest))) = (&plan.verifier, chain.split_first())
                && let Err(failure @ tollgate_tls::VerifyFailure::Revoked) =
                    verify(verifier, leaf, rest)
            {
                // Only revocation closes an established connection: a trust
                // store that no longer has its CA, or a certificate that has
                // since expired, applies to new connections only.
                refusal = Some((failure.code(), failure.to_string(), None));
            }
            if refusal.is_none()
                && let Some((function, _)) = rerun_function
            {
                let outcome = function.call(info.clone()).await;
                // A function error on re-check keeps the connection: it was
                // admitted and nothing says its identity is now refused.
                if outcome.error.is_none() && outcome.decision == Decision::Deny {
                    refusal = Some((
                        "ConnectionFunctionDenied",
                        outcome
                            .reason
                            .unwrap_or_else(|| "denied by the connection function".into()),
                        outcome.custom_data,
                    ));
                }
            }
            let Some((code, reason, custom)) = refusal else {
                continue;
            };
            let Some(entry) = self.lock().remove(&key) else {
                continue; // closed meanwhile
            };
            let _ = entry.close.send(());
            closed += 1;
            let what = match change {
                Change::Store(name) => format!("a write to store {name:?}"),
                Change::Reload => "a reload".to_owned(),
            };
            tracing::info!(connection_id = %info.id, code, %reason, "established connection closed on re-check");
            tollgate_metrics::metrics()
                .revoked_connections
                .with(&[&plan.name, if reverify { "reload" } else { "kvs" }])
                .inc();
            plan.connection_log.log(&ConnectionRecord {
                event_timestamp: timestamp_now(),
                connection_id: info.id.clone(),
                connection_status: format!("Failed:{code}"),
                client_ip: info.client.ip().to_string(),
                client_port: info.client.port(),
                server_ip: info.server.ip().to_string(),
                server_port: info.server.port(),
                listener: plan.name.to_string(),
                connection_log_custom_data: custom,
                function_name: rerun_function.map(|(f, _)| f.name().to_owned()),
                reason: Some(format!(
                    "established connection closed on re-check after {what}: {reason}"
                )),
                ..Default::default()
            });
        }
        closed
    }
}

fn verify(
    verifier: &tollgate_tls::ClientVerifier,
    leaf: &[u8],
    rest: &[Vec<u8>],
) -> Result<(), tollgate_tls::VerifyFailure> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    let leaf = CertificateDer::from(leaf);
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    verifier
        .verify_chain(
            &leaf,
            &intermediates,
            UnixTime::now(),
            tollgate_tls::Usage::ClientAuth,
        )
        .map(|_| ())
}
