//! Function routes (reference §2): create or update code → `DEVELOPMENT`
//! with a new ETag; test either stage; publish with `If-Match` → `LIVE`,
//! which is what listeners serve; delete when no listener uses it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_edge::{Reloader, compile_record, new_function_etag, record_limits};
use tollgate_function::{CertSource, ConnectionInfo};
use tollgate_state::{FunctionRecord, Stage, State};

use crate::http_io::{ApiError, if_match, json_response, json_with_etag, parse_json, query_pairs};

type Reply = Result<Response<Full<Bytes>>, ApiError>;

fn state(reloader: &Reloader) -> Result<Arc<State>, ApiError> {
    reloader.state().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "NoState",
            "functions through the API need [state] dir in the configuration",
        )
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string())
}

fn rfc3339_ms(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn record_json(reloader: &Reloader, r: &FunctionRecord) -> Value {
    let limits = record_limits(r);
    let listeners = if r.stage == Stage::Live {
        reloader.listeners_using(&r.name)
    } else {
        Vec::new()
    };
    json!({
        "Name": r.name,
        "Stage": r.stage.as_str(),
        "ETag": r.etag,
        "Sha256": r.sha256,
        "Size": r.size,
        "Created": rfc3339_ms(r.created_ms),
        "LastModified": rfc3339_ms(r.modified_ms),
        "Limits": { "TimeLimitMicros": limits.time_us, "MemoryBytes": limits.memory_bytes },
        "KeyValueStores": r.kvs,
        "Comment": r.comment,
        "Listeners": listeners,
    })
}

fn stage_param(query: &str) -> Result<Stage, ApiError> {
    let mut stage = Stage::Development;
    for (_, value) in query_pairs(query, &["Stage"])? {
        stage = Stage::parse(&value)
            .ok_or_else(|| ApiError::bad_request("Stage must be DEVELOPMENT or LIVE"))?;
    }
    Ok(stage)
}

fn find(state: &State, name: &str, stage: Stage) -> Result<FunctionRecord, ApiError> {
    state
        .function(name, stage)
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!("no function {name:?} in stage {}", stage.as_str()))
        })
}

fn precondition(given: &str, current: &str) -> Result<(), ApiError> {
    if given == current {
        return Ok(());
    }
    Err(ApiError {
        etag: Some(current.to_owned()),
        ..ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            format!("If-Match {given:?} is not the current ETag {current:?}"),
        )
    })
}

fn count(result: &str) {
    tollgate_metrics::metrics()
        .reloads
        .with(&["function", result])
        .inc();
}

/// `GET /functions`: every stage of every function.
pub fn list(reloader: &Reloader) -> Reply {
    let state = state(reloader)?;
    let records = state.functions().map_err(internal)?;
    let list: Vec<Value> = records.iter().map(|r| record_json(reloader, r)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "Functions": list })))
}

/// `GET /functions/{name}?Stage=DEVELOPMENT|LIVE` (default DEVELOPMENT).
pub fn describe(reloader: &Reloader, name: &str, query: &str) -> Reply {
    let stage = stage_param(query)?;
    let state = state(reloader)?;
    let record = find(&state, name, stage)?;
    Ok(json_with_etag(
        StatusCode::OK,
        &record_json(reloader, &record),
        &record.etag,
    ))
}

/// Settings a create or update may carry in its query string.
#[derive(Default)]
struct Settings {
    kvs: Option<Vec<String>>,
    time_limit_us: Option<u64>,
    memory_limit_bytes: Option<u64>,
    comment: Option<String>,
}

