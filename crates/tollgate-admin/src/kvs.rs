//! KVS routes (reference §3): describe, list and get keys, and writes that
//! need `If-Match` and return the new ETag.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_edge::Reloader;
use tollgate_kvs::{Snapshot, Store, UpdateError};

use crate::http_io::{ApiError, if_match, json_response, json_with_etag, parse_json, query_pairs};

type Reply = Result<Response<Full<Bytes>>, ApiError>;

/// Keys per page when the caller does not say; the most a page may hold.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn store(reloader: &Reloader, name: &str) -> Result<Arc<Store>, ApiError> {
    reloader
        .stores()
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no store named {name:?}")))
}

fn describe_json(name: &str, snap: &Snapshot) -> Value {
    let meta = snap.meta();
    json!({
        "Name": name,
        "ItemCount": meta.key_count,
        "TotalSizeInBytes": meta.total_size_bytes,
        "ETag": meta.etag,
        "Created": meta.created_rfc3339(),
        "LastModified": meta.last_modified_rfc3339(),
    })
}

/// `GET /kvs`
pub fn list_stores(reloader: &Reloader) -> Reply {
    let stores = reloader.stores();
    let list: Vec<Value> = stores
        .names()
        .filter_map(|n| stores.get(n))
        .map(|s| describe_json(s.name(), &s.snapshot()))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "Stores": list })))
}

/// `GET /kvs/{store}`
pub fn describe(reloader: &Reloader, name: &str) -> Reply {
    let snap = store(reloader, name)?.snapshot();
    Ok(json_with_etag(
        StatusCode::OK,
        &describe_json(name, &snap),
        &snap.meta().etag,
    ))
}

/// `GET /kvs/{store}/keys?MaxResults=N&NextToken=K`
pub fn list_keys(reloader: &Reloader, name: &str, query: &str) -> Reply {
    let snap = store(reloader, name)?.snapshot();
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (name, value) in query_pairs(query, &["MaxResults", "NextToken"])? {
        if name == "NextToken" {
            after = Some(value);
            continue;
        }
        limit = value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("MaxResults must be 1 to {MAX_PAGE}")))?;
    }
    // One more than the page tells whether there is a next page.
    let entries = snap.keys_after(after.as_deref(), limit + 1);
    let more = entries.len() > limit;
    let items: Vec<Value> = entries
        .iter()
        .take(limit)
        .map(|(k, v)| json!({ "Key": k, "Value": String::from_utf8_lossy(v) }))
        .collect();
    let mut body = json!({ "Items": items });
    if more && let Some((last, _)) = entries.get(limit - 1) {
        body["NextToken"] = json!(last);
    }
    Ok(json_with_etag(StatusCode::OK, &body, &snap.meta().etag))
}

/// `GET /kvs/{store}/keys/{key}`
pub fn get_key(reloader: &Reloader, name: &str, key: &str) -> Reply {
    let snap = store(reloader, name)?.snapshot();
    let value = snap
        .get(key)
        .ok_or_else(|| ApiError::not_found(format!("store {name:?} has no key {key:?}")))?;
    let meta = snap.meta();
    let body = json!({
        "Key": key,
        "Value": String::from_utf8_lossy(value),
        "ItemCount": meta.key_count,
        "TotalSizeInBytes": meta.total_size_bytes,
    });
    Ok(json_with_etag(StatusCode::OK, &body, &meta.etag))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Delete {
    #[serde(rename = "Key")]
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(rename = "Puts", default)]
    puts: Vec<Put>,
    #[serde(rename = "Deletes", default)]
    deletes: Vec<Delete>,
}

/// `PUT /kvs/{store}/keys/{key}` with `{"Value": "..."}`
pub async fn put_key(
    reloader: &Reloader,
    name: &str,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let etag = if_match(headers)?;
    let PutBody { value } = parse_json(body)?;
    let store = store(reloader, name)?;
    let puts = vec![(key.to_owned(), value.into_bytes())];
    write(reloader, store, move |s| s.update(&etag, puts, Vec::new())).await
}

