use std::path::Path;
use std::time::Duration;

use tollgate_config::{Config, ConfigError, LogTarget, MtlsMode, OnError, parse_duration};

fn docs_example() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("/etc/tollgate/t.toml"),
        Path::new("/etc/tollgate"),
    )
}

const MINIMAL: &str = r#"
[[listener]]
address = "127.0.0.1:8443"
[[listener.certificate]]
cert = "s.pem"
key = "s.key"
[listener.mtls]
trust_store = "ca.pem"
[listener.origin]
url = "http://127.0.0.1:8080"
"#;

#[test]
fn the_documented_example_loads_with_every_key() {
    let c = parse(&docs_example()).unwrap_or_else(|e| panic!("{e}"));
    let l = &c.listeners[0];
    assert_eq!(l.name, "public");
    assert_eq!(
        c.state.as_ref().unwrap().dir,
        Path::new("/var/lib/tollgate")
    );
    let admin = c.admin.as_ref().unwrap();
    assert_eq!(admin.address.to_string(), "127.0.0.1:9901");
    assert_eq!(
        admin.token_file.as_deref(),
        Some(Path::new("/etc/tollgate/admin.token"))
    );
    assert_eq!(admin.max_body_bytes, 32 << 20);
    assert_eq!(l.certificates.len(), 2);
    assert_eq!(l.mtls.mode, MtlsMode::Required);
    assert_eq!(
        l.mtls.trust_store.as_deref(),
        Some(Path::new("/etc/tollgate/tls/client-cas.pem"))
    );
    assert_eq!(l.function.as_ref().unwrap().on_error, OnError::Deny);
    let url = l.origin.parsed_url().unwrap();
    assert!(url.https);
    assert_eq!((url.host.as_str(), url.port), ("origin.internal", 9443));
    assert_eq!(url.path_prefix, "/api");
    assert_eq!(l.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(
        c.functions["revocation"].time_limit,
        Some(Duration::from_millis(5))
    );
    assert_eq!(
        c.logs.access,
        LogTarget::File("/var/log/tollgate/access.log".into())
    );
    assert_eq!(c.runtime.max_inline_time, Duration::from_millis(10));
}

#[test]
fn defaults_match_the_reference() {
    let c = parse(MINIMAL).unwrap();
    let l = &c.listeners[0];
    assert_eq!(l.name, "127.0.0.1:8443");
    assert_eq!(l.mtls.mode, MtlsMode::Required);
    assert_eq!(l.mtls.max_chain_depth, 4);
    assert_eq!(
        (
            l.mtls.max_bundle_bytes,
            l.mtls.max_ca_certs,
            l.mtls.max_cert_bytes
        ),
        (65536, 25, 16384)
    );
    assert!(!l.mtls.ignore_certificate_expiry && !l.mtls.advertise_ca_names);
    assert!(l.headers.cloudfront && !l.headers.alb && !l.headers.rfc9440);
    assert_eq!(l.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.logs.connection, LogTarget::Stdout);
    assert_eq!(c.runtime.max_inline_time, Duration::from_millis(10));
    assert_eq!(c.runtime.max_calls_per_instance, 1);
}

#[test]
fn max_calls_per_instance_is_at_least_one() {
    let with = |value: &str| {
        parse(&format!(
            "[runtime]\nmax_calls_per_instance = {value}\n{MINIMAL}"
        ))
    };
    assert_eq!(with("1000").unwrap().runtime.max_calls_per_instance, 1000);
    let err = with("0").unwrap_err().to_string();
    assert!(err.contains("runtime.max_calls_per_instance"), "{err}");
    assert!(err.contains("at least 1"), "{err}");
    assert!(with("-1").is_err());
}

#[test]
fn max_inline_time_is_a_duration_of_at_most_a_second() {
    let with = |value: &str| parse(&format!("[runtime]\nmax_inline_time = {value}\n{MINIMAL}"));
    let c = with("\"0s\"").unwrap();
    assert_eq!(c.runtime.max_inline_time, Duration::ZERO);
    let c = with("\"250ms\"").unwrap();
    assert_eq!(c.runtime.max_inline_time, Duration::from_millis(250));
    let err = with("\"2s\"").unwrap_err().to_string();
    assert!(err.contains("runtime.max_inline_time"), "{err}");
    assert!(err.contains("at most 1s"), "{err}");
    let err = with("\"soon\"").unwrap_err().to_string();
    assert!(err.contains("max_inline_time"), "{err}");
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let err = parse(&MINIMAL.replace("trust_store", "trust_stor")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("trust_stor"), "{text}");
    assert!(text.contains("/etc/tollgate/t.toml"), "{text}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let text = MINIMAL
        .replace("url = \"http://127.0.0.1:8080\"", "url = \"ftp://x\"")
        .replace(
            "[listener.mtls]\ntrust_store = \"ca.pem\"",
            "[listener.mtls]\nmode = \"optional\"",
        )
        + "\n[listener.function]\nname = \"nope\"\n";
    let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
        panic!("expected semantic problems");
    };
    let all: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let joined = all.join("\n");
    assert_eq!(problems.len(), 3, "{joined}");
    assert!(joined.contains("scheme must be http or https"), "{joined}");
    assert!(joined.contains("needs a trust_store"), "{joined}");
    assert!(joined.contains("no function named \"nope\""), "{joined}");
}

#[test]
fn passthrough_with_a_trust_store_is_refused() {
    let text = MINIMAL.replace(
        "[listener.mtls]\n",
        "[listener.mtls]\nmode = \"passthrough\"\n",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("does not validate certificates"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("ten").is_err());
    assert!(parse_duration("5 parsecs").is_err());
}

/// A number of seconds is held to the same range as a string, and the
/// timeouts that would refuse or close everything at zero must be positive.
#[test]
fn timeouts_are_positive_and_in_range_in_either_form() {
    let with = |section: &str| parse(&format!("{MINIMAL}{section}\n"));
    let http = |value: &str| with(&format!("[listener.http]\nidle_timeout = {value}"));
    assert_eq!(
        http("90").unwrap().listeners[0].http.idle_timeout,
        Duration::from_secs(90)
    );
    let err = http("9223372036854775807").unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
    for (section, key) in [
        (
            "[listener.http]\nidle_timeout = \"0s\"",
            "http.idle_timeout",
        ),
        (
            "[listener.http]\nheader_read_timeout = 0",
            "http.header_read_timeout",
        ),
        (
            "[listener.limits]\nhandshake_timeout = \"0ms\"",
            "limits.handshake_timeout",
        ),
    ] {
        let err = with(section).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("more than zero"), "{err}");
    }
    for key in ["connect_timeout", "response_timeout"] {
        let text = MINIMAL.replace(
            "url = \"http://127.0.0.1:8080\"",
            &format!("url = \"http://127.0.0.1:8080\"\n{key} = \"0s\""),
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(&format!("origin.{key}")) && err.contains("more than zero"),
            "{err}"
        );
    }
}

/// Parts of an origin URL that would be dropped silently are refused.
#[test]
fn an_origin_url_with_credentials_or_a_fragment_is_refused() {
    for (url, expected) in [
        ("https://user:pw@origin.example/api", "no user or password"),
        ("https://origin.example/api#frag", "no fragment"),
        ("https://origin.example/api?x=1", "no query string"),
    ] {
        let text = MINIMAL.replace("http://127.0.0.1:8080", url);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{url}: {err}");
    }
    let ok = MINIMAL.replace("http://127.0.0.1:8080", "https://origin.example:8443/api/");
    let config = parse(&ok).unwrap();
    let url = config.listeners[0].origin.parsed_url().unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.path_prefix.as_str()),
        ("origin.example", 8443, "/api")
    );
}
