use serde::Serialize;
use time::OffsetDateTime;

/// One connection attempt. Field names are CloudFront's connection-log names
/// (reference §5), plus `serverPort`, `listener`, the function's duration and
/// compute utilisation, and `reason` (why a connection failed, in words).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecord {
    pub event_timestamp: String,
    pub connection_id: String,
    /// `Success` or `Failed:<Code>`.
    pub connection_status: String,
    pub client_ip: String,
    pub client_port: u16,
    pub server_ip: String,
    pub server_port: u16,
    pub listener: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// Milliseconds, from the first byte accepted to the end of the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_leaf_cert_serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_leaf_cert_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_leaf_cert_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_leaf_cert_validity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_log_custom_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// Milliseconds spent in the connection function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_duration: Option<f64>,
    /// 0–100: the function's CPU time as a share of its time limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_compute_utilization: Option<u32>,
    /// The function's outcome was replayed from an earlier call that got
    /// the same answers (it did not run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub function_replayed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expiry_ignored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One HTTP request on an allowed connection.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRecord {
    pub timestamp: String,
    pub connection_id: String,
    pub listener: String,
    pub client_ip: String,
    pub protocol: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// Milliseconds from the request head received to the response body's
    /// last byte sent (or the exchange ending early).
    pub duration: f64,
    /// The origin's status, absent when the origin was not reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_status: Option<u16>,
    /// Milliseconds the origin took to answer (response head).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-11-22T15:43:11.123Z`).
pub fn timestamp_now() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

/// RFC 3339 UTC with exactly three fraction digits (`.100`, never `.1`), so
/// that records sort as text in time order.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    fn datetime(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8, ms: u16) -> OffsetDateTime {
        let date =
            time::Date::from_calendar_date(y, time::Month::try_from(mo).unwrap(), d).unwrap();
        let time = time::Time::from_hms_milli(h, mi, s, ms).unwrap();
        time::PrimitiveDateTime::new(date, time).assume_utc()
    }

    #[test]
    fn connection_record_uses_cloudfront_names() {
        let record = ConnectionRecord {
            connection_id: "abc".into(),
            connection_status: "Failed:ClientCertExpired".into(),
            tls_handshake_duration: Some(1.5),
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        for key in [
            "eventTimestamp",
            "connectionId",
            "connectionStatus",
            "clientIp",
            "clientPort",
            "serverIp",
            "serverPort",
            "tlsHandshakeDuration",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert!(json.get("expiryIgnored").is_none());
        assert!(json.get("tlsSni").is_none());
    }

    #[test]
    fn timestamps_are_rfc3339_with_three_fraction_digits() {
        let ts = timestamp_now();
        assert!(OffsetDateTime::parse(&ts, &Rfc3339).is_ok(), "{ts}");
        assert_eq!(ts.rsplit('.').next().unwrap().len(), 4, "{ts}");
        let at = |ms: u16| {
            let t = datetime(2026, 1, 2, 3, 4, 5, ms);
            format_timestamp(t)
        };
        assert_eq!(at(0), "2026-01-02T03:04:05.000Z");
        assert_eq!(at(700), "2026-01-02T03:04:05.700Z");
        assert_eq!(at(120), "2026-01-02T03:04:05.120Z");
        assert_eq!(at(7), "2026-01-02T03:04:05.007Z");
        // Another offset is converted to UTC.
        let plus_two = datetime(2026, 1, 2, 3, 4, 5, 999)
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(format_timestamp(plus_two), "2026-01-02T03:04:05.999Z");
        // And they sort as text in time order.
        assert!(at(700) < at(710));
    }
}