/// `DELETE /kvs/{store}/keys/{key}`
pub async fn delete_key(reloader: &Reloader, name: &str, key: &str, headers: &HeaderMap) -> Reply {
    let etag = if_match(headers)?;
    let store = store(reloader, name)?;
    let deletes = vec![key.to_owned()];
    write(reloader, store, move |s| {
        s.update(&etag, Vec::new(), deletes)
    })
    .await
}

/// `POST /kvs/{store}/keys` with `{"Puts": [{"Key", "Value"}], "Deletes": [{"Key"}]}`,
/// all or nothing.
pub async fn update_keys(
    reloader: &Reloader,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let etag = if_match(headers)?;
    let UpdateBody { puts, deletes } = parse_json(body)?;
    if puts.is_empty() && deletes.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to do: Puts and Deletes are both empty",
        ));
    }
    let store = store(reloader, name)?;
    let puts = puts
        .into_iter()
        .map(|p| (p.key, p.value.into_bytes()))
        .collect();
    let deletes = deletes.into_iter().map(|d| d.key).collect();
    write(reloader, store, move |s| s.update(&etag, puts, deletes)).await
}

/// `PUT /kvs/{store}` with an import file: replaces the whole contents.
pub async fn import(reloader: &Reloader, name: &str, headers: &HeaderMap, body: Bytes) -> Reply {
    let etag = if_match(headers)?;
    let store = store(reloader, name)?;
    write(reloader, store, move |s| {
        s.import_json_if_match(&etag, &body)
    })
    .await
}

/// Runs a write off the async threads (it rebuilds the snapshot and waits
/// for the commit), counts it, and answers with the new ETag.
async fn write<F>(reloader: &Reloader, store: Arc<Store>, f: F) -> Reply
where
    F: FnOnce(&Store) -> Result<Arc<Snapshot>, UpdateError> + Send + 'static,
{
    let name = store.name().to_owned();
    // Writes and reloads take turns: a reload that rebuilds this store (its
    // limits changed) must not install a copy read before an acknowledged
    // write. The store is looked up again under the lock.
    let held = reloader.change_lock().await;
    let store = self::store(reloader, &name)?;
    let result = tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                format!("the write task failed: {e}"),
            )
        })?;
    drop(held);
    let reloads = &tollgate_metrics::metrics().reloads;
    match result {
        Ok(snap) => {
            reloads.with(&["kvs", "ok"]).inc();
            let meta = snap.meta();
            tracing::info!(store = %name, etag = %meta.etag, items = meta.key_count, "kvs write committed");
            // Established connections whose function opens this store are
            // re-checked against the new contents, after the answer.
            let recheck = reloader.clone();
            tokio::spawn(async move {
                let closed = recheck.recheck(tollgate_edge::Change::Store(name)).await;
                if closed > 0 {
                    tracing::info!(
                        closed,
                        "kvs write: established connections refused on re-check"
                    );
                }
            });
            let body = json!({
                "ETag": meta.etag,
                "ItemCount": meta.key_count,
                "TotalSizeInBytes": meta.total_size_bytes,
            });
            Ok(json_with_etag(StatusCode::OK, &body, &meta.etag))
        }
        Err(e) => {
            reloads.with(&["kvs", "failed"]).inc();
            Err(update_error(e))
        }
    }
}

fn update_error(e: UpdateError) -> ApiError {
    let message = e.to_string();
    match e {
        UpdateError::PreconditionFailed { current, .. } => ApiError {
            etag: Some(current),
            ..ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                message,
            )
        },
        UpdateError::NoSuchKey(_) => ApiError::not_found(message),
        UpdateError::NotDurable(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NotDurable", message)
        }
        UpdateError::PutAndDelete(_)
        | UpdateError::DuplicatePut(_)
        | UpdateError::DuplicateDelete(_)
        | UpdateError::Invalid { .. }
        | UpdateError::Import(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
        }
    }
}
