//! Updates against a model: a BTreeMap receives the same changes, and the
//! store must agree with it on every key, on counts and sizes, and on paged
//! listing — across overlay writes and the rebuilds that fold them in.

use std::collections::BTreeMap;

use tollgate_kvs::{Limits, Store, UpdateError};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn check(store: &Store, model: &BTreeMap<String, Vec<u8>>, universe: &[String]) {
    let snap = store.snapshot();
    assert_eq!(snap.len(), model.len());
    let total: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(snap.meta().total_size_bytes, total as u64);
    for key in universe {
        assert_eq!(
            snap.get(key),
            model.get(key).map(Vec::as_slice),
            "key {key}"
        );
    }
    let mut iterated: Vec<(String, Vec<u8>)> = snap
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect();
    iterated.sort();
    let expected: Vec<(String, Vec<u8>)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(iterated, expected);
    // Paged listing, 7 at a time, is the model in key order.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = snap.keys_after(after.as_deref(), 7);
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().0.to_owned());
        paged.extend(page.into_iter().map(|(k, v)| (k.to_owned(), v.to_vec())));
    }
    assert_eq!(paged, expected);
}

#[test]
fn overlay_writes_and_rebuilds_agree_with_a_model() {
    let universe: Vec<String> = (0..60).map(|i| format!("key-{i:03}")).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seed: Vec<(String, String)> = universe
        .iter()
        .step_by(3)
        .map(|k| (k.clone(), format!("seed-{k}")))
        .collect();
    let json = serde_json::json!({
        "data": seed.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect::<Vec<_>>()
    })
    .to_string();
    let store = Store::from_import_json("s", Limits::default(), json.as_bytes())
        .unwrap()
        .with_overlay_limit(9);
    let mut model: BTreeMap<String, Vec<u8>> =
        seed.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    check(&store, &model, &universe);
    for round in 0..400 {
        let etag = store.snapshot().meta().etag.clone();
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        let mut touched = std::collections::HashSet::new();
        for _ in 0..=rng.below(4) {
            let key = universe[rng.below(universe.len() as u64) as usize].clone();
            if !touched.insert(key.clone()) {
                continue;
            }
            if model.contains_key(&key) && rng.below(2) == 0 {
                deletes.push(key);
            } else {
                puts.push((key, format!("v{round}").into_bytes()));
            }
        }
        store.update(&etag, puts.clone(), deletes.clone()).unwrap();
        for k in deletes {
            model.remove(&k);
        }
        for (k, v) in puts {
            model.insert(k, v);
        }
        check(&store, &model, &universe);
    }
}

#[test]
fn refused_updates_change_nothing() {
    let store = Store::new(
        "s",
        Limits {
            max_store_bytes: 40,
            ..Limits::default()
        },
    )
    .with_overlay_limit(2);
    let etag = store.snapshot().meta().etag.clone();
    let snap = store
        .update(
            &etag,
            vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
            vec![],
        )
        .unwrap();
    let etag = snap.meta().etag.clone();
    let cases = [
        (vec![], vec!["a".to_owned(), "a".to_owned()]),
        (vec![("big".to_owned(), vec![b'x'; 40])], vec![]),
        (vec![], vec!["nope".to_owned()]),
    ];
    for (puts, deletes) in cases {
        let err = store.update(&etag, puts, deletes).unwrap_err();
        assert!(
            matches!(
                err,
                UpdateError::DuplicateDelete(_)
                    | UpdateError::Invalid { .. }
                    | UpdateError::NoSuchKey(_)
            ),
            "{err:?}"
        );
        assert_eq!(store.snapshot().meta().etag, etag);
        assert_eq!(store.snapshot().len(), 2);
    }
}
