//! KVS lookups with 1,000,000 keys.
//!
//! Run: `cargo bench -p tollgate-kvs --bench lookup`

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n: usize = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keys: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{:040x}",
                (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            )
        })
        .collect();
    let mut json = String::with_capacity(n * 64);
    json.push_str("{\"data\":[");
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!("{{\"key\":\"{k}\",\"value\":\"2026-01-01\"}}"));
    }
    json.push_str("]}");
    let limits = tollgate_kvs::Limits {
        max_store_bytes: 1 << 30,
        ..tollgate_kvs::Limits::default()
    };
    let t = Instant::now();
    let store =
        tollgate_kvs::Store::from_import_json("bench", limits, json.as_bytes()).expect("import");
    let import = t.elapsed();
    let snap = store.snapshot();
    println!(
        "import: {} keys ({} MB of JSON) in {:?}; store holds {} bytes of keys and values",
        snap.len(),
        json.len() / 1_000_000,
        import,
        snap.meta().total_size_bytes
    );
    let misses: Vec<String> = (0..n)
        .map(|i| format!("{:040x}", i as u128 * 7 + 3))
        .collect();
    for (label, probe) in [("hit", &keys), ("miss", &misses)] {
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut found = 0usize;
            for k in probe.iter().step_by(7) {
                found += usize::from(black_box(&snap).exists(black_box(k)));
            }
            let per = t.elapsed().as_nanos() as f64 / (probe.len() / 7) as f64;
            black_box(found);
            rounds.push(per);
        }
        rounds.sort_by(f64::total_cmp);
        println!(
            "exists ({label}): median {:.0} ns/lookup over 5 rounds of {} lookups",
            rounds[2],
            probe.len() / 7
        );
    }
    let t = Instant::now();
    for _ in 0..1_000_000 {
        black_box(store.snapshot());
    }
    println!("snapshot(): {:.1} ns", t.elapsed().as_nanos() as f64 / 1e6);
}