fn settings(query: &str) -> Result<Settings, ApiError> {
    let mut s = Settings::default();
    let known = ["KeyValueStores", "TimeLimit", "MemoryLimit", "Comment"];
    for (name, v) in query_pairs(query, &known)? {
        match name {
            "KeyValueStores" => {
                s.kvs = Some(
                    v.split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "TimeLimit" => {
                let d = tollgate_config::parse_duration(&v)
                    .map_err(|e| ApiError::bad_request(format!("TimeLimit: {e}")))?;
                if d.is_zero() {
                    return Err(ApiError::bad_request("TimeLimit must be more than zero"));
                }
                s.time_limit_us = Some(d.as_micros() as u64);
            }
            "MemoryLimit" => {
                s.memory_limit_bytes =
                    Some(v.parse().map_err(|_| {
                        ApiError::bad_request("MemoryLimit must be a number of bytes")
                    })?)
            }
            _ => s.comment = Some(v),
        }
    }
    Ok(s)
}

/// `PUT /functions/{name}` with the component as `application/wasm`:
/// creates the function or replaces its DEVELOPMENT code (then `If-Match`
/// is the DEVELOPMENT ETag). The code is compiled, linked and
/// test-instantiated first; a component that does not load is refused.
pub async fn put(
    reloader: &Reloader,
    name: &str,
    query: &str,
    headers: &HeaderMap,
    code: Bytes,
) -> Reply {
    let state = state(reloader)?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(
            "a function name is 1 to 64 of A-Z a-z 0-9 - _",
        ));
    }
    let settings = settings(query)?;
    // From the If-Match check to the commit: two uploads with the same ETag
    // must not both succeed, nor an upload revive a function being deleted.
    let _held = reloader.change_lock().await;
    let existing = state.function(name, Stage::Development).map_err(internal)?;
    match (&existing, headers.contains_key(http::header::IF_MATCH)) {
        (Some(current), _) => precondition(&if_match(headers)?, &current.etag)?,
        (None, true) => {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                format!("no function {name:?} to match; create it without If-Match"),
            ));
        }
        (None, false) => {}
    }
    let now = now_ms();
    let base = existing.clone();
    let record = FunctionRecord {
        name: name.to_owned(),
        stage: Stage::Development,
        etag: new_function_etag(),
        sha256: String::new(),
        size: code.len() as u64,
        created_ms: base.as_ref().map_or(now, |b| b.created_ms),
        modified_ms: now,
        time_limit_us: settings
            .time_limit_us
            .or(base.as_ref().and_then(|b| b.time_limit_us)),
        memory_limit_bytes: settings
            .memory_limit_bytes
            .or(base.as_ref().and_then(|b| b.memory_limit_bytes)),
        kvs: settings
            .kvs
            .or(base.as_ref().map(|b| b.kvs.clone()))
            .unwrap_or_default(),
        comment: settings
            .comment
            .or(base.map(|b| b.comment))
            .unwrap_or_default(),
    };
    let stores = reloader.stores();
    let missing: Vec<&str> = record
        .kvs
        .iter()
        .filter(|s| stores.get(s).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        count("failed");
        return Err(ApiError::bad_request(format!(
            "no store named {} (configure it under [kvs])",
            missing.join(", ")
        )));
    }
    let runtime = reloader.runtime();
    let loaded = runtime
        .load(tollgate_function::FunctionSpec {
            name,
            wasm: &code,
            limits: record_limits(&record),
            stores: tollgate_function::StoreSet::new(
                record.kvs.iter().filter_map(|s| stores.get(s)),
            ),
        })
        .await;
    let function = match loaded {
        Ok(f) => f,
        Err(e) => {
            count("failed");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidFunction",
                format!("the component was not accepted: {e}"),
            ));
        }
    };
    let record = FunctionRecord {
        sha256: function.sha256().to_owned(),
        ..record
    };
    let commit_state = state.clone();
    let commit_record = record.clone();
    tokio::task::spawn_blocking(move || {
        commit_state.put_functions(&[&commit_record], Some((&commit_record.sha256, &code)))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    count("ok");
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_with_etag(
        status,
        &record_json(reloader, &record),
        &record.etag,
    ))
}

/// `POST /functions/{name}/publish` with `If-Match: <DEVELOPMENT ETag>`:
/// the DEVELOPMENT version becomes LIVE and every listener naming the
/// function serves it to connections accepted from now on.
pub async fn publish(reloader: &Reloader, name: &str, headers: &HeaderMap) -> Reply {
    let state = state(reloader)?;
    let given = if_match(headers)?;
    let held = reloader.change_lock().await;
    let dev = find(&state, name, Stage::Development)?;
    precondition(&given, &dev.etag)?;
    let live = FunctionRecord {
        stage: Stage::Live,
        etag: new_function_etag(),
        modified_ms: now_ms(),
        ..dev
    };
    let function =
        match compile_record(&state, &reloader.runtime(), &reloader.stores(), &live).await {
            Ok(f) => f,
            Err(e) => {
                count("failed");
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "PublishFailed",
                    format!("the DEVELOPMENT version cannot be served: {e}"),
                ));
            }
        };
    let commit_state = state.clone();
    let commit_record = live.clone();
    tokio::task::spawn_blocking(move || commit_state.put_functions(&[&commit_record], None))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let listeners = reloader.swap_function(&held, &function);
    drop(held);
    count("ok");
    tracing::info!(function = %name, etag = %live.etag, ?listeners, "function published");
    Ok(json_with_etag(
        StatusCode::OK,
        &record_json(reloader, &live),
        &live.etag,
    ))
}

