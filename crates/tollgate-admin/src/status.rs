//! `/metrics`, `/status` and `/reload`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tollgate_edge::{ReloadError, Reloader};
use tollgate_log::SinkSpec;
use tollgate_metrics::Writer;

use crate::http_io::{ApiError, json_response};

/// `GET /metrics`: the registry, plus what is read at scrape time (store
/// sizes, dropped log lines).
pub fn metrics(reloader: &Reloader) -> Response<Full<Bytes>> {
    let mut text = tollgate_metrics::metrics().render();
    let mut w = Writer::default();
    let stores = reloader.stores();
    let sizes: Vec<(&str, u64, u64)> = stores
        .names()
        .filter_map(|name| {
            let snap = stores.get(name)?.snapshot();
            Some((name, snap.meta().key_count, snap.meta().total_size_bytes))
        })
        .collect();
    w.family("tollgate_kvs_items", "Keys in each store.", "gauge");
    for (name, items, _) in &sizes {
        w.sample("tollgate_kvs_items", &[("store", name)], *items as f64);
    }
    w.family(
        "tollgate_kvs_size_bytes",
        "Bytes of keys and values in each store.",
        "gauge",
    );
    for (name, _, bytes) in &sizes {
        w.sample("tollgate_kvs_size_bytes", &[("store", name)], *bytes as f64);
    }
    w.family(
        "tollgate_log_lines_dropped_total",
        "Log lines dropped under back-pressure, by sink.",
        "counter",
    );
    for logger in reloader.loggers() {
        let sink = sink_name(logger.spec());
        w.sample(
            "tollgate_log_lines_dropped_total",
            &[("sink", &sink)],
            logger.dropped() as f64,
        );
    }
    w.finish_into(&mut text);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn sink_name(spec: &SinkSpec) -> String {
    match spec {
        SinkSpec::Stdout => "stdout".into(),
        SinkSpec::Off => "off".into(),
        SinkSpec::File(p) => p.display().to_string(),
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `GET /status`: listeners with their certificates, trust stores, CRLs
/// and functions; stores.
pub fn status(reloader: &Reloader) -> Value {
    let established = reloader.established();
    let listeners: Vec<Value> = reloader
        .plans()
        .iter()
        .map(|(plan, address)| {
            let open = established
                .iter()
                .find(|(name, _)| *name == *plan.name)
                .map_or(0, |(_, n)| *n);
            let certificates: Vec<Value> = plan
                .certificates
                .summaries()
                .into_iter()
                .map(|(names, not_after)| json!({ "names": names, "notAfter": rfc3339(not_after) }))
                .collect();
            let trust = plan.verifier.as_ref().map(|v| {
                let policy = v.policy();
                json!({
                    "caCount": policy.trust.len(),
                    "warnings": policy.trust.warnings().iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                    "crlCount": policy.crls.len(),
                    "crlNextUpdate": policy.crls.next_update().map(rfc3339),
                    "crlWarnings": policy.crls.warnings(),
                })
            });
            let function = plan.function.as_ref().map(|(f, on_error)| {
                json!({
                    "name": f.name(),
                    "sha256": f.sha256(),
                    "onError": format!("{on_error:?}").to_lowercase(),
                })
            });
            json!({
                "name": &*plan.name,
                "address": address.to_string(),
                "mtlsMode": plan.mode.as_str(),
                "certificates": certificates,
                "trustStore": trust,
                "function": function,
                "origin": plan.section.origin.url,
                "establishedConnections": open,
            })
        })
        .collect();
    let stores = reloader.stores();
    let stores: Vec<Value> = stores
        .names()
        .filter_map(|n| stores.get(n))
        .map(|s| {
            let snap = s.snapshot();
            let meta = snap.meta();
            json!({
                "name": s.name(),
                "itemCount": meta.key_count,
                "totalSizeInBytes": meta.total_size_bytes,
                "etag": meta.etag,
                "lastModified": meta.last_modified_rfc3339(),
            })
        })
        .collect();
    json!({
        "config": reloader.config().source.display().to_string(),
        "listeners": listeners,
        "stores": stores,
    })
}

/// `POST /reload`: reloads the configuration file from disk; 422 with every
/// problem when it does not load (the running configuration stays).
pub async fn reload(reloader: &Reloader) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = reloader.config().source;
    match reloader.reload_from_disk().await {
        Ok(warnings) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "reloaded": path.display().to_string(),
                "warnings": warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            }),
        )),
        Err(ReloadError::Config(e)) => Err(refused(
            e.problems().iter().map(|p| p.to_string()).collect(),
        )),
        Err(ReloadError::Load(failure)) => Err(refused(
            failure.errors.iter().map(|p| p.to_string()).collect(),
        )),
        Err(e) => Err(refused(vec![e.to_string()])),
    }
}

fn refused(problems: Vec<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ReloadRefused",
        format!(
            "the configuration was not reloaded; still serving the previous one:\n{}",
            problems.join("\n")
        ),
    )
}
