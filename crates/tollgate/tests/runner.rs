//! `tollgate test`, the local runner, driven as a user would: the real
//! binary, real compiled functions, certificates generated here.

use std::path::Path;
use std::process::{Command, Output};

use tollgate_guests as guests;
use tollgate_testkit::{TestCa, kvs_json, write};

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .expect("run tollgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

struct Fixture {
    _dir: tempfile::TempDir,
    valid: std::path::PathBuf,
    revoked: std::path::PathBuf,
    kvs: std::path::PathBuf,
    dir: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = TestCa::root("Runner CA");
    let inter = root.intermediate("Runner Issuing CA");
    let valid = inter.client("valid.example").serial(&[0x4a, 0x3f]).build();
    let revoked = inter
        .client("revoked.example")
        .serial(&[0x9a, 0x01])
        .build();
    let path = dir.path().to_path_buf();
    Fixture {
        valid: write(&path, "valid.pem", format!("{}{}", valid.pem, inter.pem())),
        revoked: write(&path, "revoked.pem", &revoked.pem),
        kvs: write(
            &path,
            "revoked.json",
            kvs_json([("9a01", "key compromise")]),
        ),
        dir: path,
        _dir: dir,
    }
}

#[test]
fn valid_certificate_is_allowed_and_the_output_says_why() {
    let f = fixture();
    let kvs = format!("revoked={}", s(&f.kvs));
    let o = tollgate(&[
        "test",
        guests::REVOCATION_PATH,
        "--cert",
        s(&f.valid),
        "--kvs",
        &kvs,
        "--expect",
        "allow",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("decision:    allow"), "{out}");
    assert!(out.contains("status:      Success"), "{out}");
    assert!(out.contains("custom data: VALID:4a3f"), "{out}");
    assert!(out.contains("(holds)"), "{out}");
    assert!(out.contains("compute:"), "{out}");
}

#[test]
fn revoked_certificate_is_denied_in_json() {
    let f = fixture();
    let kvs = format!("revoked={}", s(&f.kvs));
    let o = tollgate(&[
        "test",
        guests::REVOCATION_PATH,
        "--cert",
        s(&f.revoked),
        "--kvs",
        &kvs,
        "--json",
        "--expect",
        "deny",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "certificate revoked");
    assert_eq!(v["customData"], "REVOKED:9a01");
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["expectationHolds"], true);
    assert!(v["durationUs"].as_u64().is_some());
    assert!(v["computeUtilization"].as_u64().is_some_and(|u| u <= 100));
}

/// The store limits a `[kvs.NAME]` section can raise, the runner can too: a
/// value over the default 1 KiB is refused by default and loads with
/// `--kvs-max-value-bytes`; a key over 512 bytes likewise with
/// `--kvs-max-key-bytes`.
#[test]
fn store_limits_can_be_raised_as_in_the_config() {
    let f = fixture();
    let long_value = "x".repeat(2000);
    let long_key = "k".repeat(600);
    let values = write(
        &f.dir,
        "values.json",
        kvs_json([("9a01", long_value.as_str())]),
    );
    let keys = write(&f.dir, "keys.json", kvs_json([(long_key.as_str(), "1")]));
    let run = |file: &Path, extra: &[&str]| {
        let kvs = format!("revoked={}", s(file));
        let mut args = vec!["test", guests::REVOCATION_PATH, "--cert", s(&f.revoked)];
        args.extend_from_slice(&["--kvs", &kvs]);
        args.extend_from_slice(extra);
        tollgate(&args)
    };
    let o = run(&values, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(
        &values,
        &["--kvs-max-value-bytes", "4096", "--expect", "deny"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run(&keys, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&keys, &["--kvs-max-key-bytes", "1024", "--expect", "allow"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn an_unmet_expectation_exits_1() {
    let f = fixture();
    let kvs = format!("revoked={}", s(&f.kvs));
    let o = tollgate(&[
        "test",
        guests::REVOCATION_PATH,
        "--cert",
        s(&f.revoked),
        "--kvs",
        &kvs,
        "--expect",
        "allow",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("DOES NOT HOLD"), "{}", stdout(&o));
}

#[test]
fn no_certificate_and_a_json_connection() {
    let f = fixture();
    let kvs = format!("revoked={}", s(&f.kvs));
    let o = tollgate(&[
        "test",
        guests::REVOCATION_PATH,
        "--kvs",
        &kvs,
        "--expect",
        "deny",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("reason:      no client certificate"));

    let conn = write(
        &f.dir,
        "conn.json",
        r#"{"clientIp":"203.0.113.42","clientCertificate":{"certificates":{"leaf":{"serialNumber":"9a:01"}}}}"#,
    );
    let o = tollgate(&[
        "test",
        guests::REVOCATION_PATH,
        "--connection",
        s(&conn),
        "--kvs",
        &kvs,
        "--expect",
        "deny",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("REVOKED:9a01"));
}

#[test]
fn function_errors_are_reported_with_their_kind() {
    let o = tollgate(&["test", guests::INFINITE_LOOP_PATH, "--expect", "deny"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Failed:ConnectionFunctionError"), "{out}");
    assert!(out.contains("(timeout)"), "{out}");
    assert!(out.contains("compute:     100 %"), "{out}");
}

#[test]
fn unusable_input_exits_2_naming_the_problem() {
    let f = fixture();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["test".into(), "/nonexistent/f.wasm".into()],
            "/nonexistent/f.wasm",
        ),
        (
            vec!["test".into(), guests::WRONG_WORLD_PATH.into()],
            "does not target",
        ),
        (
            vec![
                "test".into(),
                guests::REVOCATION_PATH.into(),
                "--cert".into(),
                s(&f.kvs).into(),
            ],
            "no certificate found",
        ),
        (
            vec![
                "test".into(),
                guests::REVOCATION_PATH.into(),
                "--kvs".into(),
                format!(
                    "revoked={}",
                    s(&write(
                        &f.dir,
                        "dup.json",
                        r#"{"data":[{"key":"a","value":"1"},{"key":"a","value":"2"}]}"#
                    ))
                ),
            ],
            "entry 1 (key \"a\"): duplicate key, first at entry 0",
        ),
        (
            vec![
                "test".into(),
                guests::REVOCATION_PATH.into(),
                "--connection".into(),
                s(&write(&f.dir, "bad.json", r#"{"clientIp":"x"}"#)).into(),
            ],
            "clientIp",
        ),
        (
            vec![
                "test".into(),
                guests::REVOCATION_PATH.into(),
                "--kvs".into(),
                "nonsense".into(),
            ],
            "NAME=FILE",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = tollgate(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: {:?} should contain {needle:?}",
            stderr(&o)
        );
    }
}

fn example_cases(wasm: &str, cases: &str, count: usize) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../functions")
        .join(cases);
    let o = tollgate(&["test", wasm, "--cases", s(&file)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.trim_end()
            .ends_with(&format!("{count} passed, 0 failed")),
        "{out}"
    );
}

#[test]
fn revocation_cases_pass() {
    example_cases(guests::REVOCATION_PATH, "revocation/cases.toml", 4);
}

#[test]
fn subject_allowlist_cases_pass() {
    example_cases(
        guests::SUBJECT_ALLOWLIST_PATH,
        "subject-allowlist/cases.toml",
        5,
    );
}

#[test]
fn ip_allowlist_cases_pass() {
    example_cases(guests::IP_ALLOWLIST_PATH, "ip-allowlist/cases.toml", 5);
}

#[test]
fn a_failing_case_is_reported_and_exits_1() {
    let f = fixture();
    let cases = write(
        &f.dir,
        "cases.toml",
        format!(
            r#"
[kvs]
revoked = "revoked.json"

[[case]]
name = "valid cert"
cert = "{valid}"
expect = "allow"
custom_data = "VALID:4a3f"

[[case]]
name = "wrong expectation"
cert = "{revoked}"
expect = "allow"
"#,
            valid = s(&f.valid),
            revoked = s(&f.revoked)
        ),
    );
    let o = tollgate(&["test", guests::REVOCATION_PATH, "--cases", s(&cases)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("ok    valid cert"), "{out}");
    assert!(
        out.contains("FAIL  wrong expectation: expected allow, got deny"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("1 passed, 1 failed"), "{out}");

    let broken = write(
        &f.dir,
        "broken.toml",
        "[[case]]\nname = \"x\"\nexpect = \"perhaps\"\n",
    );
    let o = tollgate(&["test", guests::REVOCATION_PATH, "--cases", s(&broken)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("broken.toml"), "{}", stderr(&o));
}

/// The guest SDK's README shows the revocation example in full; keep the two
/// identical so the documented function is the tested one.
#[test]
fn the_guest_sdk_readme_shows_the_tested_revocation_function() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("guest-sdk/README.md")).unwrap();
    let source = std::fs::read_to_string(root.join("functions/revocation/src/lib.rs")).unwrap();
    let start = readme.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let end = start + readme[start..].find("```").expect("end of block");
    assert_eq!(readme[start..end], source);
}