/// `DELETE /functions/{name}` with `If-Match: <DEVELOPMENT ETag>` (the LIVE
/// one when there is no DEVELOPMENT version): refused (409) while a
/// listener uses the function.
pub async fn delete(reloader: &Reloader, name: &str, headers: &HeaderMap) -> Reply {
    let state = state(reloader)?;
    let given = if_match(headers)?;
    let held = reloader.change_lock().await;
    let current = match state.function(name, Stage::Development).map_err(internal)? {
        Some(r) => r,
        None => find(&state, name, Stage::Live)?,
    };
    precondition(&given, &current.etag)?;
    let using = reloader.listeners_using(name);
    if !using.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "FunctionInUse",
            format!(
                "listeners {} use {name:?}; point them elsewhere first",
                using.join(", ")
            ),
        ));
    }
    let name_owned = name.to_owned();
    tokio::task::spawn_blocking(move || state.delete_function(&name_owned))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    drop(held);
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    /// A connection object (the JSON form `tollgate test --connection` reads).
    #[serde(rename = "Connection")]
    connection: Option<Value>,
    /// Or: a client certificate chain in PEM (leaf first) ...
    #[serde(rename = "CertificatePem")]
    certificate_pem: Option<String>,
    /// ... and the client's IP address.
    #[serde(rename = "ClientIp")]
    client_ip: Option<IpAddr>,
    #[serde(rename = "Sni")]
    sni: Option<String>,
}

/// `POST /functions/{name}/test?Stage=DEVELOPMENT|LIVE`: runs that version
/// on a connection against the live stores; the answer is what
/// `tollgate test --json` prints.
pub async fn test(reloader: &Reloader, name: &str, query: &str, body: &[u8]) -> Reply {
    let state = state(reloader)?;
    let stage = stage_param(query)?;
    let TestBody {
        connection,
        certificate_pem,
        client_ip,
        sni,
    } = parse_json(body)?;
    let conn = match (connection, certificate_pem) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either Connection or CertificatePem, not both",
            ));
        }
        (Some(c), None) => {
            if client_ip.is_some() || sni.is_some() {
                return Err(ApiError::bad_request(
                    "ClientIp and Sni go with CertificatePem; a Connection carries its own",
                ));
            }
            let raw = serde_json::to_vec(&c).map_err(internal)?;
            ConnectionInfo::from_json(&raw)
                .map_err(|e| ApiError::bad_request(format!("Connection: {e}")))?
        }
        (None, pem) => {
            let mut conn = ConnectionInfo::for_test();
            if let Some(pem) = pem {
                let ders = tollgate_x509::pem::parse_certificates(pem.as_bytes())
                    .map_err(|e| ApiError::bad_request(format!("CertificatePem: {e}")))?;
                if ders.is_empty() {
                    return Err(ApiError::bad_request("CertificatePem: no certificate"));
                }
                for der in &ders {
                    tollgate_x509::CertInfo::parse(der)
                        .map_err(|e| ApiError::bad_request(format!("CertificatePem: {e}")))?;
                }
                conn.chain = ders.into_iter().map(CertSource::Der).collect();
            }
            if let Some(ip) = client_ip {
                conn.client = SocketAddr::new(ip, conn.client.port());
            }
            conn.sni = sni;
            conn
        }
    };
    let record = find(&state, name, stage)?;
    let function = compile_record(&state, &reloader.runtime(), &reloader.stores(), &record)
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "InvalidFunction", e))?;
    let outcome = function.run(Arc::new(conn)).await;
    Ok(json_response(StatusCode::OK, &outcome))
}
