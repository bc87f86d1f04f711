//! Requests in, responses out: errors as JSON, bodies read under a limit,
//! `If-Match`, path segments.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

/// A refused call: an HTTP status, a stable code and a message, sent as
/// `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The current ETag, sent with a 412 so the caller can retry.
    pub etag: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            etag: None,
        }
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
            );
        }
        if let Some(etag) = self.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            response.headers_mut().insert(http::header::ETAG, etag);
        }
        response
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON response carrying an `ETag` header.
pub fn json_with_etag(
    status: StatusCode,
    body: &impl Serialize,
    etag: &str,
) -> Response<Full<Bytes>> {
    let mut response = json_response(status, body);
    if let Ok(v) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(http::header::ETAG, v);
    }
    response
}

/// The whole body, or 413 when it is over the limit.
pub async fn read_body(body: Limited<Incoming>) -> Result<Bytes, ApiError> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "the request body is over the admin API's max_body_bytes",
            ))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// A body that must be JSON (`Content-Type: application/json`): 415
/// otherwise, 413 when too large, 400 when not parseable.
pub async fn json_body(headers: &HeaderMap, body: Limited<Incoming>) -> Result<Bytes, ApiError> {
    typed_body(headers, body, "application/json").await
}

/// A body of media type `expected`: 415 otherwise, 413 when too large.
pub async fn typed_body(
    headers: &HeaderMap,
    body: Limited<Incoming>,
    expected: &str,
) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(expected) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body must be {expected}, not {content_type:?}"),
        ));
    }
    read_body(body).await
}

/// Parses a JSON body into `T`, naming what is wrong.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// The `If-Match` header (quotes around the ETag are accepted); 428 when
/// missing.
pub fn if_match(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "PreconditionRequired",
                "this write needs If-Match: <the store's current ETag>",
            )
        })?;
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Ok(unquoted.to_owned())
}

/// Decodes `%XX` escapes of one path segment (the result must be UTF-8).
pub fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::bad_request(format!("bad %-escape in {segment:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request(format!("{segment:?} is not UTF-8 once decoded")))
}

/// The `name=value` pairs of a query string, values percent-decoded; a
/// name not in `known` is a 400 that lists them.
pub fn query_pairs<'q>(query: &'q str, known: &[&str]) -> Result<Vec<(&'q str, String)>, ApiError> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?} ({})",
                known.join(", ")
            )));
        }
        pairs.push((name, percent_decode(value)?));
    }
    Ok(pairs)
}

/// Whether a route pattern (`/kvs/{store}`) matches path segments.
pub fn matches(pattern: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(p, s)| p.starts_with('{') || p == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab").unwrap(), "a:b");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn query_pairs_decode_values_and_refuse_unknown_names() {
        let pairs = query_pairs("A=x%2Cy&B=&&A=2", &["A", "B"]).unwrap();
        assert_eq!(
            pairs,
            [
                ("A", "x,y".to_owned()),
                ("B", String::new()),
                ("A", "2".to_owned())
            ]
        );
        let err = query_pairs("A=1&C=2", &["A", "B"]).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("\"C\" (A, B)"), "{}", err.message);
        assert!(query_pairs("A=%zz", &["A"]).is_err());
    }

    #[test]
    fn route_patterns() {
        assert!(matches("/kvs/{store}", &["kvs", "x"]));
        assert!(!matches("/kvs/{store}", &["kvs", "x", "keys"]));
        assert!(matches(
            "/kvs/{store}/keys/{key}",
            &["kvs", "x", "keys", "k"]
        ));
        assert!(!matches("/status", &["metrics"]));
    }

    #[test]
    fn if_match_accepts_quotes_and_requires_a_value() {
        let mut h = HeaderMap::new();
        assert_eq!(
            if_match(&h).unwrap_err().status,
            StatusCode::PRECONDITION_REQUIRED
        );
        h.insert(
            http::header::IF_MATCH,
            HeaderValue::from_static("\"E2ABC\""),
        );
        assert_eq!(if_match(&h).unwrap(), "E2ABC");
        h.insert(http::header::IF_MATCH, HeaderValue::from_static("E3"));
        assert_eq!(if_match(&h).unwrap(), "E3");
    }
}
