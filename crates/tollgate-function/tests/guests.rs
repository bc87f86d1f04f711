//! The runtime against real compiled guests: the example functions, the
//! hostile test guests, and a guest that reads every field.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tollgate_function::{
    CertSource, ConnectionInfo, Decision, ErrorKind, Function, FunctionSpec, Limits, LoadError,
    Outcome, Runtime, RuntimeConfig, StoreSet,
};
use tollgate_guests as guests;
use tollgate_testkit::{TestCa, TestCert, hex, kvs_json};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_concurrent_calls: 8,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn store(name: &str, entries: &[(&str, &str)]) -> Arc<tollgate_kvs::Store> {
    let json = kvs_json(entries.iter().copied());
    Arc::new(
        tollgate_kvs::Store::from_import_json(
            name,
            tollgate_kvs::Limits::default(),
            json.as_bytes(),
        )
        .expect("import"),
    )
}

async fn load(rt: &Runtime, wasm: &[u8], stores: Vec<Arc<tollgate_kvs::Store>>) -> Function {
    load_with(rt, wasm, stores, Limits::default()).await
}

async fn load_with(
    rt: &Runtime,
    wasm: &[u8],
    stores: Vec<Arc<tollgate_kvs::Store>>,
    limits: Limits,
) -> Function {
    rt.load(FunctionSpec {
        name: "test",
        wasm,
        limits,
        stores: StoreSet::new(stores),
    })
    .await
    .expect("load")
}

fn conn_with(chain: &[&TestCert]) -> Arc<ConnectionInfo> {
    let mut conn = ConnectionInfo::for_test();
    conn.chain = chain
        .iter()
        .map(|c| CertSource::Der(c.der.clone()))
        .collect();
    Arc::new(conn)
}

/// Generous time for guests that must hit another limit first (tests run
/// unoptimised host code, where each host call is slow).
fn roomy() -> Limits {
    Limits {
        time_us: 1_000_000,
        ..Limits::default()
    }
}

fn error_kind(o: &Outcome) -> Option<ErrorKind> {
    o.error.as_ref().map(|e| e.kind)
}

#[tokio::test]
async fn revocation_allows_valid_and_denies_revoked_and_missing() {
    let ca = TestCa::root("Test CA");
    let valid = ca.client("valid").serial(&[0x4a, 0x3f, 0x5c, 0x92]).build();
    let revoked = ca.client("revoked").serial(&[0x00, 0x9a, 0x01]).build();
    let rt = runtime();
    let f = load(
        &rt,
        guests::REVOCATION_WASM,
        vec![store("revoked", &[("9a01", "2026-01-01"), ("ffff", "")])],
    )
    .await;

    let o = f.call(conn_with(&[&valid])).await;
    assert_eq!(o.decision, Decision::Allow, "{o:?}");
    assert_eq!(o.custom_data.as_deref(), Some("VALID:4a3f5c92"));
    assert_eq!(o.connection_status(), "Success");

    let o = f.call(conn_with(&[&revoked])).await;
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.error, None, "a deliberate deny is not an error");
    assert_eq!(o.reason.as_deref(), Some("certificate revoked"));
    assert_eq!(o.custom_data.as_deref(), Some("REVOKED:9a01"));
    assert_eq!(o.connection_status(), "Failed:ConnectionFunctionDenied");

    let o = f.call(conn_with(&[])).await;
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.reason.as_deref(), Some("no client certificate"));
}

#[tokio::test]
async fn the_leaf_the_listener_parsed_is_used_not_parsed_again() {
    // The listener parses the leaf for its log and hands the result over in
    // `ConnectionInfo::leaf`; the host reads the fields from it. Handing over
    // another certificate's parse shows which one the function saw.
    let ca = TestCa::root("Test CA");
    let presented = ca.client("presented").serial(&[0x01, 0x02]).build();
    let parsed = ca.client("parsed").serial(&[0x0a, 0x0b]).build();
    let rt = runtime();
    let f = load(&rt, guests::REVOCATION_WASM, vec![store("revoked", &[])]).await;
    let mut conn = ConnectionInfo::for_test();
    conn.chain = vec![CertSource::Der(presented.der.clone())];
    let o = f.call(Arc::new(conn.clone())).await;
    assert_eq!(o.custom_data.as_deref(), Some("VALID:0102"));
    conn.leaf = Some(Arc::new(
        tollgate_x509::CertInfo::parse(&parsed.der).expect("parse"),
    ));
    let o = f.call(Arc::new(conn)).await;
    assert_eq!(o.custom_data.as_deref(), Some("VALID:0a0b"));
}

#[tokio::test]
async fn revocation_sees_store_updates_on_the_next_call() {
    let ca = TestCa::root("Test CA");
    let cert = ca.client("c").serial(&[0x11, 0x22]).build();
    // Fresh instances (the second call with the same answers as an earlier
    // one is a replay: two run), and one instance serving every call.
    for (rt, instances) in [(runtime(), 2), (reusing(1000), 1)] {
        let revoked = store("revoked", &[]);
        let f = load(&rt, guests::REVOCATION_WASM, vec![revoked.clone()]).await;
        assert!(f.call(conn_with(&[&cert])).await.is_allow());
        assert!(f.call(conn_with(&[&cert])).await.is_allow());
        revoked
            .import_json(kvs_json([("1122", "")]).as_bytes())
            .expect("import");
        let o = f.call(conn_with(&[&cert])).await;
        assert!(!o.is_allow());
        assert_eq!(o.custom_data.as_deref(), Some("REVOKED:1122"));
        revoked
            .import_json(kvs_json([]).as_bytes())
            .expect("import");
        assert!(f.call(conn_with(&[&cert])).await.is_allow());
        assert_eq!(f.instantiations(), instances);
    }
}

