//! Reports every field of the connection, and what it can read from the
//! store `data`, as `key=value` console lines, so host tests can check each
//! accessor end to end. Writes one line to stdout and one to stderr too.

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(inspect);

fn cert_lines(prefix: &str, cert: &Certificate) {
    let line = |k: &str, v: String| console::info(&format!("{prefix}.{k}={v}"));
    line("serial", cert.serial_number());
    line("serial_hex", cert.serial_hex());
    line("subject", cert.subject());
    line("issuer", cert.issuer());
    line("cn", format!("{:?}", cert.common_name()));
    line("o", format!("{:?}", cert.organizations()));
    line("ou", format!("{:?}", cert.organizational_units()));
    line("issuer_cn", format!("{:?}", cert.issuer_attribute("cn")));
    let attrs: Vec<String> = cert
        .subject_attributes()
        .into_iter()
        .map(|a| format!("{}({})={}", a.name, a.oid, a.value))
        .collect();
    line("subject_attributes", attrs.join(";"));
    let v = cert.validity();
    line(
        "validity",
        format!(
            "{} {} {} {}",
            v.not_before, v.not_after, v.not_before_unix, v.not_after_unix
        ),
    );
    line("sha256", cert.sha256_fingerprint());
    line("sans", format!("{:?}", cert.subject_alt_names()));
    line("uris", format!("{:?}", cert.uris()));
    line("dns", format!("{:?}", cert.dns_names()));
    line(
        "key_usage",
        format!("{:?}", cert.key_usage().map(|k| k.bits())),
    );
    line("eku", format!("{:?}", cert.extended_key_usage()));
    line("der_len", cert.der().len().to_string());
}

fn inspect(conn: &Connection) -> Result<Decision> {
    let line = |k: &str, v: String| console::info(&format!("{k}={v}"));
    line("id", conn.id());
    line(
        "client",
        format!("{}:{}", conn.client_ip(), conn.client_port()),
    );
    line(
        "server",
        format!("{}:{}", conn.server_ip(), conn.server_port()),
    );
    line("sni", format!("{:?}", conn.sni()));
    line("alpn", format!("{:?}", conn.alpn()));
    line("tls_version", conn.tls_version());
    line("cipher", conn.cipher_suite());
    line("listener", conn.listener());
    line(
        "handshake_us",
        conn.handshake_duration().as_micros().to_string(),
    );
    line("expiry_ignored", conn.expiry_ignored().to_string());
    line(
        "client_serial_hex",
        format!("{:?}", conn.client_serial_hex()),
    );
    match conn.client_certificate() {
        Some(leaf) => cert_lines("leaf", &leaf),
        None => line("leaf", "none".into()),
    }
    let intermediates = conn.intermediates();
    line("intermediates", intermediates.len().to_string());
    for (i, cert) in intermediates.iter().enumerate() {
        cert_lines(&format!("int{i}"), cert);
    }
    match Kvs::open("data") {
        Ok(store) => {
            line("kvs.get.k", format!("{:?}", store.get("k")?));
            line("kvs.get.missing", format!("{:?}", store.get("missing")?));
            line("kvs.bytes.k", format!("{:?}", store.get_bytes("k")));
            line("kvs.exists.k", store.exists("k").to_string());
            line("kvs.exists.missing", store.exists("missing").to_string());
            let json: Option<Vec<u32>> = store.get_json("json").unwrap_or(None);
            line("kvs.json", format!("{json:?}"));
            let m = store.meta();
            line(
                "kvs.meta",
                format!("{} {} {}", m.key_count, m.total_size_bytes, m.etag),
            );
        }
        Err(e) => line("kvs", e.to_string()),
    }
    line(
        "kvs.exists_in.k",
        format!("{:?}", Kvs::exists_in("data", "k")),
    );
    line(
        "kvs.exists_in.missing",
        format!("{:?}", Kvs::exists_in("data", "missing")),
    );
    line(
        "kvs.exists_in.nostore",
        match Kvs::exists_in("nostore", "k") {
            Ok(found) => found.to_string(),
            Err(e) => e.to_string(),
        },
    );
    println!("hello from stdout");
    eprintln!("hello from stderr");
    let custom = Kvs::open("data")
        .ok()
        .and_then(|store| store.get("custom").ok().flatten())
        .unwrap_or_else(|| {
            if conn.expiry_ignored() {
                "inspected expiry-ignored".to_owned()
            } else {
                "inspected".to_owned()
            }
        });
    log_custom_data(&custom);
    Ok(Decision::Allow)
}
