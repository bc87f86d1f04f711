//! Live operations under load: continuous new mTLS connections from several
//! clients while, during the run, a 100k-key KVS import lands, a serial is
//! revoked through the API, a CRL is replaced, the config is reloaded and a
//! new function version is published. Bounded in time (a few seconds of
//! load) and in size (3 client threads), on loopback only.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use tollgate_guests as guests;
use tollgate_testkit::{kvs_json, write};

/// Client threads making new connections, and the most time they run.
const LOAD_THREADS: usize = 3;
const LOAD_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

#[test]
fn changes_under_load_fail_no_good_connection_and_revoke_at_once() {
    let s = admin_setup();
    write(s.path(), "issuing.crl", s.pki.issuing.crl(&[]));
    write(s.path(), "inspect.wasm", guests::INSPECT_WASM);
    let config = config_for(
        s.origin.addr,
        &format!("{REQUIRED}\ncrls = [\"issuing.crl\"]"),
        &extra(""),
    )
    .replace(
        "import = \"revoked.json\"\n",
        "import = \"revoked.json\"\nmax_store_bytes = 67108864\n",
    );
    let proxy = Proxy::start(s.path(), &config);
    let api = Api::of(&proxy);

    // Established before any change: a bystander (must survive everything),
    // the laptop (revoked through the KVS) and the victim (revoked by CRL).
    let laptop = s.pki.client("laptop.example");
    let victim = s.pki.client("victim.example");
    let mut bystander = Session::open(proxy.addr, client(&s, &s.pki.client("bystander.example")));
    let mut laptop_session = Session::open(proxy.addr, client(&s, &laptop));
    let mut victim_session = Session::open(proxy.addr, client(&s, &victim));
    for session in [&mut bystander, &mut laptop_session, &mut victim_session] {
        assert_eq!(session.get(), 200);
    }

    // The load: new connections with good certificates until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..LOAD_THREADS)
        .map(|i| {
            let config = client(&s, &s.pki.client(&format!("load-{i}.example")));
            let (stop, tally, failures) = (stop.clone(), tally.clone(), failures.clone());
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
                    match request(addr, config.clone(), "/", &[]) {
                        Seen::Http(200, _) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            failures.lock().unwrap().push(format!("{other:?}"));
                            tally.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    // After each change the bystander's connection still answers (it also
    // keeps it from idling out on slow machines).
    let pause = |bystander: &mut Session| {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(bystander.get(), 200);
    };
    pause(&mut bystander);

    // 1. A 100k-key import replaces the store (none of our clients in it).
    let big: Vec<(String, String)> = (0..100_000)
        .map(|i| (format!("{i:040x}"), "imported".to_owned()))
        .collect();
    let json = kvs_json(big.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let etag = api.etag("revoked");
    let imported = api.write("PUT", "/kvs/revoked", &etag, &json);
    assert_eq!(imported.status, 200, "{}", imported.text());
    assert_eq!(imported.json()["ItemCount"], 100_000);
    pause(&mut bystander);

    // 2. A serial revoked through the API: the next connection that starts
    //    after the acknowledgement is refused, and the live one is closed.
    // (Each client is ready before its change, so that its connection
    // starts right after the acknowledgement.)
    let laptop_config = client(&s, &laptop);
    let etag = api.etag("revoked");
    let path = format!("/kvs/revoked/keys/{}", serial(&laptop));
    let revoked = api.write("PUT", &path, &etag, r#"{"Value":"stolen"}"#);
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let acknowledged = Instant::now();
    let seen = request(proxy.addr, laptop_config, "/", &[]);
    let kvs_latency = acknowledged.elapsed();
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    assert!(
        laptop_session.closed_by_proxy(),
        "the revoked live connection stays open"
    );
    pause(&mut bystander);

    // 3. A CRL replaced and reloaded: the victim is refused and its live
    //    connection closed.
    write(
        s.path(),
        "issuing.crl",
        s.pki.issuing.crl(&[&victim.leaf_der]),
    );
    let victim_config = client(&s, &victim);
    let reload = api.call("POST", "/reload", &[], b"");
    assert_eq!(reload.status, 200, "{}", reload.text());
    let acknowledged = Instant::now();
    let seen = request(proxy.addr, victim_config, "/", &[]);
    let crl_latency = acknowledged.elapsed();
    assert!(!matches!(seen, Seen::Http(..)), "{seen:?}");
    assert!(
        victim_session.closed_by_proxy(),
        "the CRL-revoked live connection stays open"
    );
    pause(&mut bystander);

    // 4. A config reload with a changed setting.
    let changed = std::fs::read_to_string(s.path().join("tollgate.toml"))
        .unwrap()
        .replace(
            "[listener.origin]\n",
            "[listener.origin]\nresponse_timeout = \"20s\"\n",
        );
    write(s.path(), "tollgate.toml", changed);
    let reload = api.call("POST", "/reload", &[], b"");
    assert_eq!(reload.status, 200, "{}", reload.text());
    pause(&mut bystander);

    // 5. A new function version published: the next connection runs it.
    let dev = api.get("/functions/revocation").json()["ETag"]
        .as_str()
        .unwrap()
        .to_owned();
    let uploaded = api.upload(
        "/functions/revocation?KeyValueStores=&TimeLimit=200ms",
        Some(&dev),
        guests::INSPECT_WASM,
    );
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    let dev = uploaded.json()["ETag"].as_str().unwrap().to_owned();
    let probe_config = client(&s, &s.pki.client("probe.example"));
    let published = api.call(
        "POST",
        "/functions/revocation/publish",
        &[("If-Match", &dev)],
        b"",
    );
    assert_eq!(published.status, 200, "{}", published.text());
    let acknowledged = Instant::now();
    let probe = request(proxy.addr, probe_config, "/", &[]);
    let publish_latency = acknowledged.elapsed();
    assert!(matches!(probe, Seen::Http(200, _)), "{probe:?}");
    pause(&mut bystander);

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!(
        "load: {ok} connections ok, {failed} failed; first refused/new-version connection after \
         the acknowledgement: kvs {kvs_latency:?}, crl {crl_latency:?}, publish {publish_latency:?}"
    );
    assert_eq!(
        failed,
        0,
        "good connections failed: {:?}",
        failures.lock().unwrap()
    );
    // Each change was in effect for the first connection started after its
    // acknowledgement (changes are applied before the API answers).
    assert!(ok >= 5, "too little load to mean anything: {ok}");
    // The bystander was never dropped.
    assert_eq!(bystander.get(), 200);

    // The logs agree: the probe ran the new version, the refusals have
    // their codes.
    let records = proxy.connections(ok as usize + 8);
    let probe_record = records
        .iter()
        .find(|r| {
            r["clientLeafCertSubject"]
                .as_str()
                .is_some_and(|s| s.contains("probe.example"))
        })
        .unwrap();
    assert_eq!(probe_record["connectionLogCustomData"], "inspected");
    let count = |status: &str| {
        records
            .iter()
            .filter(|r| r["connectionStatus"] == status)
            .count()
    };
    // Refused: the laptop's new connection, and its live one on re-check.
    assert_eq!(count("Failed:ConnectionFunctionDenied"), 2);
    // Refused: the victim's new connection, and its live one on re-check.
    assert_eq!(count("Failed:ClientCertCrlHit"), 2);
    // 3 sessions + load + the probe.
    assert_eq!(count("Success"), ok as usize + 4);

    // The metrics moved as the run says.
    let metrics = api.get("/metrics").text();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert_eq!(
        value("tollgate_connections_total{listener=\"e2e\",status=\"Success\"}"),
        (ok + 4) as f64
    );
    assert_eq!(
        value("tollgate_connections_total{listener=\"e2e\",status=\"ConnectionFunctionDenied\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_connections_total{listener=\"e2e\",status=\"ClientCertCrlHit\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_rechecked_connections_closed_total{listener=\"e2e\",reason=\"kvs\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_rechecked_connections_closed_total{listener=\"e2e\",reason=\"reload\"}"),
        1.0
    );
    assert_eq!(
        value("tollgate_reloads_total{what=\"kvs\",result=\"ok\"}"),
        2.0
    );
    assert_eq!(
        value("tollgate_reloads_total{what=\"config\",result=\"ok\"}"),
        2.0
    );
    assert_eq!(
        value("tollgate_reloads_total{what=\"function\",result=\"ok\"}"),
        2.0
    );
    assert_eq!(value("tollgate_kvs_items{store=\"revoked\"}"), 100_001.0);
    assert_eq!(
        value("tollgate_origin_responses_total{listener=\"e2e\",status=\"200\"}"),
        // One request per load connection and the probe; the sessions made
        // ten (the bystander eight, the laptop and the victim one each).
        (ok + 1 + 10) as f64
    );
    // Only the bystander is still connected (other tasks end just after
    // their last log line).
    api.wait_for_metric("tollgate_active_connections{listener=\"e2e\"} 1");
}