#[tokio::test]
async fn subject_allowlist_checks_uri_cn_and_ou() {
    let ca = TestCa::root("Test CA");
    let by_uri = ca
        .client("svc")
        .uri("spiffe://example.org/ns/prod/sa/billing")
        .build();
    let by_cn = ca.client("partner-gateway").build();
    let by_ou = ca.client("device-17").unit("fleet-a").build();
    let wrong = ca
        .client("intruder")
        .unit("elsewhere")
        .uri("spiffe://evil.example/x")
        .build();
    let rt = runtime();
    let allowed = store(
        "allowed",
        &[
            ("uri:spiffe://example.org/ns/prod/sa/billing", ""),
            ("cn:partner-gateway", ""),
            ("ou:fleet-a", ""),
        ],
    );
    let f = load(&rt, guests::SUBJECT_ALLOWLIST_WASM, vec![allowed]).await;

    let o = f.call(conn_with(&[&by_uri])).await;
    assert!(o.is_allow(), "{o:?}");
    assert_eq!(
        o.custom_data.as_deref(),
        Some("ALLOWED:uri:spiffe://example.org/ns/prod/sa/billing")
    );
    let o = f.call(conn_with(&[&by_cn])).await;
    assert_eq!(o.custom_data.as_deref(), Some("ALLOWED:cn:partner-gateway"));
    let o = f.call(conn_with(&[&by_ou])).await;
    assert_eq!(o.custom_data.as_deref(), Some("ALLOWED:ou:fleet-a"));

    let o = f.call(conn_with(&[&wrong])).await;
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.error, None);
    assert_eq!(
        o.reason.as_deref(),
        Some("subject not allowed: CN=intruder,OU=elsewhere")
    );
    let o = f.call(conn_with(&[])).await;
    assert_eq!(o.reason.as_deref(), Some("no client certificate"));
}

