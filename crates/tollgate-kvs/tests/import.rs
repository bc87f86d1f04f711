//! The import format, its errors, snapshots and updates.

use tollgate_kvs::{EntryProblem, ImportError, Limits, Store, UpdateError};

fn import(json: &str) -> Result<Store, ImportError> {
    Store::from_import_json("t", Limits::default(), json.as_bytes())
}

fn err(json: &str) -> String {
    import(json).unwrap_err().to_string()
}

#[test]
fn every_import_error_names_its_entry() {
    let long_key = "k".repeat(513);
    let long_value = "v".repeat(1025);
    let cases: Vec<(String, &str)> = vec![
        ("{\"data\" [".into(), "not valid JSON at line 1"),
        ("[1,2]".into(), "the top level must be an object"),
        ("{}".into(), "missing \"data\""),
        ("{\"data\": {}}".into(), "\"data\" must be an array"),
        (
            "{\"data\": [], \"items\": []}".into(),
            "unknown top-level field \"items\"",
        ),
        (
            "{\"data\": [], \"data\": []}".into(),
            "\"data\" appears twice",
        ),
        (
            r#"{"data":[{"key":"a","value":"1"}, 5]}"#.into(),
            "entry 1: an entry must be an object",
        ),
        (
            r#"{"data":[{"value":"1"}]}"#.into(),
            "entry 0: missing \"key\"",
        ),
        (
            r#"{"data":[{"key":"a"}]}"#.into(),
            "entry 0 (key \"a\"): missing \"value\"",
        ),
        (
            r#"{"data":[{"key":"a","value":"1","ttl":3}]}"#.into(),
            "entry 0 (key \"a\"): unknown field \"ttl\"",
        ),
        (
            r#"{"data":[{"key":7,"value":"1"}]}"#.into(),
            "entry 0: \"key\" must be a string",
        ),
        (
            r#"{"data":[{"key":"a","value":{"x":1}}]}"#.into(),
            "entry 0 (key \"a\"): \"value\" must be a string",
        ),
        (
            r#"{"data":[{"key":"","value":"1"}]}"#.into(),
            "entry 0 (key \"\"): the key is empty",
        ),
        (
            format!(r#"{{"data":[{{"key":"{long_key}","value":"1"}}]}}"#),
            "the key is 513 bytes, over the limit of 512",
        ),
        (
            format!(r#"{{"data":[{{"key":"a","value":"{long_value}"}}]}}"#),
            "entry 0 (key \"a\"): the value is 1025 bytes, over the limit of 1024",
        ),
        (
            r#"{"data":[{"key":"a","value":"1"},{"key":"b","value":"2"},{"key":"a","value":"3"}]}"#
                .into(),
            "entry 2 (key \"a\"): duplicate key, first at entry 0",
        ),
        (
            r#"{"data":[{"key":"a","value":"1"},{"key":"b","value":"2" ]}"#.into(),
            "entry 1: expected",
        ),
        (r#"{"data":[]} trailing"#.into(), "trailing characters"),
        (
            r#"{"data":[{"key":"a","value":"\ud800"}]}"#.into(),
            "entry 0:",
        ),
    ];
    for (json, needle) in cases {
        let e = err(&json);
        assert!(
            e.contains(needle),
            "{json:.80}: {e:?} should contain {needle:?}"
        );
    }
}

#[test]
fn invalid_utf8_names_the_entry() {
    let mut json = br#"{"data":[{"key":"a","value":"1"},{"key":"b","value":"x"#.to_vec();
    json.extend_from_slice(&[0xff, 0xfe]);
    json.extend_from_slice(br#""}]}"#);
    let e = Store::from_import_json("t", Limits::default(), &json).unwrap_err();
    assert!(matches!(e, ImportError::Entry { index: 1, .. }), "{e}");
}

#[test]
fn store_size_limit_is_checked_at_the_entry_that_breaks_it() {
    let limits = Limits {
        max_store_bytes: 10,
        ..Limits::default()
    };
    let e = Store::from_import_json(
        "t",
        limits,
        br#"{"data":[{"key":"ab","value":"cd"},{"key":"efgh","value":"ijkl"}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        e,
        ImportError::Entry {
            index: 1,
            key: Some("efgh".into()),
            problem: EntryProblem::StoreTooLarge { size: 12, max: 10 }
        }
    );
}

#[test]
fn lookups_meta_and_paging() {
    let s = import(
        r#"{"data":[{"key":"b","value":"2"},{"key":"a","value":"1"},{"key":"c","value":""}]}"#,
    )
    .unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.get("a"), Some(&b"1"[..]));
    assert_eq!(snap.get("c"), Some(&b""[..]));
    assert_eq!(snap.get("z"), None);
    assert!(snap.exists("b") && !snap.exists("B"));
    assert_eq!(snap.meta().key_count, 3);
    assert_eq!(snap.meta().total_size_bytes, 5);
    assert!(snap.meta().last_modified_rfc3339().ends_with('Z'));
    let page: Vec<&str> = snap
        .keys_after(None, 2)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(page, ["a", "b"]);
    let page: Vec<&str> = snap
        .keys_after(Some("b"), 2)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(page, ["c"]);
}

#[test]
fn a_failed_import_changes_nothing_and_old_snapshots_stay() {
    let s = import(r#"{"data":[{"key":"a","value":"1"}]}"#).unwrap();
    let before = s.snapshot();
    assert!(
        s.import_json(br#"{"data":[{"key":"a","value":"2"},{"key":"a","value":"3"}]}"#)
            .is_err()
    );
    assert!(std::sync::Arc::ptr_eq(&before, &s.snapshot()));
    s.import_json(br#"{"data":[{"key":"b","value":"2"}]}"#)
        .unwrap();
    assert_eq!(
        before.get("a"),
        Some(&b"1"[..]),
        "a held snapshot never changes"
    );
    assert!(!s.snapshot().exists("a"));
    assert_ne!(before.meta().etag, s.snapshot().meta().etag);
    assert_eq!(before.meta().created, s.snapshot().meta().created);
}

#[test]
fn updates_need_the_current_etag_and_are_all_or_nothing() {
    let s = import(r#"{"data":[{"key":"a","value":"1"},{"key":"b","value":"2"}]}"#).unwrap();
    let etag = s.snapshot().meta().etag.clone();
    let e = s
        .update("stale", vec![("c".into(), b"3".to_vec())], vec![])
        .unwrap_err();
    assert!(matches!(e, UpdateError::PreconditionFailed { .. }));
    let e = s
        .update(
            &etag,
            vec![("c".into(), b"3".to_vec())],
            vec!["missing".into()],
        )
        .unwrap_err();
    assert_eq!(e, UpdateError::NoSuchKey("missing".into()));
    assert!(!s.snapshot().exists("c"), "nothing applied");
    let e = s
        .update(&etag, vec![("a".into(), b"x".to_vec())], vec!["a".into()])
        .unwrap_err();
    assert_eq!(e, UpdateError::PutAndDelete("a".into()));
    let e = s
        .update(&etag, vec![("k".into(), vec![b'v'; 2000])], vec![])
        .unwrap_err();
    assert!(matches!(
        e,
        UpdateError::Invalid {
            problem: EntryProblem::ValueTooLong { .. },
            ..
        }
    ));

    let snap = s
        .update(
            &etag,
            vec![("a".into(), b"10".to_vec()), ("c".into(), b"3".to_vec())],
            vec!["b".into()],
        )
        .unwrap();
    assert_eq!(snap.get("a"), Some(&b"10"[..]));
    assert_eq!(snap.get("c"), Some(&b"3"[..]));
    assert!(!snap.exists("b"));
    assert_ne!(snap.meta().etag, etag);
    assert_eq!(snap.meta().version, 3);
}

#[test]
fn a_million_keys_import_and_look_up() {
    let n = 1_000_000;
    let mut json = String::with_capacity(n * 60);
    json.push_str("{\"data\":[");
    for i in 0..n {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"key\":\"{:032x}\",\"value\":\"r\"}}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ));
    }
    json.push_str("]}");
    let limits = Limits {
        max_store_bytes: 64 << 20,
        ..Limits::default()
    };
    let s = Store::from_import_json("revoked", limits, json.as_bytes()).unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.len(), n);
    assert_eq!(snap.meta().total_size_bytes, n as u64 * 33);
    for i in (0..n).step_by(9973) {
        assert!(snap.exists(&format!(
            "{:032x}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )));
    }
    assert!(!snap.exists(&format!("{:032x}", 1u128)));
    // The default 5 MiB limit refuses it, naming the entry where it breaks.
    let e = Store::from_import_json("revoked", Limits::default(), json.as_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            ImportError::Entry {
                problem: EntryProblem::StoreTooLarge { .. },
                ..
            }
        ),
        "{e}"
    );
}
