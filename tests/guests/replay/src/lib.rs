//! Asks every question of the connection and of the store `data` that a
//! replay asks again (docs/function-runtime.md, "Replay"), and reports the
//! answers as console lines; the custom data and the decision follow from
//! them. The value of `data`'s key `also` makes it ask one question more
//! that a replay cannot ask (`port`, `id`, `certificate`, `meta`, `clock`,
//! `random`, `stdout`), or take a path of its own (`deny`, `error`), so
//! host tests can check what is and is not replayed.

use std::hash::BuildHasher;

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(ask);

fn ask(conn: &Connection) -> Result<Decision> {
    let line = |k: &str, v: String| console::info(&format!("{k}={v}"));
    line("client_ip", conn.client_ip().to_string());
    line(
        "server",
        format!("{}:{}", conn.server_ip(), conn.server_port()),
    );
    line("sni", format!("{:?}", conn.sni()));
    line("alpn", format!("{:?}", conn.alpn()));
    line(
        "tls",
        format!("{} {}", conn.tls_version(), conn.cipher_suite()),
    );
    line("listener", conn.listener());
    line("expiry_ignored", conn.expiry_ignored().to_string());
    let serial = conn.client_serial_hex();
    line("serial", format!("{serial:?}"));
    line(
        "revoked",
        format!(
            "{:?}",
            Kvs::exists_in("data", serial.as_deref().unwrap_or("-"))
        ),
    );
    line(
        "nostore",
        match Kvs::exists_in("nostore", "k") {
            Ok(found) => found.to_string(),
            Err(e) => e.to_string(),
        },
    );
    let store = Kvs::open("data")?;
    line("get.k", format!("{:?}", store.get("k")?));
    line("bytes.k", format!("{:?}", store.get_bytes("k")));
    line("exists.k", store.exists("k").to_string());
    let also = store.get("also")?.unwrap_or_default();
    match also.as_str() {
        "port" => line("port", conn.client_port().to_string()),
        "id" => line("id", conn.id()),
        "certificate" => line(
            "subject",
            conn.client_certificate()
                .map(|c| c.subject())
                .unwrap_or_default(),
        ),
        "meta" => line("etag", store.meta().etag),
        "clock" => line("now", format!("{:?}", std::time::SystemTime::now())),
        "random" => line(
            "random",
            std::collections::hash_map::RandomState::new()
                .hash_one(1u8)
                .to_string(),
        ),
        "stdout" => println!("hello"),
        "deny" => return Ok(Decision::deny(format!("told to deny {serial:?}"))),
        "error" => return Err("told to fail".into()),
        _ => {}
    }
    log_custom_data(&format!("asked:{}", serial.unwrap_or_default()));
    Ok(Decision::Allow)
}
