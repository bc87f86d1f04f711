//! The admin API end to end: the real binary with a state directory, real
//! HTTP calls, real mTLS clients whose fate the API changes, `kill -9`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use tollgate_guests as guests;
use tollgate_testkit::{kvs_json, write};

#[test]
fn every_route_refuses_a_missing_or_wrong_token_and_changes_nothing() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let before = api.etag("revoked");
    for (method, pattern) in tollgate_admin::ROUTES {
        let path = pattern
            .replace("{store}", "revoked")
            .replace("{key}", "SEEDED");
        let body = br#"{"Value":"x","Puts":[{"Key":"k","Value":"v"}]}"#;
        for auth in [None, Some("Bearer wrong-token"), Some(TOKEN)] {
            let mut headers = vec![
                ("If-Match", before.as_str()),
                ("Content-Type", "application/json"),
            ];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            let r = http_call(api.addr, method, &path, &headers, body);
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.text());
            assert!(r.header("WWW-Authenticate").is_some());
            assert_eq!(r.json()["error"]["code"], "Unauthorized");
        }
    }
    assert_eq!(api.etag("revoked"), before);
    assert_eq!(
        api.get("/kvs/revoked/keys/SEEDED").json()["Value"],
        "from the file"
    );
}

#[test]
fn kvs_writes_need_the_current_etag_and_bad_bodies_change_nothing() {
    let s = admin_setup();
    let proxy = start(&s, "max_body_bytes = 4096");
    let api = Api::of(&proxy);

    let described = api.get("/kvs/revoked").json();
    assert_eq!(described["ItemCount"], 1);
    assert_eq!(described["Name"], "revoked");
    let etag = described["ETag"].as_str().unwrap().to_owned();

    // Refused writes: each leaves the ETag (and so the contents) as they were.
    let refused: Vec<(HttpReply, u16)> = vec![
        (
            api.call(
                "PUT",
                "/kvs/revoked/keys/A",
                &[("Content-Type", "application/json")],
                br#"{"Value":"1"}"#,
            ),
            428,
        ),
        (
            api.write("PUT", "/kvs/revoked/keys/A", "E1STALE", r#"{"Value":"1"}"#),
            412,
        ),
        (
            api.write("PUT", "/kvs/revoked/keys/A", &etag, r#"{"Value":"#),
            400,
        ),
        (
            api.write("PUT", "/kvs/revoked/keys/A", &etag, r#"{"Value":1}"#),
            400,
        ),
        (
            api.write(
                "PUT",
                "/kvs/revoked/keys/A",
                &etag,
                r#"{"Value":"1","X":2}"#,
            ),
            400,
        ),
        (
            api.call(
                "PUT",
                "/kvs/revoked/keys/A",
                &[("If-Match", &etag), ("Content-Type", "text/plain")],
                br#"{"Value":"1"}"#,
            ),
            415,
        ),
        (
            api.write(
                "PUT",
                "/kvs/revoked/keys/A",
                &etag,
                &format!(r#"{{"Value":"{}"}}"#, "x".repeat(5000)),
            ),
            413,
        ),
        (
            api.write(
                "PUT",
                "/kvs/revoked/keys/A",
                &etag,
                &format!(r#"{{"Value":"{}"}}"#, "x".repeat(2000)),
            ),
            400,
        ),
        (
            api.write("DELETE", "/kvs/revoked/keys/NOPE", &etag, ""),
            404,
        ),
        (
            api.write(
                "POST",
                "/kvs/revoked/keys",
                &etag,
                r#"{"Puts":[{"Key":"B","Value":"2"}],"Deletes":[{"Key":"NOPE"}]}"#,
            ),
            404,
        ),
        (
            api.write(
                "POST",
                "/kvs/revoked/keys",
                &etag,
                r#"{"Puts":[{"Key":"B","Value":"2"}],"Deletes":[{"Key":"B"}]}"#,
            ),
            400,
        ),
        (
            api.write("PUT", "/kvs/revoked", &etag, r#"{"data":[{"key":"x"}]}"#),
            400,
        ),
        (
            api.write("PUT", "/kvs/nosuchstore/keys/A", &etag, r#"{"Value":"1"}"#),
            404,
        ),
        (api.write("PATCH", "/kvs/revoked", &etag, "{}"), 405),
        (api.get("/nowhere"), 404),
    ];
    for (i, (reply, status)) in refused.iter().enumerate() {
        assert_eq!(reply.status, *status, "case {i}: {}", reply.text());
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "case {i}"
        );
    }
    // A 412 tells the current ETag.
    assert_eq!(refused[1].0.header("ETag"), Some(etag.as_str()));
    assert_eq!(api.etag("revoked"), etag);
    assert_eq!(api.get("/kvs/revoked/keys/B").status, 404);

    // Accepted writes: each returns the new ETag.
    let put = api.write("PUT", "/kvs/revoked/keys/A", &etag, r#"{"Value":"1"}"#);
    assert_eq!(put.status, 200, "{}", put.text());
    let etag2 = put.json()["ETag"].as_str().unwrap().to_owned();
    assert_ne!(etag2, etag);
    assert_eq!(put.header("ETag"), Some(etag2.as_str()));
    assert_eq!(put.json()["ItemCount"], 2);
    let got = api.get("/kvs/revoked/keys/A");
    assert_eq!(got.json()["Value"], "1");
    assert_eq!(got.header("ETag"), Some(etag2.as_str()));

    let batch = api.write(
        "POST",
        "/kvs/revoked/keys",
        &etag2,
        r#"{"Puts":[{"Key":"B","Value":"2"},{"Key":"C","Value":"3"}],"Deletes":[{"Key":"SEEDED"}]}"#,
    );
    assert_eq!(batch.status, 200, "{}", batch.text());
    let etag3 = batch.json()["ETag"].as_str().unwrap().to_owned();
    assert_eq!(batch.json()["ItemCount"], 3);

    // Paged listing in key order.
    let page = api.get("/kvs/revoked/keys?MaxResults=2").json();
    let keys: Vec<&str> = page["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["A", "B"]);
    let next = page["NextToken"].as_str().unwrap();
    let page2 = api
        .get(&format!("/kvs/revoked/keys?MaxResults=2&NextToken={next}"))
        .json();
    assert_eq!(page2["Items"][0]["Key"], "C");
    assert!(page2.get("NextToken").is_none());
    assert_eq!(api.get("/kvs/revoked/keys?MaxResults=0").status, 400);

    let deleted = api.write("DELETE", "/kvs/revoked/keys/A", &etag3, "");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let etag4 = deleted.json()["ETag"].as_str().unwrap().to_owned();

    // A whole-store import replaces everything.
    let imported = api.write("PUT", "/kvs/revoked", &etag4, &kvs_json([("Z", "26")]));
    assert_eq!(imported.status, 200, "{}", imported.text());
    let all = api.get("/kvs/revoked/keys").json();
    assert_eq!(all["Items"].as_array().unwrap().len(), 1);
    assert_eq!(all["Items"][0]["Key"], "Z");
    let stores = api.get("/kvs").json();
    let names: Vec<&str> = stores["Stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["allowed", "revoked"]);
    assert_eq!(stores["Stores"][1]["ItemCount"], 1);
}

#[test]
fn a_serial_revoked_through_the_api_is_refused_on_the_next_connection() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let laptop = s.pki.client("laptop.example");
    request(proxy.addr, client(&s, &laptop), "/", &[]).ok_json();

    // The client is ready before the write, so that its connection starts
    // right after the acknowledgement.
    let laptop_config = client(&s, &laptop);
    let etag = api.etag("revoked");
    let path = format!("/kvs/revoked/keys/{}", serial(&laptop));
    let put = api.write("PUT", &path, &etag, r#"{"Value":"stolen"}"#);
    assert_eq!(put.status, 200, "{}", put.text());
    let acknowledged = Instant::now();
    let seen = request(proxy.addr, laptop_config, "/", &[]);
    eprintln!(
        "refused {:?} after the acknowledgement",
        acknowledged.elapsed()
    );
    // The first connection after the acknowledgement is refused: the change
    // is in effect before the API answers.
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    let record = proxy.connection(2);
    assert_eq!(
        record["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    assert_eq!(
        record["connectionLogCustomData"],
        format!("REVOKED:{}", serial(&laptop))
    );
    // Another client is unaffected; un-revoking admits the laptop again.
    request(
        proxy.addr,
        client(&s, &s.pki.client("desk.example")),
        "/",
        &[],
    )
    .ok_json();
    let etag = api.etag("revoked");
    assert_eq!(api.write("DELETE", &path, &etag, "").status, 200);
    request(proxy.addr, client(&s, &laptop), "/", &[]).ok_json();
    assert_eq!(s.origin.requests(), 3);
}

#[test]
fn acknowledged_writes_survive_kill_9_and_the_state_owns_the_store() {
    let s = admin_setup();
    let mut acknowledged = Vec::new();
    let mut last_etag = String::new();
    for round in 0..4 {
        let proxy = start(&s, "");
        let api = Api::of(&proxy);
        // Everything acknowledged before the last crash is there.
        for key in &acknowledged {
            let r = api.get(&format!("/kvs/revoked/keys/{key}"));
            assert_eq!(r.status, 200, "round {round}, key {key}: {}", r.text());
        }
        if round > 0 {
            assert_eq!(api.etag("revoked"), last_etag, "round {round}");
        }
        // The seed file is read once: changing it now changes nothing.
        write(s.path(), "revoked.json", kvs_json([("FROM_FILE", "x")]));
        assert_eq!(api.get("/kvs/revoked/keys/FROM_FILE").status, 404);
        for i in 0..3 {
            let key = format!("K{round}_{i}");
            let etag = api.etag("revoked");
            let r = api.write(
                "PUT",
                &format!("/kvs/revoked/keys/{key}"),
                &etag,
                r#"{"Value":"v"}"#,
            );
            assert_eq!(r.status, 200, "{}", r.text());
            last_etag = r.json()["ETag"].as_str().unwrap().to_owned();
            acknowledged.push(key);
        }
        // Crash right after the last acknowledgement.
        proxy.kill9();
    }
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let items = api.get("/kvs/revoked/keys?MaxResults=1000").json();
    let keys: Vec<&str> = items["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Key"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
    expected.push("SEEDED");
    expected.sort();
    assert_eq!(keys, expected);
}

#[test]
fn metrics_follow_connections_denials_and_writes() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let good = s.pki.client("good.example");
    let bad = s.pki.client("bad.example");
    request(proxy.addr, client(&s, &good), "/", &[]).ok_json();
    // The good client again: same answers, so the first call is replayed.
    request(proxy.addr, client(&s, &good), "/", &[]).ok_json();
    let etag = api.etag("revoked");
    let put = api.write(
        "PUT",
        &format!("/kvs/revoked/keys/{}", serial(&bad)),
        &etag,
        r#"{"Value":"x"}"#,
    );
    assert_eq!(put.status, 200);
    assert_eq!(
        api.write("PUT", "/kvs/revoked/keys/Q", "stale", r#"{"Value":"x"}"#)
            .status,
        412
    );
    let seen = request(proxy.addr, client(&s, &bad), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)));
    proxy.connections(3);

    let scrape = api.get("/metrics");
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = scrape.text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value("tollgate_connections_total{listener=\"e2e\",status=\"Success\"}"),
        2.0
    );
    assert_eq!(
        value("tollgate_connections_total{listener=\"e2e\",status=\"ConnectionFunctionDenied\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_function_denies_total{function=\"revocation\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_function_duration_seconds_count{function=\"revocation\"}"),
        3.0
    );
    assert_eq!(
        value("tollgate_function_replays_total{function=\"revocation\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_handshake_duration_seconds_count{listener=\"e2e\"}"),
        3.0
    );
    assert_eq!(
        value("tollgate_origin_responses_total{listener=\"e2e\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        value("tollgate_reloads_total{what=\"kvs\",result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_reloads_total{what=\"kvs\",result=\"failed\"}"),
        1.0
    );
    assert_eq!(value("tollgate_kvs_items{store=\"revoked\"}"), 2.0);
    assert!(value("tollgate_kvs_size_bytes{store=\"revoked\"}") > 0.0);
    assert!(text.contains("tollgate_log_lines_dropped_total{sink="));
    // The connections are over: the gauge comes back to zero (a refused
    // connection's task ends just after its log line).
    api.wait_for_metric("tollgate_active_connections{listener=\"e2e\"} 0");
}

#[test]
fn reload_through_the_api_refuses_a_broken_config_and_keeps_serving() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let client = client(&s, &s.pki.client("c.example"));
    let config = std::fs::read_to_string(s.path().join("tollgate.toml")).unwrap();

    write(
        s.path(),
        "tollgate.toml",
        config.replace("trust.pem", "missing.pem"),
    );
    let r = api.call("POST", "/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing.pem")
    );
    request(proxy.addr, client.clone(), "/", &[]).ok_json();

    write(s.path(), "tollgate.toml", &config);
    let r = api.call("POST", "/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    request(proxy.addr, client, "/", &[]).ok_json();

    let status = api.get("/status").json();
    let listener = &status["listeners"][0];
    assert_eq!(listener["name"], "e2e");
    assert_eq!(listener["mtlsMode"], "required");
    assert_eq!(listener["trustStore"]["caCount"], 1);
    assert_eq!(listener["function"]["name"], "revocation");
    assert!(listener["certificates"][0]["notAfter"].as_str().is_some());
    assert_eq!(status["stores"][1]["name"], "revoked");
    assert_eq!(status["stores"][1]["itemCount"], 1);
    let metrics = api.get("/metrics").text();
    assert!(metrics.contains("tollgate_reloads_total{what=\"config\",result=\"failed\"} 1"));
    assert!(metrics.contains("tollgate_reloads_total{what=\"config\",result=\"ok\"} 1"));
}

/// A reload that is refused writes nothing to the state: a new store is not
/// seeded from its import file, a new function is not recorded. Both are
/// seeded by the reload that succeeds, from the files as they are then.
#[test]
fn a_refused_reload_seeds_nothing_into_the_state() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let config = std::fs::read_to_string(s.path().join("tollgate.toml")).unwrap();
    write(s.path(), "later.json", kvs_json([("FIRST", "1")]));
    let grown = format!(
        "{config}\n[kvs.later]\nimport = \"later.json\"\n\n[functions.spare]\nwasm = \"revocation.wasm\"\nkvs = [\"later\"]\n"
    );

    write(
        s.path(),
        "tollgate.toml",
        grown.replace("trust.pem", "missing.pem"),
    );
    let r = api.call("POST", "/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(api.get("/kvs/later").status, 404);
    assert_eq!(api.get("/functions/spare").status, 404);

    write(s.path(), "later.json", kvs_json([("SECOND", "2")]));
    write(s.path(), "tollgate.toml", &grown);
    let r = api.call("POST", "/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(api.get("/kvs/later/keys/SECOND").status, 200);
    assert_eq!(api.get("/kvs/later/keys/FIRST").status, 404);
    assert_eq!(api.get("/functions/spare?Stage=LIVE").status, 200);

    // Seeded durably: a restart reads them back from the state.
    drop(proxy);
    write(s.path(), "later.json", kvs_json([("THIRD", "3")]));
    // (Proxy::start writes its own [logs] section before the rest.)
    let (_logs, body) = grown.split_once("\n\n").unwrap();
    let proxy = Proxy::start(s.path(), body);
    let api = Api::of(&proxy);
    assert_eq!(api.get("/kvs/later/keys/SECOND").status, 200);
    assert_eq!(api.get("/kvs/later/keys/THIRD").status, 404);
}

/// Two uploads with the same If-Match at once: one wins, the other is told
/// its ETag is stale (no lost update); two creations at once: one is created.
#[test]
fn concurrent_uploads_do_not_lose_an_update() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let addr = Api::of(&proxy).addr;
    let race = |etag: Option<String>| {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let uploads: Vec<_> = (0..2)
            .map(|_| {
                let (barrier, etag) = (barrier.clone(), etag.clone());
                std::thread::spawn(move || {
                    let api = Api { addr };
                    barrier.wait();
                    api.upload("/functions/raced", etag.as_deref(), guests::REVOCATION_WASM)
                        .status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = uploads.into_iter().map(|t| t.join().unwrap()).collect();
        statuses.sort();
        statuses
    };
    // The loser finds a function to update and no If-Match: 428.
    assert_eq!(race(None), vec![201, 428]);
    let api = Api::of(&proxy);
    let etag = api.get("/functions/raced").json()["ETag"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(race(Some(etag)), vec![200, 412]);
}

#[test]
fn check_refuses_an_admin_api_without_a_token_or_off_loopback_without_tls() {
    let s = admin_setup();
    let base = config_for(s.origin.addr, REQUIRED, &extra(""));
    let cases = [
        (
            base.replace(
                "address = \"127.0.0.1:0\"\ntoken_file",
                "address = \"0.0.0.0:9901\"\ntoken_file",
            ),
            "not a loopback address",
        ),
        (
            base.replace("token_file = \"admin.token\"", ""),
            "token_file or token_env",
        ),
        (
            base.replace("[state]\ndir = \"state\"", ""),
            "needs [state] dir",
        ),
    ];
    for (config, expected) in cases {
        let path = write(s.path(), "check.toml", &config);
        let out = check_config(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}");
        assert!(stdout.contains(expected), "{expected:?} not in\n{stdout}");
    }
    // A short token is refused too.
    write(s.path(), "admin.token", "short");
    let path = write(s.path(), "check.toml", &base);
    let out = check_config(&path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("at least 16"));
}

/// A token file other users can read is a warning (check and serve), not an
/// error; `chmod 600` makes it go away.
#[cfg(unix)]
#[test]
fn a_token_file_readable_by_others_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let s = admin_setup();
    let token = s.path().join("admin.token");
    let base = config_for(s.origin.addr, REQUIRED, &extra(""));
    let path = write(s.path(), "check.toml", &base);
    let check = || {
        let out = check_config(&path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check();
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("warning:")
            && l.contains("readable by group or others")
            && l.contains("admin.token")),
        "{out}"
    );
    let proxy = start(&s, "");
    proxy.wait_for_stderr("readable by group or others");
    drop(proxy);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!check().contains("readable by group or others"));
}

#[test]
fn the_documented_revocation_example_works() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let laptop = s.pki.client("laptop.example");
    let stdout = run_doc_block(&s, "Revoking a serial", |script| {
        script
            .replace("127.0.0.1:9901", &api.addr.to_string())
            .replace("4a3f5c92d1e87b6c", &serial(&laptop))
            // The answer's status line and headers too, should it fail.
            .replace("curl -s -X PUT", "curl -s -i -X PUT")
    });
    assert!(
        stdout.starts_with("HTTP/1.1 200") && stdout.contains("\"ETag\""),
        "{stdout}\nthe store now: {}\nproxy stderr:\n{}",
        api.get("/kvs/revoked").text(),
        proxy.stderr()
    );
    let seen = request(proxy.addr, client(&s, &laptop), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    assert_eq!(
        proxy.connection(1)["connectionLogCustomData"],
        "REVOKED:".to_owned() + &serial(&laptop)
    );
}

#[test]
fn functions_go_from_development_to_live_without_dropping_connections() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let valid = s.pki.client("valid.example");

    // Seeded from the config: both stages, LIVE serving the listener.
    let listed = api.get("/functions").json();
    let records = listed["Functions"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{listed}");
    let live = api.get("/functions/revocation?Stage=LIVE").json();
    assert_eq!(live["Listeners"], serde_json::json!(["e2e"]));
    assert_eq!(live["KeyValueStores"], serde_json::json!(["revoked"]));
    let dev_etag = api.get("/functions/revocation").json()["ETag"]
        .as_str()
        .unwrap()
        .to_owned();

    // Updates of DEVELOPMENT: If-Match required; bad code refused; nothing changes.
    let path = "/functions/revocation?KeyValueStores=allowed";
    let v2 = guests::SUBJECT_ALLOWLIST_WASM;
    assert_eq!(api.upload(path, None, v2).status, 428);
    assert_eq!(api.upload(path, Some("F0"), v2).status, 412);
    let oversize = vec![0u8; 5 << 20];
    for bad in [&b"\0asm garbage"[..], guests::WRONG_WORLD_WASM, &oversize] {
        let r = api.upload(path, Some(&dev_etag), bad);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "InvalidFunction");
    }
    let r = api.upload(path, Some(&dev_etag), &oversize);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4194304"),
        "{}",
        r.text()
    );
    let r = api.call(
        "PUT",
        path,
        &[
            ("If-Match", &dev_etag),
            ("Content-Type", "application/json"),
        ],
        v2,
    );
    assert_eq!(r.status, 415);
    let r = api.upload(
        "/functions/revocation?KeyValueStores=nope",
        Some(&dev_etag),
        v2,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(api.get("/functions/revocation").json()["ETag"], dev_etag);

    let updated = api.upload(path, Some(&dev_etag), v2);
    assert_eq!(updated.status, 200, "{}", updated.text());
    let dev_etag = updated.json()["ETag"].as_str().unwrap().to_owned();
    assert_eq!(
        updated.json()["KeyValueStores"],
        serde_json::json!(["allowed"])
    );

    // LIVE still serves the old version.
    request(proxy.addr, client(&s, &valid), "/", &[]).ok_json();

    // Testing each stage against a certificate, as `tollgate test --json` would.
    let pem = serde_json::json!({ "CertificatePem": valid.chain_pem, "ClientIp": "203.0.113.7" });
    let body = pem.to_string();
    let json = [("Content-Type", "application/json")];
    let dev_test = api.call("POST", "/functions/revocation/test", &json, body.as_bytes());
    assert_eq!(dev_test.status, 200, "{}", dev_test.text());
    assert_eq!(dev_test.json()["decision"], "deny");
    let live_test = api
        .call(
            "POST",
            "/functions/revocation/test?Stage=LIVE",
            &json,
            body.as_bytes(),
        )
        .json();
    assert_eq!(live_test["decision"], "allow");
    assert_eq!(live_test["customData"], format!("VALID:{}", serial(&valid)));
    let (cert_path, _) = valid.write(s.path(), "valid");
    let kvs = format!("revoked={}", s.path().join("revoked.json").display());
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["test", "--json", "--kvs", &kvs, "--cert"])
        .arg(&cert_path)
        .arg(s.path().join("revocation.wasm"))
        .output()
        .unwrap();
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&cli), keys(&live_test));
    assert_eq!(cli["decision"], live_test["decision"]);
    assert_eq!(cli["customData"], live_test["customData"]);
    // A connection object instead of a certificate: no certificate → deny.
    let conn = serde_json::json!({
        "Connection": { "connectionId": "c1", "clientIp": "203.0.113.9", "endpoint": "api.example.com" }
    })
    .to_string();
    let by_object = api.call(
        "POST",
        "/functions/revocation/test?Stage=LIVE",
        &json,
        conn.as_bytes(),
    );
    assert_eq!(by_object.status, 200, "{}", by_object.text());
    assert_eq!(by_object.json()["decision"], "deny");
    assert_eq!(by_object.json()["reason"], "no client certificate");
    let bad_object = serde_json::json!({ "Connection": { "clientIpAddress": "x" } }).to_string();
    let r = api.call(
        "POST",
        "/functions/revocation/test",
        &json,
        bad_object.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let bad_test = api.call("POST", "/functions/revocation/test", &json, b"{\"Nope\":1}");
    assert_eq!(bad_test.status, 400);

    // Publish: the next connection runs the new version; an established
    // connection keeps being served.
    let mut kept = Session::open(proxy.addr, client(&s, &valid));
    assert_eq!(kept.get(), 200);
    assert_eq!(
        api.call(
            "POST",
            "/functions/revocation/publish",
            &[("If-Match", "F0")],
            b""
        )
        .status,
        412
    );
    let valid_config = client(&s, &valid);
    let published = api.call(
        "POST",
        "/functions/revocation/publish",
        &[("If-Match", &dev_etag)],
        b"",
    );
    assert_eq!(published.status, 200, "{}", published.text());
    let acknowledged = Instant::now();
    let seen = request(proxy.addr, valid_config, "/", &[]);
    eprintln!(
        "refused {:?} after the acknowledgement",
        acknowledged.elapsed()
    );
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    assert_eq!(
        proxy.connection(3)["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    assert_eq!(kept.get(), 200);
    let live = api.get("/functions/revocation?Stage=LIVE").json();
    assert_eq!(live["Sha256"], updated.json()["Sha256"]);

    // Delete: refused while a listener uses it; a spare one goes.
    let del = api.call(
        "DELETE",
        "/functions/revocation",
        &[("If-Match", &dev_etag)],
        b"",
    );
    assert_eq!(del.status, 409, "{}", del.text());
    let spare = api.upload("/functions/spare", None, guests::REVOCATION_WASM);
    assert_eq!(spare.status, 201, "{}", spare.text());
    let spare_etag = spare.json()["ETag"].as_str().unwrap().to_owned();
    assert_eq!(api.upload("/functions/bad%20name", None, v2).status, 400);
    let del = api.call(
        "DELETE",
        "/functions/spare",
        &[("If-Match", &spare_etag)],
        b"",
    );
    assert_eq!(del.status, 204, "{}", del.text());
    assert_eq!(api.get("/functions/spare").status, 404);

    // After a crash the published version is what serves.
    proxy.kill9();
    let proxy = start(&s, "");
    let seen = request(proxy.addr, client(&s, &valid), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    let api = Api::of(&proxy);
    assert_eq!(
        api.get("/functions/revocation?Stage=LIVE").json()["Sha256"],
        updated.json()["Sha256"]
    );
}

/// The last connection record for `id` (re-check records repeat the id).
fn records_for(proxy: &Proxy, id: &str, n: usize) -> Vec<serde_json::Value> {
    proxy
        .connections(n)
        .into_iter()
        .filter(|r| r["connectionId"] == id)
        .collect()
}

#[test]
fn a_kvs_write_closes_the_established_connections_it_now_refuses() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let laptop = s.pki.client("laptop.example");
    let desk = s.pki.client("desk.example");
    let mut laptop_session = Session::open(proxy.addr, client(&s, &laptop));
    let mut desk_session = Session::open(proxy.addr, client(&s, &desk));
    assert_eq!(laptop_session.get(), 200);
    assert_eq!(desk_session.get(), 200);
    let laptop_id = proxy
        .connections(2)
        .into_iter()
        .find(|r| {
            r["clientLeafCertSubject"]
                .as_str()
                .unwrap()
                .contains("laptop")
        })
        .unwrap()["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();

    let etag = api.etag("revoked");
    let path = format!("/kvs/revoked/keys/{}", serial(&laptop));
    assert_eq!(
        api.write("PUT", &path, &etag, r#"{"Value":"stolen"}"#)
            .status,
        200
    );
    assert!(
        laptop_session.closed_by_proxy(),
        "the revoked client's connection stays open"
    );
    assert_eq!(desk_session.get(), 200);

    let records = records_for(&proxy, &laptop_id, 3);
    let closing = records.last().unwrap();
    assert_eq!(
        closing["connectionStatus"],
        "Failed:ConnectionFunctionDenied"
    );
    assert_eq!(
        closing["connectionLogCustomData"],
        format!("REVOKED:{}", serial(&laptop))
    );
    assert!(
        closing["reason"]
            .as_str()
            .unwrap()
            .contains("re-check after a write to store \"revoked\"")
    );
    let metrics = api.get("/metrics").text();
    assert!(
        metrics.contains(
            "tollgate_rechecked_connections_closed_total{listener=\"e2e\",reason=\"kvs\"} 1"
        ),
        "{metrics}"
    );
    // A write to a store the function does not open re-checks nothing.
    let allowed = api.etag("allowed");
    let r = api.write("PUT", "/kvs/allowed/keys/x", &allowed, r#"{"Value":"1"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(desk_session.get(), 200);
}

#[test]
fn a_crl_reload_closes_the_established_connections_it_revokes() {
    let s = admin_setup();
    write(s.path(), "issuing.crl", s.pki.issuing.crl(&[]));
    let mtls = format!("{REQUIRED}\ncrls = [\"issuing.crl\"]");
    let proxy = s.start(&mtls, &extra(""));
    let api = Api::of(&proxy);
    let laptop = s.pki.client("laptop.example");
    let desk = s.pki.client("desk.example");
    let mut laptop_session = Session::open(proxy.addr, client(&s, &laptop));
    let mut desk_session = Session::open(proxy.addr, client(&s, &desk));
    assert_eq!(laptop_session.get(), 200);
    assert_eq!(desk_session.get(), 200);

    write(
        s.path(),
        "issuing.crl",
        s.pki.issuing.crl(&[&laptop.leaf_der]),
    );
    let r = api.call("POST", "/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(laptop_session.closed_by_proxy());
    assert_eq!(desk_session.get(), 200);
    let last = proxy.connections(3).pop().unwrap();
    assert_eq!(last["connectionStatus"], "Failed:ClientCertCrlHit");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("re-check after a reload")
    );
    // And the revoked client cannot come back.
    let seen = request(proxy.addr, client(&s, &laptop), "/", &[]);
    assert!(!matches!(seen, Seen::Http(..)), "{seen:?}");
}

#[test]
fn rechecks_can_be_turned_off() {
    let s = admin_setup();
    let config = config_for(s.origin.addr, REQUIRED, &extra("")).replace(
        "name = \"e2e\"\n",
        "name = \"e2e\"\nrecheck_established = false\n",
    );
    let proxy = Proxy::start(s.path(), &config);
    let api = Api::of(&proxy);
    let laptop = s.pki.client("laptop.example");
    let mut session = Session::open(proxy.addr, client(&s, &laptop));
    assert_eq!(session.get(), 200);
    let etag = api.etag("revoked");
    let path = format!("/kvs/revoked/keys/{}", serial(&laptop));
    assert_eq!(
        api.write("PUT", &path, &etag, r#"{"Value":"stolen"}"#)
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(session.get(), 200);
    let seen = request(proxy.addr, client(&s, &laptop), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
}

/// `tollgate <args>` against `api`, the token in the environment.
fn cli(api: &Api, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(&args[..1])
        .args(["--admin", &format!("http://{}", api.addr)])
        .args(&args[1..])
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_ADMIN");
    if let Some(t) = token {
        cmd.env("TOLLGATE_ADMIN_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_kvs_and_functions_commands_drive_the_api() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(&api, Some(TOKEN), args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };

    assert!(ok(&["kvs", "list"]).contains("revoked: 1 keys"));
    assert!(ok(&["kvs", "put", "revoked", "K", "V"]).starts_with("ok: ETag "));
    assert_eq!(ok(&["kvs", "get", "revoked", "K"]), "V\n");
    ok(&[
        "kvs", "update", "revoked", "--put", "A=1", "--put", "B=2", "--delete", "K",
    ]);
    let keys: serde_json::Value = serde_json::from_str(&ok(&[
        "kvs", "keys", "revoked", "--max", "1", "--all", "--json",
    ]))
    .unwrap();
    let names: Vec<&str> = keys["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Key"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B", "SEEDED"]);
    assert_eq!(
        ok(&["kvs", "keys", "revoked"]),
        "A\t1\nB\t2\nSEEDED\tfrom the file\n"
    );

    let (code, _, err) = cli(
        &api,
        Some(TOKEN),
        &["kvs", "put", "revoked", "X", "1", "--if-match", "stale"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("412"), "{err}");
    let (code, _, err) = cli(&api, None, &["kvs", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("no token"), "{err}");
    let (code, _, err) = cli(&api, Some("not-the-token-at-all"), &["kvs", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    write(s.path(), "import.json", kvs_json([("ONLY", "1")]));
    let import = s.path().join("import.json");
    ok(&["kvs", "import", "revoked", import.to_str().unwrap()]);
    assert_eq!(ok(&["kvs", "keys", "revoked"]), "ONLY\t1\n");

    let listed = ok(&["functions", "list"]);
    assert!(listed.contains("revocation DEVELOPMENT"), "{listed}");
    assert!(listed.contains("serving e2e"), "{listed}");
    write(s.path(), "allowlist.wasm", guests::SUBJECT_ALLOWLIST_WASM);
    let wasm = s.path().join("allowlist.wasm");
    ok(&[
        "functions",
        "upload",
        "revocation",
        wasm.to_str().unwrap(),
        "--kvs",
        "allowed",
    ]);
    let valid = s.pki.client("valid.example");
    let (cert, _) = valid.write(s.path(), "valid");
    let tested = ok(&[
        "functions",
        "test",
        "revocation",
        "--cert",
        cert.to_str().unwrap(),
    ]);
    assert!(tested.starts_with("decision:    deny\n"), "{tested}");
    let live = ok(&[
        "functions",
        "test",
        "revocation",
        "--stage",
        "LIVE",
        "--cert",
        cert.to_str().unwrap(),
    ]);
    assert!(live.starts_with("decision:    allow\n"), "{live}");
    request(proxy.addr, client(&s, &valid), "/", &[]).ok_json();
    ok(&["functions", "publish", "revocation"]);
    let seen = request(proxy.addr, client(&s, &valid), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    let described: serde_json::Value = serde_json::from_str(&ok(&[
        "functions",
        "describe",
        "revocation",
        "--stage",
        "LIVE",
        "--json",
    ]))
    .unwrap();
    assert_eq!(described["KeyValueStores"], serde_json::json!(["allowed"]));
    let (code, _, err) = cli(&api, Some(TOKEN), &["functions", "delete", "revocation"]);
    assert_eq!(code, 1);
    assert!(err.contains("409"), "{err}");
}

#[test]
fn the_documented_command_line_works() {
    let s = admin_setup();
    let proxy = start(&s, "");
    let api = Api::of(&proxy);
    let client_pem = s.pki.client("doc.example").write(s.path(), "client").0;
    write(s.path(), "revoked-serials.json", kvs_json([("4A3F", "x")]));
    let stdout = run_doc_block(&s, "## Command line", |script| {
        format!(
            "export TOLLGATE_ADMIN=http://{}\n{}",
            api.addr,
            script
                .replace("tollgate ", &format!("{} ", env!("CARGO_BIN_EXE_tollgate")))
                .replace(
                    "target/wasm32-wasip2/release/revocation.wasm",
                    "revocation.wasm"
                )
                .replace("client.pem", client_pem.to_str().unwrap())
        )
    });
    assert!(stdout.contains("decision:    allow"), "{stdout}");
    assert!(stdout.contains("\"Stage\": \"LIVE\""), "{stdout}");
    assert_eq!(api.get("/kvs/revoked/keys/4A3F").status, 200);
}

/// Runs the first `sh` block after `marker` in docs/admin-api.md, rewritten
/// by `adapt`, with bash in the test directory; its stdout.
fn run_doc_block(s: &Setup, marker: &str, adapt: impl FnOnce(&str) -> String) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/admin-api.md"
    ))
    .unwrap();
    let section = &doc[doc.find(marker).expect("the marker")..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let script = adapt(&section[start..start + section[start..].find("```").unwrap()]);
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(s.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_admin_api_speaks_https_when_given_a_certificate() {
    let s = admin_setup();
    let proxy = start(&s, "tls_cert = \"server.pem\"\ntls_key = \"server.key\"");
    assert!(
        proxy.stderr().contains("admin API on https://"),
        "{}",
        proxy.stderr()
    );
    let addr = proxy.admin_addr();
    let url = format!("https://localhost:{}", addr.port());
    let ca = s.path().join("server-ca.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["kvs", "--admin", &url, "--ca"])
        .arg(&ca)
        .args(["describe", "revoked"])
        .env("TOLLGATE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("revoked: 1 keys"), "{stdout}");
    // Plain HTTP to the TLS port gets no answer.
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    let _ = tcp.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
    // Off loopback with TLS is a valid configuration.
    let config = config_for(
        s.origin.addr,
        REQUIRED,
        &extra("tls_cert = \"server.pem\"\ntls_key = \"server.key\""),
    )
    .replace(
        "address = \"127.0.0.1:0\"\ntoken_file",
        "address = \"0.0.0.0:9901\"\ntoken_file",
    );
    let path = write(s.path(), "check.toml", &config);
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_call_in_flight_finishes_on_the_version_it_started_with() {
    let s = admin_setup();
    write(s.path(), "loop.wasm", guests::INFINITE_LOOP_WASM);
    // The listener's function spins for its whole (1 s) time limit.
    let config = config_for(s.origin.addr, REQUIRED, &extra(""))
        .replace(
            "name = \"revocation\"\n\n[functions",
            "name = \"slow\"\n\n[functions",
        )
        .replace(
            "[kvs.revoked]",
            "[functions.slow]\nwasm = \"loop.wasm\"\ntime_limit = \"1s\"\n\n[kvs.revoked]",
        );
    let proxy = Proxy::start(s.path(), &config);
    let api = Api::of(&proxy);
    let valid = s.pki.client("valid.example");

    // The next version (the revocation function), uploaded beforehand.
    let dev = api.get("/functions/slow").json()["ETag"]
        .as_str()
        .unwrap()
        .to_owned();
    let up = api.upload(
        "/functions/slow?KeyValueStores=revoked&TimeLimit=100ms",
        Some(&dev),
        guests::REVOCATION_WASM,
    );
    assert_eq!(up.status, 200, "{}", up.text());
    let etag = up.json()["ETag"].as_str().unwrap().to_owned();
    let addr = proxy.addr;
    let slow_client = client(&s, &valid);
    let in_flight = std::thread::spawn(move || {
        let started = Instant::now();
        (request(addr, slow_client, "/", &[]), started.elapsed())
    });
    // Wait until the slow call is running: its handshake is counted just
    // before the function is called (the connection's plan, with the old
    // version, was fixed when it was accepted). Then publish at once: the
    // call has at most its 1 s limit left.
    api.wait_for_metric("tollgate_handshake_duration_seconds_count{listener=\"e2e\"} 1");

    // Publish it while the slow call runs.
    let publishing = Instant::now();
    let published = api.call(
        "POST",
        "/functions/slow/publish",
        &[("If-Match", &etag)],
        b"",
    );
    assert_eq!(published.status, 200, "{}", published.text());
    eprintln!("publish took {:?}", publishing.elapsed());
    assert!(
        !in_flight.is_finished(),
        "the slow call ended before the publish ({:?})",
        publishing.elapsed()
    );
    // New connections run the new version at once...
    request(proxy.addr, client(&s, &valid), "/", &[]).ok_json();
    // ...while the call in flight ended as the old version does: out of time.
    let (seen, took) = in_flight.join().unwrap();
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let records = proxy.connections(2);
    let old = records
        .iter()
        .find(|r| r["connectionStatus"] == "Failed:ConnectionFunctionError")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert!(old["reason"].as_str().unwrap().contains("timeout"), "{old}");
    assert!(records.iter().any(|r| r["connectionStatus"] == "Success"));
}

/// `tollgate check --config PATH`.
fn check_config(path: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}
