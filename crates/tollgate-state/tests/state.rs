//! The state store on real files: writes survive reopening, refused writes
//! leave nothing behind, seeding happens once.

use std::sync::Arc;

use tollgate_kvs::{Limits, UpdateError};
use tollgate_state::{FunctionRecord, Opened, Stage, State};

fn kv(k: &str, v: &str) -> (String, Vec<u8>) {
    (k.to_owned(), v.as_bytes().to_vec())
}

#[test]
fn kvs_writes_survive_reopening_with_their_etag() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"data":[{"key":"a","value":"1"},{"key":"b","value":"2"}]}"#,
    )
    .unwrap();

    let state = Arc::new(State::open(&dir.path().join("state")).unwrap());
    let (store, opened) = state
        .open_store("revoked", Limits::default(), Some(&seed))
        .unwrap();
    assert_eq!(opened, Opened::Seeded);
    let etag = store.snapshot().meta().etag.clone();
    let after = store
        .update(&etag, vec![kv("c", "3"), kv("a", "10")], vec!["b".into()])
        .unwrap();
    let etag = after.meta().etag.clone();
    // A stale ETag changes nothing, in memory or on disk.
    let stale = store.update("E1-stale", vec![kv("z", "9")], vec![]);
    assert!(matches!(stale, Err(UpdateError::PreconditionFailed { .. })));
    drop(store);
    drop(state);

    // The seed file changes, but the state owns the store now.
    std::fs::write(&seed, r#"{"data":[{"key":"other","value":"x"}]}"#).unwrap();
    let state = Arc::new(State::open(&dir.path().join("state")).unwrap());
    let (store, opened) = state
        .open_store("revoked", Limits::default(), Some(&seed))
        .unwrap();
    assert_eq!(opened, Opened::FromState);
    let snap = store.snapshot();
    assert_eq!(snap.meta().etag, etag);
    assert_eq!(snap.get("a"), Some(&b"10"[..]));
    assert_eq!(snap.get("c"), Some(&b"3"[..]));
    assert!(!snap.exists("b"));
    assert!(!snap.exists("z"));
    assert!(!snap.exists("other"));
    assert_eq!(snap.len(), 2);

    // The next write continues the version sequence with a new ETag.
    let next = store.update(&etag, vec![kv("d", "4")], vec![]).unwrap();
    assert_eq!(next.meta().version, snap.meta().version + 1);
    assert_ne!(next.meta().etag, etag);
}

#[test]
fn an_import_replaces_everything_durably_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(State::open(dir.path()).unwrap());
    let (store, opened) = state.open_store("s", Limits::default(), None).unwrap();
    assert_eq!(opened, Opened::Empty);
    let etag = store.snapshot().meta().etag.clone();
    store.update(&etag, vec![kv("old", "1")], vec![]).unwrap();
    let etag = store.snapshot().meta().etag.clone();
    let bad = store.import_json_if_match(&etag, br#"{"data":[{"key":"x"}]}"#);
    assert!(matches!(bad, Err(UpdateError::Import(_))), "{bad:?}");
    store
        .import_json_if_match(&etag, br#"{"data":[{"key":"new","value":"2"}]}"#)
        .unwrap();
    drop(store);
    drop(state);
    let state = Arc::new(State::open(dir.path()).unwrap());
    let (store, _) = state.open_store("s", Limits::default(), None).unwrap();
    let snap = store.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap.get("new"), Some(&b"2"[..]));
}

#[test]
fn a_restored_store_is_checked_against_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(State::open(dir.path()).unwrap());
    let (store, _) = state.open_store("s", Limits::default(), None).unwrap();
    let etag = store.snapshot().meta().etag.clone();
    store
        .update(&etag, vec![kv("key", "a long value")], vec![])
        .unwrap();
    drop(store);
    let tight = Limits {
        max_value_bytes: 4,
        ..Limits::default()
    };
    let err = state.open_store("s", tight, None).unwrap_err();
    assert!(err.to_string().contains("over the limit of 4"), "{err}");
}

fn record(name: &str, stage: Stage, sha: &str, etag: &str) -> FunctionRecord {
    FunctionRecord {
        name: name.into(),
        stage,
        etag: etag.into(),
        sha256: sha.into(),
        size: 3,
        created_ms: 1,
        modified_ms: 2,
        time_limit_us: Some(5000),
        memory_limit_bytes: None,
        kvs: vec!["revoked".into()],
        comment: String::new(),
    }
}