#[tokio::test]
async fn ip_allowlist_matches_cidr_ranges_and_fails_closed_on_bad_data() {
    let rt = runtime();
    let ranges = store(
        "ip-allowlist",
        &[(
            "ranges",
            r#"["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]"#,
        )],
    );
    let f = load(&rt, guests::IP_ALLOWLIST_WASM, vec![ranges]).await;
    let at = |ip: &str| {
        let mut conn = ConnectionInfo::for_test();
        conn.client = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 40_000);
        Arc::new(conn)
    };
    for ip in [
        "192.0.2.1",
        "192.0.2.254",
        "2001:db8:1::5",
        "198.51.100.7",
        "::ffff:192.0.2.9",
    ] {
        let o = f.call(at(ip)).await;
        assert!(o.is_allow(), "{ip}: {o:?}");
    }
    for ip in ["192.0.3.1", "198.51.100.8", "2001:db9::1", "10.0.0.1"] {
        let o = f.call(at(ip)).await;
        assert_eq!(o.decision, Decision::Deny, "{ip}");
        assert_eq!(o.error, None, "{ip}");
        assert_eq!(o.custom_data, Some(format!("NOT-LISTED:{ip}")));
    }

    let bad = store("ip-allowlist", &[("ranges", r#"["192.0.2.0/33"]"#)]);
    let o = f
        .with_stores(StoreSet::new([bad]))
        .call(at("192.0.2.1"))
        .await;
    assert_eq!(error_kind(&o), Some(ErrorKind::FunctionError), "{o:?}");
    assert!(o.error.unwrap().message.contains("192.0.2.0/33"));
    let not_json = store("ip-allowlist", &[("ranges", "192.0.2.0/24")]);
    let o = f
        .with_stores(StoreSet::new([not_json]))
        .call(at("192.0.2.1"))
        .await;
    assert_eq!(error_kind(&o), Some(ErrorKind::FunctionError), "{o:?}");
    let o = f
        .with_stores(StoreSet::default())
        .call(at("192.0.2.1"))
        .await;
    assert_eq!(error_kind(&o), Some(ErrorKind::FunctionError));
    assert!(o.error.unwrap().message.contains("ip-allowlist"));
}

/// Runs a hostile guest, checks its error kind and that it was stopped in
/// time, then checks that the same runtime serves the next call normally.
async fn hostile(wasm: &[u8], kind: ErrorKind, limits: Limits) -> Outcome {
    let rt = runtime();
    let f = load_with(&rt, wasm, vec![], limits.clone()).await;
    let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(
        error_kind(&o),
        Some(kind),
        "{:?} ({} console lines)",
        o.error,
        o.console.len()
    );
    assert_eq!(o.connection_status(), "Failed:ConnectionFunctionError");
    // The time limit plus a margin for instantiation, the epoch tick and a
    // busy CI machine.
    assert!(
        o.duration < limits.time() + Duration::from_millis(500),
        "took {:?}",
        o.duration
    );

    let ok = load(&rt, guests::COUNTER_WASM, vec![]).await;
    let next = ok.call(Arc::new(ConnectionInfo::for_test())).await;
    assert!(
        next.is_allow(),
        "the runtime must serve the next call: {next:?}"
    );
    // And the hostile function itself runs again (fresh instance each time).
    let again = f.call(Arc::new(ConnectionInfo::for_test())).await;
    assert_eq!(error_kind(&again), Some(kind));
    o
}

#[tokio::test]
async fn infinite_loop_is_stopped_at_the_time_limit() {
    let o = hostile(
        guests::INFINITE_LOOP_WASM,
        ErrorKind::Timeout,
        Limits::default(),
    )
    .await;
    assert!(
        o.duration >= Duration::from_millis(5),
        "stopped before its limit: {:?}",
        o.duration
    );
    assert_eq!(o.compute_utilization, 100);
    assert!(o.error.unwrap().message.contains("5000 µs"));
}

#[tokio::test]
async fn infinite_loop_respects_a_custom_time_limit() {
    let limits = Limits {
        time_us: 20_000,
        ..Limits::default()
    };
    let o = hostile(guests::INFINITE_LOOP_WASM, ErrorKind::Timeout, limits).await;
    assert!(o.duration >= Duration::from_millis(20), "{:?}", o.duration);
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let o = hostile(
        guests::UNBOUNDED_ALLOC_WASM,
        ErrorKind::MemoryLimit,
        roomy(),
    )
    .await;
    assert!(
        o.error
            .unwrap()
            .message
            .contains(&(16u64 << 20).to_string())
    );
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack() {
    hostile(
        guests::DEEP_RECURSION_WASM,
        ErrorKind::StackOverflow,
        roomy(),
    )
    .await;
}

#[tokio::test]
async fn panic_is_a_function_error_with_the_message() {
    let o = hostile(guests::PANIC_WASM, ErrorKind::Panic, roomy()).await;
    let message = o.error.unwrap().message;
    assert!(
        message.contains("deliberate panic on connection"),
        "{message}"
    );
    assert!(
        o.console.iter().any(|l| l.text.contains("panicked at")),
        "{:?}",
        o.console
    );
}

#[tokio::test]
async fn a_megabyte_of_custom_data_is_an_output_error() {
    let o = hostile(
        guests::CUSTOM_DATA_FLOOD_WASM,
        ErrorKind::OutputLimit,
        roomy(),
    )
    .await;
    assert_eq!(o.custom_data, None);
}

#[tokio::test]
async fn endless_console_output_is_stopped() {
    let o = hostile(guests::CONSOLE_FLOOD_WASM, ErrorKind::OutputLimit, roomy()).await;
    let bytes: usize = o.console.iter().map(|l| l.text.len()).sum();
    assert!(bytes <= 64 << 10, "captured {bytes} bytes");
    assert!(o.console.len() > 100);
}

#[tokio::test]
async fn endless_stdout_is_stopped() {
    let o = hostile(guests::STDOUT_FLOOD_WASM, ErrorKind::OutputLimit, roomy()).await;
    assert!(
        o.console.first().is_some_and(|l| l.text == "stdout line 0"),
        "{:?}",
        o.console.first()
    );
}

#[tokio::test]
async fn an_error_returned_by_the_function_denies() {
    let o = hostile(guests::GUEST_ERROR_WASM, ErrorKind::FunctionError, roomy()).await;
    let message = o.error.unwrap().message;
    assert!(message.contains("not-associated"), "{message}");
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    // Replay off: every call runs (with it on, this function, which asks
    // nothing, would run once and be replayed).
    let rt = Runtime::new(RuntimeConfig {
        replay_bytes: 0,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let f = load(&rt, guests::COUNTER_WASM, vec![]).await;
    for _ in 0..5 {
        let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
        assert_eq!(o.custom_data.as_deref(), Some("calls=1"));
        assert!(!o.replayed);
    }
    assert_eq!(f.instantiations(), 5);
    assert_eq!(f.replays(), 0);
}

fn reusing(max_calls_per_instance: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_calls_per_instance,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn an_instance_serves_at_most_max_calls_per_instance_calls() {
    let rt = reusing(3);
    let f = load(&rt, guests::COUNTER_WASM, vec![]).await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
        assert!(o.is_allow(), "{o:?}");
        seen.push(o.custom_data.unwrap());
    }
    assert_eq!(
        seen,
        [
            "calls=1", "calls=2", "calls=3", "calls=1", "calls=2", "calls=3", "calls=1"
        ]
    );
    assert_eq!(f.instantiations(), 3);
    // A kept instance's calls depend on more than their answers: never
    // replayed (this guest asks nothing, so every call would be).
    assert_eq!(f.replays(), 0);

    // The same on a fiber (a function allowed more than max_inline_time).
    let rt = Runtime::new(RuntimeConfig {
        max_calls_per_instance: 2,
        max_inline_time: Duration::ZERO,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let f = load(&rt, guests::COUNTER_WASM, vec![]).await;
    assert!(!f.runs_inline());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
        seen.push(o.custom_data.unwrap());
    }
    assert_eq!(seen, ["calls=1", "calls=2", "calls=1"]);
    assert_eq!(f.instantiations(), 2);
}

/// A kept instance waits for its next call holding nothing of the last
/// one: neither the connection object nor the store snapshot it read.
#[tokio::test]
async fn a_kept_instance_holds_nothing_of_its_last_connection() {
    let ca = TestCa::root("Test CA");
    let cert = ca.client("c").serial(&[0x11, 0x22]).build();
    let revoked = store("revoked", &[("99", "")]);
    let rt = reusing(1000);
    let f = load(&rt, guests::REVOCATION_WASM, vec![revoked.clone()]).await;
    for _ in 0..2 {
        let conn = conn_with(&[&cert]);
        let read = Arc::downgrade(&revoked.snapshot());
        let o = f.call(conn.clone()).await;
        assert_eq!(o.custom_data.as_deref(), Some("VALID:1122"), "{o:?}");
        // A new snapshot replaces the one the call read.
        revoked
            .import_json(kvs_json([("99", "")]).as_bytes())
            .expect("import");
        let held = Arc::downgrade(&conn);
        drop(conn);
        assert!(
            held.upgrade().is_none(),
            "the connection object is still held"
        );
        assert!(read.upgrade().is_none(), "the snapshot is still held");
    }
    assert_eq!(f.instantiations(), 1, "the instance was not kept");
}

#[tokio::test]
async fn an_instance_that_failed_is_not_reused_but_one_that_returned_an_error_is() {
    let rt = reusing(100);
    let panics = load(&rt, guests::PANIC_WASM, vec![]).await;
    for _ in 0..3 {
        let o = panics.call(Arc::new(ConnectionInfo::for_test())).await;
        assert_eq!(error_kind(&o), Some(ErrorKind::Panic), "{o:?}");
    }
    assert_eq!(panics.instantiations(), 3, "a trapped instance was reused");

    let errs = load(&rt, guests::GUEST_ERROR_WASM, vec![]).await;
    for _ in 0..3 {
        let o = errs.call(Arc::new(ConnectionInfo::for_test())).await;
        assert_eq!(error_kind(&o), Some(ErrorKind::FunctionError), "{o:?}");
    }
    assert_eq!(
        errs.instantiations(),
        1,
        "a returned error is a normal return"
    );
}

#[tokio::test]
async fn an_instance_that_kept_a_handle_is_not_reused() {
    // The guest keeps its first call's certificate in a static; reused, its
    // next call would read the previous connection's certificate.
    let rt = reusing(100);
    let f = load(&rt, guests::KEEP_HANDLE_WASM, vec![]).await;
    let ca = TestCa::root("Keep Root");
    for name in ["first", "second", "third"] {
        let cert = ca.client(name).build();
        let o = f.call(conn_with(&[&cert])).await;
        assert!(o.is_allow(), "{o:?}");
        assert_eq!(o.custom_data.as_deref(), Some("kept=none"));
    }
    assert_eq!(f.instantiations(), 3);

    // Without a certificate it keeps nothing, and its instance is reused.
    let f = load(&rt, guests::KEEP_HANDLE_WASM, vec![]).await;
    for _ in 0..3 {
        let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
        assert_eq!(o.custom_data.as_deref(), Some("kept=none"));
    }
    assert_eq!(f.instantiations(), 1);
}

#[tokio::test]
async fn custom_data_is_cut_to_800_bytes_at_a_char_boundary() {
    // The inspect guest logs the value of key "custom" as its custom data.
    let rt = runtime();
    let f = load_with(&rt, guests::INSPECT_WASM, vec![], roomy()).await;
    let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
    assert_eq!(o.custom_data.as_deref(), Some("inspected"));

    // 401 two-byte characters: 802 bytes, cut to 800 (400 characters).
    let long = "é".repeat(401);
    let data = store("data", &[("custom", &long)]);
    let o = f
        .with_stores(StoreSet::new([data]))
        .call(Arc::new(ConnectionInfo::for_test()))
        .await;
    assert!(o.is_allow(), "{:?}", o.error);
    let custom = o.custom_data.unwrap();
    assert_eq!(custom.len(), 800);
    assert_eq!(custom, "é".repeat(400));

    // An odd cut: one ASCII byte first, so byte 800 falls inside a character.
    let odd = format!("x{}", "é".repeat(400));
    let data = store("data", &[("custom", &odd)]);
    let o = f
        .with_stores(StoreSet::new([data]))
        .call(Arc::new(ConnectionInfo::for_test()))
        .await;
    let custom = o.custom_data.unwrap();
    assert_eq!(custom.len(), 799);
    assert_eq!(custom, format!("x{}", "é".repeat(399)));
}

#[tokio::test]
async fn load_refuses_what_is_not_a_connection_function() {
    let rt = runtime();
    let load = |wasm: Vec<u8>, limits: Limits| {
        let rt = &rt;
        async move {
            rt.load(FunctionSpec {
                name: "bad",
                wasm: &wasm,
                limits,
                stores: StoreSet::default(),
            })
            .await
            .err()
            .expect("load must fail")
        }
    };
    let e = load(guests::WRONG_WORLD_WASM.to_vec(), Limits::default()).await;
    assert!(matches!(e, LoadError::WrongWorld(_)), "{e}");
    assert!(e.to_string().contains("on-connection"), "{e}");

    let e = load(guests::SANDBOX_ESCAPE_WASM.to_vec(), Limits::default()).await;
    assert!(matches!(e, LoadError::WrongWorld(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("wasi:filesystem") || text.contains("wasi:sockets"),
        "{text}"
    );

    let small = Limits {
        module_bytes: 1_000,
        ..Limits::default()
    };
    let e = load(guests::REVOCATION_WASM.to_vec(), small).await;
    assert!(matches!(e, LoadError::TooLarge { limit: 1_000, .. }), "{e}");

    let e = load(b"\0asm\x01\0\0\0".to_vec(), Limits::default()).await;
    assert!(matches!(e, LoadError::CoreModule), "{e}");
    let e = load(b"hello world".to_vec(), Limits::default()).await;
    assert!(matches!(e, LoadError::NotWasm), "{e}");
    let mut truncated = guests::REVOCATION_WASM.to_vec();
    truncated.truncate(truncated.len() / 2);
    let e = load(truncated, Limits::default()).await;
    assert!(matches!(e, LoadError::Invalid(_)), "{e}");

    let tiny_memory = Limits {
        memory_bytes: 64 << 10,
        ..Limits::default()
    };
    let e = load(guests::REVOCATION_WASM.to_vec(), tiny_memory).await;
    assert!(matches!(e, LoadError::Instantiate(_)), "{e}");

    let zero_time = Limits {
        time_us: 0,
        ..Limits::default()
    };
    let e = load(guests::REVOCATION_WASM.to_vec(), zero_time).await;
    assert!(matches!(e, LoadError::Limits(_)), "{e}");
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = RuntimeConfig {
        max_concurrent_calls: 2,
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    let f = load(&first, guests::COUNTER_WASM, vec![]).await;
    assert!(!f.compiled_from_cache());
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(f.sha256())
    );

    let second = Runtime::new(config.clone()).unwrap();
    let g = load(&second, guests::COUNTER_WASM, vec![]).await;
    assert!(g.compiled_from_cache());
    assert!(
        g.call(Arc::new(ConnectionInfo::for_test()))
            .await
            .is_allow()
    );

    // A damaged entry is ignored and replaced.
    std::fs::write(&entries[0], b"garbage").unwrap();
    let third = Runtime::new(config).unwrap();
    let h = load(&third, guests::COUNTER_WASM, vec![]).await;
    assert!(!h.compiled_from_cache());
    assert!(
        h.call(Arc::new(ConnectionInfo::for_test()))
            .await
            .is_allow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_beyond_the_pool_wait_for_a_slot() {
    let rt = Runtime::new(RuntimeConfig {
        max_concurrent_calls: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let f = load(&rt, guests::COUNTER_WASM, vec![]).await;
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.call(Arc::new(ConnectionInfo::for_test())).await })
        })
        .collect();
    for call in calls {
        let o = call.await.unwrap();
        assert!(o.is_allow(), "{o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_instances_never_take_the_slots_other_functions_need() {
    // Two call slots; kept instances of one function must not leave the
    // others without room in the pool.
    let rt = Runtime::new(RuntimeConfig {
        max_concurrent_calls: 2,
        max_calls_per_instance: 1000,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let functions = [
        load(&rt, guests::COUNTER_WASM, vec![]).await,
        load(&rt, guests::KEEP_HANDLE_WASM, vec![]).await,
        load(&rt, guests::GUEST_ERROR_WASM, vec![]).await,
    ];
    for round in 0..3 {
        let calls: Vec<_> = (0..48)
            .map(|i| {
                let f = functions[(i + round) % functions.len()].clone();
                tokio::spawn(async move { f.call(Arc::new(ConnectionInfo::for_test())).await })
            })
            .collect();
        for call in calls {
            let o = call.await.unwrap();
            assert_ne!(error_kind(&o), Some(ErrorKind::Instantiation), "{o:?}");
        }
    }
    // Kept instances served some of the 144 calls (which function keeps the
    // two places for kept instances depends on timing).
    let made: u64 = functions.iter().map(Function::instantiations).sum();
    assert!(made < 144, "{made}");
}

/// The epoch ticker sleeps once calls stop, and a call that starts while it
/// sleeps wakes it: a looping function is still stopped at its limit.
#[tokio::test]
async fn the_epoch_ticker_sleeps_when_idle_and_a_call_wakes_it() {
    let rt = runtime();
    let looping = load(&rt, guests::INFINITE_LOOP_WASM, vec![]).await;
    assert!(looping.runs_inline());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rt.epoch_ticking() {
        assert!(
            std::time::Instant::now() < deadline,
            "the ticker never went to sleep"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // On its own thread: if nothing stopped it, it would spin forever.
    let (done, outcome) = std::sync::mpsc::channel();
    let call = looping.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done.send(rt.block_on(call.call(Arc::new(ConnectionInfo::for_test()))));
    });
    let o = outcome
        .recv_timeout(Duration::from_secs(10))
        .expect("a call made while the ticker slept was never stopped");
    assert_eq!(error_kind(&o), Some(ErrorKind::Timeout), "{o:?}");
    assert!(
        o.duration < looping.limits().time() + Duration::from_millis(500),
        "took {:?}",
        o.duration
    );
    assert!(rt.epoch_ticking(), "the call did not wake the ticker");
}

/// Starts `looping` (which times out), then `quick`, on the same thread;
/// returns the quick call's outcome and when it finished.
async fn race_with_a_loop(looping: &Function, quick: &Function) -> (Outcome, Duration) {
    let started = std::time::Instant::now();
    let slow = looping.call(Arc::new(ConnectionInfo::for_test()));
    let fast = async {
        let o = quick.call(Arc::new(ConnectionInfo::for_test())).await;
        (o, started.elapsed())
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(error_kind(&slow), Some(ErrorKind::Timeout));
    fast
}

#[tokio::test]
async fn a_timed_out_function_does_not_starve_others_on_the_same_thread() {
    // Current-thread runtime: a function allowed more than max_inline_time
    // runs on a fiber and must yield at every epoch tick, so the quick call
    // completes long before the loop's limit.
    let rt = runtime();
    let looping = load_with(
        &rt,
        guests::INFINITE_LOOP_WASM,
        vec![],
        Limits {
            time_us: 1_000_000,
            ..Limits::default()
        },
    )
    .await;
    assert!(!looping.runs_inline());
    let quick = load(&rt, guests::COUNTER_WASM, vec![]).await;
    let (fast, fast_done) = race_with_a_loop(&looping, &quick).await;
    assert!(fast.is_allow());
    // Well before the loop's 1 s limit: the loop yielded to it.
    assert!(
        fast_done < Duration::from_millis(500),
        "quick call waited {fast_done:?}"
    );
}

#[tokio::test]
async fn a_function_with_a_small_time_limit_runs_inline_until_its_limit() {
    // Default limits (5 ms) are within max_inline_time (10 ms): the call runs
    // on the caller's thread without yielding, so on a current-thread runtime
    // the quick call only starts once the loop has been stopped at its limit.
    let rt = runtime();
    let looping = load(&rt, guests::INFINITE_LOOP_WASM, vec![]).await;
    assert!(looping.runs_inline());
    let quick = load(&rt, guests::COUNTER_WASM, vec![]).await;
    assert!(quick.runs_inline());
    let (fast, fast_done) = race_with_a_loop(&looping, &quick).await;
    assert!(fast.is_allow(), "{fast:?}");
    assert!(
        fast_done >= Duration::from_millis(5),
        "the quick call finished after {fast_done:?}, before the inline loop's limit"
    );
}

#[tokio::test]
async fn max_inline_time_zero_puts_every_function_on_a_fiber() {
    let rt = Runtime::new(RuntimeConfig {
        max_concurrent_calls: 8,
        max_inline_time: Duration::ZERO,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let f = load(&rt, guests::COUNTER_WASM, vec![]).await;
    assert!(!f.runs_inline());
    let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
    assert!(o.is_allow(), "{o:?}");
    assert_eq!(o.custom_data.as_deref(), Some("calls=1"));
}

#[tokio::test]
async fn a_function_that_sleeps_is_stopped_at_once() {
    // Inline (default limits) and on a fiber (a limit above max_inline_time):
    // either way the sleep is refused, not waited out.
    for time_us in [5_000, 500_000] {
        let limits = Limits {
            time_us,
            ..Limits::default()
        };
        let o = hostile(guests::SLEEP_WASM, ErrorKind::Trap, limits).await;
        let message = o.error.expect("an error").message;
        assert!(message.contains("cannot block"), "{message}");
        assert!(o.duration < Duration::from_secs(1), "{:?}", o.duration);
    }
}

fn lines(o: &Outcome) -> Vec<String> {
    o.console.iter().map(|l| l.text.clone()).collect()
}

fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    let prefix = format!("{key}=");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no line {key}= in {lines:#?}"))
}

#[tokio::test]
async fn every_connection_field_reaches_the_function() {
    let root = TestCa::root("Root CA");
    let inter = root.intermediate("Issuing CA");
    let leaf = inter
        .client("device-1")
        .organization("Example Corp")
        .unit("fleet-a")
        .serial(&[0x00, 0xa1, 0xb2])
        .uri("spiffe://example.org/device-1")
        .dns("device-1.example.org")
        .ip("192.0.2.10".parse().unwrap())
        .email("ops@example.org")
        .build();
    let inter_cert = TestCert {
        der: inter.der(),
        pem: inter.pem(),
        key_pem: String::new(),
    };
    let data = store("data", &[("k", "v"), ("json", "[1,2,3]")]);
    let etag = data.snapshot().meta().etag.clone();
    let rt = runtime();
    let f = load_with(&rt, guests::INSPECT_WASM, vec![data], roomy()).await;
    let mut conn = ConnectionInfo::for_test();
    conn.id = "conn-42".into();
    conn.client = "203.0.113.42:51234".parse().unwrap();
    conn.server = "[2001:db8::1]:8443".parse().unwrap();
    conn.sni = Some("api.example.com".into());
    conn.alpn = Some("http/1.1".into());
    conn.tls_version = "TLSv1.2".into();
    conn.cipher_suite = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into();
    conn.listener = "edge".into();
    conn.handshake_duration = Duration::from_micros(1234);
    conn.expiry_ignored = true;
    conn.chain = vec![
        CertSource::Der(leaf.der.clone()),
        CertSource::Der(inter_cert.der.clone()),
    ];
    let o = f.call(Arc::new(conn)).await;
    assert!(o.is_allow(), "{o:?}");
    let l = lines(&o);
    assert_eq!(value(&l, "id"), "conn-42");
    assert_eq!(value(&l, "client"), "203.0.113.42:51234");
    assert_eq!(value(&l, "server"), "2001:db8::1:8443");
    assert_eq!(value(&l, "sni"), "Some(\"api.example.com\")");
    assert_eq!(value(&l, "alpn"), "Some(\"http/1.1\")");
    assert_eq!(value(&l, "tls_version"), "TLSv1.2");
    assert_eq!(
        value(&l, "cipher"),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    );
    assert_eq!(value(&l, "listener"), "edge");
    assert_eq!(value(&l, "handshake_us"), "1234");
    assert_eq!(value(&l, "expiry_ignored"), "true");
    assert_eq!(value(&l, "leaf.serial"), "a1:b2");
    assert_eq!(value(&l, "leaf.serial_hex"), "a1b2");
    assert_eq!(value(&l, "client_serial_hex"), "Some(\"a1b2\")");
    assert_eq!(
        value(&l, "leaf.subject"),
        "CN=device-1,OU=fleet-a,O=Example Corp"
    );
    assert_eq!(value(&l, "leaf.issuer"), "CN=Issuing CA,O=Tollgate Test");
    assert_eq!(value(&l, "leaf.cn"), "Some(\"device-1\")");
    assert_eq!(value(&l, "leaf.ou"), "[\"fleet-a\"]");
    assert_eq!(value(&l, "leaf.o"), "[\"Example Corp\"]");
    assert_eq!(value(&l, "leaf.issuer_cn"), "[\"Issuing CA\"]");
    assert_eq!(
        value(&l, "leaf.subject_attributes"),
        "O(2.5.4.10)=Example Corp;OU(2.5.4.11)=fleet-a;CN(2.5.4.3)=device-1"
    );
    assert_eq!(
        value(&l, "leaf.sha256"),
        tollgate_x509::sha256_fingerprint(&leaf.der)
    );
    assert_eq!(
        value(&l, "leaf.sans"),
        "[Uri(\"spiffe://example.org/device-1\"), Dns(\"device-1.example.org\"), Ip(192.0.2.10), Email(\"ops@example.org\")]"
    );
    assert_eq!(
        value(&l, "leaf.uris"),
        "[\"spiffe://example.org/device-1\"]"
    );
    assert_eq!(value(&l, "leaf.key_usage"), "Some(1)");
    assert_eq!(value(&l, "leaf.eku"), "Some([\"clientAuth\"])");
    assert_eq!(value(&l, "leaf.der_len"), leaf.der.len().to_string());
    let validity = value(&l, "leaf.validity");
    let parts: Vec<&str> = validity.split(' ').collect();
    assert!(
        parts[0].ends_with('Z') && parts[1].ends_with('Z'),
        "{validity}"
    );
    assert_eq!(
        parts[0],
        tollgate_x509::format_rfc3339(parts[2].parse().unwrap())
    );
    assert_eq!(value(&l, "intermediates"), "1");
    assert_eq!(value(&l, "int0.subject"), "CN=Issuing CA,O=Tollgate Test");
    assert_eq!(value(&l, "int0.issuer"), "CN=Root CA,O=Tollgate Test");
    assert_eq!(
        value(&l, "int0.serial_hex"),
        hex(tollgate_x509::CertInfo::parse(&inter.der())
            .unwrap()
            .serial_bytes())
    );
    assert_eq!(value(&l, "kvs.get.k"), "Some(\"v\")");
    assert_eq!(value(&l, "kvs.get.missing"), "None");
    assert_eq!(value(&l, "kvs.bytes.k"), "Some([118])");
    assert_eq!(value(&l, "kvs.exists.k"), "true");
    assert_eq!(value(&l, "kvs.exists.missing"), "false");
    assert_eq!(value(&l, "kvs.exists_in.k"), "Ok(true)");
    assert_eq!(value(&l, "kvs.exists_in.missing"), "Ok(false)");
    assert_eq!(value(&l, "kvs.json"), "Some([1, 2, 3])");
    assert_eq!(value(&l, "kvs.meta"), format!("2 {} {etag}", 1 + 1 + 4 + 7));
    assert!(l.contains(&"hello from stdout".to_string()), "{l:?}");
    assert!(l.contains(&"hello from stderr".to_string()), "{l:?}");
}

#[tokio::test]
async fn a_crafted_json_connection_reaches_the_function() {
    let rt = runtime();
    let f = load_with(&rt, guests::INSPECT_WASM, vec![], roomy()).await;
    let conn = ConnectionInfo::from_json(
        br#"{
        "connectionId": "Fdb-Eb7L9gVn2cFakz7wWyBJIDAD4-oNO6g8r3vXDV132BtnIVtqDA==",
        "clientIp": "203.0.113.42",
        "endpoint": "api.example.com",
        "clientCertificate": {"certificates": {"leaf": {
            "serialNumber": "4a:3f:5c:92:d1:e8:7b:6c",
            "issuer": "CN=Example Corp Intermediate CA,O=Example Corp,C=US",
            "subject": "CN=client.example.com,O=Example Corp,C=US",
            "validity": {"notBefore": "2024-01-15T00:00:00Z", "notAfter": "2025-01-14T23:59:59Z"},
            "sha256Fingerprint": "01fbf94f00000000000000000000000000000000000000000000000000b586aa",
            "san": "DNS:client.example.com,URI:spiffe://example/client"
        }}}
    }"#,
    )
    .unwrap();
    let o = f.call(Arc::new(conn)).await;
    assert!(o.is_allow(), "{o:?}");
    let l = lines(&o);
    assert_eq!(
        value(&l, "id"),
        "Fdb-Eb7L9gVn2cFakz7wWyBJIDAD4-oNO6g8r3vXDV132BtnIVtqDA=="
    );
    assert_eq!(value(&l, "leaf.serial"), "4a:3f:5c:92:d1:e8:7b:6c");
    assert_eq!(value(&l, "client_serial_hex"), "Some(\"4a3f5c92d1e87b6c\")");
    assert_eq!(value(&l, "leaf.cn"), "Some(\"client.example.com\")");
    assert_eq!(
        value(&l, "leaf.issuer_cn"),
        "[\"Example Corp Intermediate CA\"]"
    );
    assert_eq!(
        value(&l, "leaf.validity"),
        "2024-01-15T00:00:00Z 2025-01-14T23:59:59Z 1705276800 1736899199"
    );
    assert_eq!(value(&l, "leaf.uris"), "[\"spiffe://example/client\"]");
    assert_eq!(value(&l, "leaf.der_len"), "0");
    assert_eq!(value(&l, "leaf.eku"), "None");
    assert_eq!(value(&l, "intermediates"), "0");
    // No store is associated with this function.
    assert_eq!(
        value(&l, "kvs.exists_in.nostore"),
        "no key-value store named \"nostore\" is associated with this function"
    );
}

/// What a replay must reproduce: everything but the timing.
fn decided(o: &Outcome) -> impl PartialEq + std::fmt::Debug {
    (
        o.decision,
        o.reason.clone(),
        o.error.clone(),
        o.custom_data.clone(),
        o.console.clone(),
    )
}

/// A call whose every question has the answer an earlier call got is that
/// call's outcome, replayed without an instance; a change in any one answer
/// (a field of the connection, a store's data) runs the function again, and
/// either way the outcome is the one running the function gives.
#[tokio::test]
async fn a_call_is_replayed_only_when_every_answer_is_the_same() {
    let ca = TestCa::root("Test CA");
    let alice = ca.client("alice").serial(&[0x0a, 0x11]).build();
    let bob = ca.client("bob").serial(&[0x0b, 0x22]).build();
    let data = store("data", &[("k", "v")]);
    let rt = runtime();
    // Roomy: this guest asks many questions of unoptimised host code.
    let f = load_with(&rt, guests::REPLAY_WASM, vec![data.clone()], roomy()).await;
    let base = {
        let mut conn = ConnectionInfo::for_test();
        conn.chain = vec![CertSource::Der(alice.der.clone())];
        conn
    };
    // Runs the function (never a replay) for the expected outcome, then
    // calls it twice: the first call must run, the second replay.
    let check = async |conn: ConnectionInfo, what: &str| {
        let conn = Arc::new(conn);
        let truth = f.run(conn.clone()).await;
        assert!(truth.is_allow(), "{what}: {truth:?}");
        let (made, replayed) = (f.instantiations(), f.replays());
        let first = f.call(conn.clone()).await;
        assert!(!first.replayed, "{what}: replayed on a new answer");
        assert_eq!(f.instantiations(), made + 1, "{what}");
        assert_eq!(decided(&first), decided(&truth), "{what}");
        let second = f.call(conn).await;
        assert!(second.replayed, "{what}: not replayed");
        assert_eq!(f.instantiations(), made + 1, "{what}");
        assert_eq!(f.replays(), replayed + 1, "{what}");
        assert_eq!(decided(&second), decided(&truth), "{what}");
        truth
    };
    let truth = check(base.clone(), "first call").await;
    assert_eq!(truth.custom_data.as_deref(), Some("asked:0a11"));

    // What the function never asks does not matter.
    let mut other = base.clone();
    other.id = tollgate_function::new_connection_id();
    other.client.set_port(40_000);
    other.handshake_duration = Duration::from_millis(3);
    let o = f.call(Arc::new(other)).await;
    assert!(o.replayed, "{o:?}");
    assert_eq!(decided(&o), decided(&truth));

    // Each answer the function gets, changed alone.
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    type Change = fn(&mut ConnectionInfo, IpAddr);
    let variants: Vec<(&str, Change)> = vec![
        ("client ip", |c, ip| c.client.set_ip(ip)),
        ("server ip", |c, ip| c.server.set_ip(ip)),
        ("server port", |c, _| c.server.set_port(9443)),
        ("sni", |c, _| c.sni = Some("api.example.com".into())),
        ("alpn", |c, _| c.alpn = Some("http/1.1".into())),
        ("tls version", |c, _| c.tls_version = "TLSv1.2".into()),
        ("cipher", |c, _| {
            c.cipher_suite = "TLS_AES_256_GCM_SHA384".into()
        }),
        ("listener", |c, _| c.listener = "other".into()),
        ("expiry ignored", |c, _| c.expiry_ignored = true),
    ];
    for (what, change) in variants {
        let mut conn = base.clone();
        change(&mut conn, ip);
        check(conn, what).await;
    }
    let mut conn = base.clone();
    conn.chain = vec![CertSource::Der(bob.der.clone())];
    let truth = check(conn.clone(), "serial").await;
    assert_eq!(truth.custom_data.as_deref(), Some("asked:0b22"));
    conn.chain.clear();
    check(conn, "no certificate").await;

    // The stores' data: a lookup is asked again on every replay.
    data.import_json(kvs_json([("k", "w")]).as_bytes())
        .expect("import");
    let truth = check(base.clone(), "a value").await;
    assert!(
        truth.console.iter().any(|l| l.text == "get.k=Some(\"w\")"),
        "{truth:?}"
    );
    data.import_json(kvs_json([("k", "w"), ("0a11", "")]).as_bytes())
        .expect("import");
    let truth = check(base.clone(), "a key").await;
    assert!(
        truth.console.iter().any(|l| l.text == "revoked=Ok(true)"),
        "{truth:?}"
    );
    data.import_json(kvs_json([("k", "v")]).as_bytes())
        .expect("import");
    // Back to the first call's answers: its path is still there.
    let o = f.call(Arc::new(base)).await;
    assert!(o.replayed);
}

/// The canonical case: a revoked serial is denied by the next call, replay
/// or not, and the revocation's outcomes are replayed.
#[tokio::test]
async fn revocation_replays_and_a_revocation_applies_at_once() {
    let ca = TestCa::root("Test CA");
    let cert = ca.client("c").serial(&[0x11, 0x22]).build();
    let revoked = store("revoked", &[]);
    let rt = runtime();
    let f = load(&rt, guests::REVOCATION_WASM, vec![revoked.clone()]).await;
    for _ in 0..3 {
        let o = f.call(conn_with(&[&cert])).await;
        assert!(o.is_allow());
        assert_eq!(o.custom_data.as_deref(), Some("VALID:1122"));
    }
    assert_eq!((f.instantiations(), f.replays()), (1, 2));
    revoked
        .import_json(kvs_json([("1122", "")]).as_bytes())
        .expect("import");
    for replayed in [false, true] {
        let o = f.call(conn_with(&[&cert])).await;
        assert!(!o.is_allow());
        assert_eq!(o.replayed, replayed);
        assert_eq!(o.reason.as_deref(), Some("certificate revoked"));
        assert_eq!(o.custom_data.as_deref(), Some("REVOKED:1122"));
    }
}

/// A call that asks what a replay cannot ask again (a value new on every
/// connection, a certificate handle, a store's metadata, WASI) always runs;
/// a deny or an error the function returns is replayed like an allow.
#[tokio::test]
async fn calls_a_replay_cannot_repeat_always_run() {
    let ca = TestCa::root("Test CA");
    let cert = ca.client("c").serial(&[0x33]).build();
    let rt = runtime();
    for also in [
        "port",
        "id",
        "certificate",
        "meta",
        "clock",
        "random",
        "stdout",
    ] {
        let f = load_with(
            &rt,
            guests::REPLAY_WASM,
            vec![store("data", &[("also", also)])],
            roomy(),
        )
        .await;
        for _ in 0..3 {
            let o = f.call(conn_with(&[&cert])).await;
            assert!(o.is_allow(), "{also}: {o:?}");
            assert!(!o.replayed, "{also}");
        }
        assert_eq!(f.instantiations(), 3, "{also}");
    }
    for also in ["deny", "error"] {
        let f = load_with(
            &rt,
            guests::REPLAY_WASM,
            vec![store("data", &[("also", also)])],
            roomy(),
        )
        .await;
        let first = f.call(conn_with(&[&cert])).await;
        let second = f.call(conn_with(&[&cert])).await;
        assert!(!first.is_allow(), "{also}: {first:?}");
        assert!(second.replayed, "{also}");
        assert_eq!(decided(&first), decided(&second), "{also}");
    }
}

/// A call stopped by a trap, a panic or a limit is never recorded.
#[tokio::test]
async fn failed_calls_are_never_replayed() {
    let rt = runtime();
    for wasm in [guests::PANIC_WASM, guests::CUSTOM_DATA_FLOOD_WASM] {
        let f = load(&rt, wasm, vec![]).await;
        for _ in 0..2 {
            let o = f.call(Arc::new(ConnectionInfo::for_test())).await;
            assert!(o.error.is_some(), "{o:?}");
            assert!(!o.replayed);
        }
        assert_eq!(f.instantiations(), 2);
    }
}

/// Replay memory is bounded: when full it starts over, and outcomes stay
/// right throughout.
#[tokio::test]
async fn replay_memory_is_bounded_and_starts_over_when_full() {
    let ca = TestCa::root("Test CA");
    let certs: Vec<TestCert> = (0..40u8)
        .map(|i| ca.client("c").serial(&[0x40, i]).build())
        .collect();
    let rt = Runtime::new(RuntimeConfig {
        replay_bytes: 4096,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let f = load(&rt, guests::REVOCATION_WASM, vec![store("revoked", &[])]).await;
    for round in 0..2 {
        for (i, cert) in certs.iter().enumerate() {
            let o = f.call(conn_with(&[cert])).await;
            assert_eq!(
                o.custom_data,
                Some(format!("VALID:40{i:02x}")),
                "round {round}"
            );
        }
    }
    // 4 KiB holds about ten of the forty paths: the second round ran most
    // calls again.
    assert!(f.replays() < 20, "{} replays", f.replays());
    assert!(f.instantiations() > 60, "{}", f.instantiations());
    // The last call's path is there.
    let o = f.call(conn_with(&[certs.last().unwrap()])).await;
    assert!(o.replayed);
}
