//! The per-connection cost of a connection function: a fresh store, an
//! instance from the pool, and the call of the `revocation` example against a
//! store of 1,000,000 revoked serials, with a real client certificate.
//!
//! Run: `cargo bench -p tollgate-function --bench per_connection`
//! Options (environment): BENCH_CALLS (default 20000), BENCH_KEYS (1000000),
//! BENCH_FUNCTION=counter (the floor: one host call, then allow),
//! BENCH_WASM=path (any other function), BENCH_COLD=1 (sweep 2 MiB of memory
//! between calls, outside the timing, as a TLS handshake would between two
//! connections: the figures then include the cache misses of a cold call;
//! BENCH_SWEEP_MB=N sweeps N MiB instead, BENCH_STRIDE=B touches one byte
//! every B, e.g. 4096 to evict TLB entries more than cache lines),
//! BENCH_REUSE=N (`max_calls_per_instance`, default 1: a fresh instance per
//! call), BENCH_REPLAY=1 (`Function::call`, which replays the first call's
//! outcome for the same answers, instead of `Function::run`, which runs the
//! function every time), BENCH_REPLAY=new (`Function::call` with a client
//! certificate never seen before on every call: the function runs and its
//! call is recorded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_function::{
    CertSource, ConnectionInfo, FunctionSpec, Limits, Runtime, RuntimeConfig, StoreSet,
};
use tollgate_testkit::{TestCa, hex};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let calls = env_usize("BENCH_CALLS", 20_000);
    let keys = env_usize("BENCH_KEYS", 1_000_000);

    let ca = TestCa::root("Bench CA");
    let valid = ca
        .client("valid.bench")
        .serial(&[0x4a, 0x3f, 0x5c, 0x92, 0xd1, 0xe8, 0x7b, 0x6c, 0x01])
        .build();
    let revoked = ca
        .client("revoked.bench")
        .serial(&[0x7e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
        .build();

    // 1M revoked serials (20-byte, like real CA serials) plus the revoked one.
    let t = Instant::now();
    let mut json = String::with_capacity(keys * 70);
    json.push_str("{\"data\":[");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..keys {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let serial = format!("{:016x}{:016x}{:08x}", x, x.rotate_left(17), i);
        json.push_str(&format!("{{\"key\":\"{serial}\",\"value\":\"\"}},"));
    }
    json.push_str(&format!(
        "{{\"key\":\"{}\",\"value\":\"\"}}]}}",
        hex(&[0x7e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
    ));
    let limits = tollgate_kvs::Limits {
        max_store_bytes: 1 << 30,
        ..tollgate_kvs::Limits::default()
    };
    let store =
        tollgate_kvs::Store::from_import_json("revoked", limits, json.as_bytes()).expect("import");
    println!(
        "store: {} keys imported in {:?}",
        store.snapshot().len(),
        t.elapsed()
    );
    drop(json);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new(RuntimeConfig {
        max_calls_per_instance: u32::try_from(env_usize("BENCH_REUSE", 1)).unwrap_or(u32::MAX),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let wasm = match std::env::var_os("BENCH_WASM") {
        Some(path) => std::fs::read(path).expect("BENCH_WASM"),
        None if std::env::var("BENCH_FUNCTION").as_deref() == Ok("counter") => {
            tollgate_guests::COUNTER_WASM.to_vec()
        }
        None => tollgate_guests::REVOCATION_WASM.to_vec(),
    };
    let cold = std::env::var("BENCH_COLD").as_deref() == Ok("1");
    // BENCH_SWEEP_MB=32 evicts this VM's L3 as well: the call then runs as
    // it does inside a busy proxy (see PERFORMANCE.md).
    let sweep_mb = env_usize("BENCH_SWEEP_MB", 2);
    let stride = env_usize("BENCH_STRIDE", 64).max(1);
    let mut sweep = vec![1u8; if cold { sweep_mb << 20 } else { 0 }];
    let t = Instant::now();
    let function = rt
        .block_on(runtime.load(FunctionSpec {
            name: "revocation",
            // BENCH_FUNCTION=counter measures the floor: a guest that makes
            // one host call and decides.
            wasm: &wasm,
            limits: Limits::default(),
            stores: StoreSet::new([Arc::new(store)]),
        }))
        .expect("load");
    println!("load (compile + link + trial instance): {:?}", t.elapsed());

    let mode = std::env::var("BENCH_REPLAY").unwrap_or_default();
    let replay = mode == "1";
    let connection = |cert: &tollgate_testkit::TestCert| {
        let mut conn = ConnectionInfo::for_test();
        conn.chain = vec![CertSource::Der(cert.der.clone())];
        Arc::new(conn)
    };
    // BENCH_REPLAY=new: a certificate per call, never seen before.
    let new_clients: Vec<Arc<ConnectionInfo>> = if mode == "new" {
        (0..calls as u32 + 1_000)
            .map(|i| {
                connection(
                    &ca.client("new.bench")
                        .serial(&(i + 1).to_be_bytes())
                        .build(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut next_client = new_clients.iter();
    let mut call = |conn: Arc<ConnectionInfo>| {
        if let Some(conn) = next_client.next() {
            rt.block_on(function.call(conn.clone()))
        } else if replay {
            rt.block_on(function.call(conn))
        } else {
            rt.block_on(function.run(conn))
        }
    };
    let cases: &[(&str, &tollgate_testkit::TestCert)] = if new_clients.is_empty() {
        &[("valid (miss)", &valid), ("revoked (hit)", &revoked)]
    } else {
        &[("valid (miss), a new client every call", &valid)]
    };
    for &(label, cert) in cases {
        let conn = connection(cert);
        // Warm up the pool and caches.
        for _ in 0..1_000 {
            call(conn.clone());
        }
        let mut samples = Vec::with_capacity(calls);
        let mut last = None;
        let wall = Instant::now();
        let mut swept = Duration::ZERO;
        for i in 0..calls {
            if cold {
                let t = Instant::now();
                for line in sweep.chunks_mut(stride) {
                    line[0] = line[0].wrapping_add(i as u8);
                }
                std::hint::black_box(&sweep);
                swept += t.elapsed();
            }
            let t = Instant::now();
            let outcome = call(conn.clone());
            samples.push(t.elapsed());
            last = Some(outcome);
        }
        let wall = wall.elapsed() - swept;
        samples.sort_unstable();
        let outcome = last.expect("at least one call");
        assert_eq!(outcome.replayed, replay, "BENCH_REPLAY={replay}");
        println!(
            "{label}: decision {} custom data {:?} | {calls} calls, p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs, {:.0} calls/s on one thread",
            outcome.decision,
            outcome.custom_data,
            percentile(&samples, 0.50).as_secs_f64() * 1e6,
            percentile(&samples, 0.90).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            samples[samples.len() - 1].as_secs_f64() * 1e6,
            calls as f64 / wall.as_secs_f64(),
        );
    }
}