#[test]
fn function_records_and_code_persist_and_unused_code_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let dev = record("f", Stage::Development, "aaa", "E1");
    state.put_functions(&[&dev], Some(("aaa", b"one"))).unwrap();
    let live = record("f", Stage::Live, "aaa", "E2");
    state.put_functions(&[&live], None).unwrap();
    let dev2 = record("f", Stage::Development, "bbb", "E3");
    state
        .put_functions(&[&dev2], Some(("bbb", b"two")))
        .unwrap();
    drop(state);

    let state = State::open(dir.path()).unwrap();
    assert_eq!(
        state.function("f", Stage::Live).unwrap(),
        Some(live.clone())
    );
    assert_eq!(state.function("f", Stage::Development).unwrap(), Some(dev2));
    assert_eq!(
        state.function_code("aaa").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        state.function_code("bbb").unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(state.functions().unwrap().len(), 2);

    // Publishing the new code makes the old code unused: it is dropped.
    let live2 = record("f", Stage::Live, "bbb", "E4");
    state.put_functions(&[&live2], None).unwrap();
    assert_eq!(state.function_code("aaa").unwrap(), None);

    assert!(state.delete_function("f").unwrap());
    assert!(!state.delete_function("f").unwrap());
    assert_eq!(state.function_code("bbb").unwrap(), None);
    assert!(state.functions().unwrap().is_empty());
}

#[test]
fn a_second_process_cannot_open_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let _first = State::open(dir.path()).unwrap();
    let second = State::open(dir.path());
    assert!(second.is_err());
}

/// Seeding is one transaction: a function that got a record in the meantime
/// makes the whole seed fail, the store included; a seed that succeeds is
/// durable and the store's later writes persist.
#[test]
fn a_seed_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, r#"{"data":[{"key":"a","value":"1"}]}"#).unwrap();
    let state = Arc::new(State::open(&dir.path().join("state")).unwrap());

    // Someone uploaded "f" while the load was compiling its file version.
    let theirs = record("f", Stage::Development, "ccc", "E9");
    state
        .put_functions(&[&theirs], Some(("ccc", b"theirs")))
        .unwrap();
    let (store, opened) = state
        .prepare_store("revoked", Limits::default(), Some(&seed))
        .unwrap();
    assert_eq!(opened, Opened::Seeded);
    let dev = record("f", Stage::Development, "aaa", "E1");
    let live = record("f", Stage::Live, "aaa", "E2");
    let err = state
        .seed(&[&store], &[(&dev, &live, b"mine".as_slice())])
        .unwrap_err();
    assert!(err.to_string().contains("functions[f]"), "{err}");
    // Nothing was written: theirs is intact, the store is still unknown.
    assert_eq!(
        state.function("f", Stage::Development).unwrap(),
        Some(theirs)
    );
    assert_eq!(state.function("f", Stage::Live).unwrap(), None);
    assert_eq!(state.function_code("aaa").unwrap(), None);
    let (_, opened) = state
        .prepare_store("revoked", Limits::default(), None)
        .unwrap();
    assert_eq!(opened, Opened::Empty);

    // A seed without the conflict lands, store and function together.
    let (store, _) = state
        .prepare_store("revoked", Limits::default(), Some(&seed))
        .unwrap();
    let g_dev = record("g", Stage::Development, "bbb", "E3");
    let g_live = record("g", Stage::Live, "bbb", "E4");
    state
        .seed(&[&store], &[(&g_dev, &g_live, b"code".as_slice())])
        .unwrap();
    let etag = store.snapshot().meta().etag.clone();
    store.update(&etag, vec![kv("b", "2")], vec![]).unwrap();
    drop(store);
    drop(state);

    let state = Arc::new(State::open(&dir.path().join("state")).unwrap());
    let (store, opened) = state
        .prepare_store("revoked", Limits::default(), Some(&seed))
        .unwrap();
    assert_eq!(opened, Opened::FromState);
    assert_eq!(store.snapshot().get("a"), Some(&b"1"[..]));
    assert_eq!(store.snapshot().get("b"), Some(&b"2"[..]));
    assert_eq!(state.function("g", Stage::Live).unwrap(), Some(g_live));
    assert_eq!(
        state.function_code("bbb").unwrap().as_deref(),
        Some(&b"code"[..])
    );
}
