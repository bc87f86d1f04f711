//! Trust stores, CRLs and server certificates, loaded from real files made
//! with rcgen; SNI selection through real rustls handshakes.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tollgate_testkit::{TestCa, write};
use tollgate_tls::{
    CrlSet, ServerCertSpec, ServerCertificates, TrustStore, TrustStoreError, TrustStoreLimits,
};

#[test]
fn unusable_bundle_entries_are_warnings_that_name_them() {
    let root = TestCa::root("Good Root");
    let stray = TestCa::root("Other").client("not-a-ca").build();
    let bundle = format!(
        "# production client CAs\n{}\n# a leaf by mistake\n{}{}",
        root.pem(),
        stray.pem,
        root.pem()
    );
    let store =
        TrustStore::from_pem(bundle.as_bytes(), "cas.pem", &TrustStoreLimits::default()).unwrap();
    assert_eq!(store.len(), 1);
    let warnings: Vec<String> = store.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("cas.pem: entry 2 (line "),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("CN=not-a-ca") && warnings[0].contains("not a CA"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("entry 3") && warnings[1].contains("duplicate"),
        "{warnings:?}"
    );
}

/// An intermediate whose issuer is not in the bundle is a warning that names
/// its entry and line like every other.
#[test]
fn an_orphan_intermediate_is_named_by_its_entry() {
    let root = TestCa::root("Kept Root");
    let other = TestCa::root("Absent Root");
    let orphan = other.intermediate("Orphan Intermediate");
    let bundle = format!(
        "{}# issued by a root not in this file\n{}",
        root.pem(),
        orphan.pem()
    );
    let line = bundle
        .lines()
        .position(|l| l.starts_with("# issued by"))
        .unwrap()
        + 2;
    let store =
        TrustStore::from_pem(bundle.as_bytes(), "cas.pem", &TrustStoreLimits::default()).unwrap();
    assert_eq!(store.len(), 2);
    let warnings: Vec<String> = store.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("cas.pem: entry 2 (line {line}")),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("CN=Orphan Intermediate"),
        "{warnings:?}"
    );
}

#[test]
fn limits_and_broken_bundles_are_errors() {
    let root = TestCa::root("Root");
    let limits = TrustStoreLimits {
        max_certs: 1,
        ..Default::default()
    };
    let two = format!("{}{}", root.pem(), TestCa::root("Second").pem());
    let err = TrustStore::from_pem(two.as_bytes(), "b.pem", &limits).unwrap_err();
    assert!(
        matches!(
            err,
            TrustStoreError::TooManyCerts {
                count: 2,
                limit: 1,
                ..
            }
        ),
        "{err}"
    );
    let small = TrustStoreLimits {
        max_bundle_bytes: 100,
        ..Default::default()
    };
    let err = TrustStore::from_pem(root.pem().as_bytes(), "b.pem", &small).unwrap_err();
    assert!(err.to_string().contains("limit is 100"), "{err}");
    let broken = root.pem().replace("MII", "M!I");
    let err =
        TrustStore::from_pem(broken.as_bytes(), "b.pem", &TrustStoreLimits::default()).unwrap_err();
    assert!(err.to_string().contains("b.pem: entry 1 (line 1)"), "{err}");
    let leaf_only = TestCa::root("X").client("leaf").build().pem;
    let err = TrustStore::from_pem(leaf_only.as_bytes(), "b.pem", &TrustStoreLimits::default())
        .unwrap_err();
    assert!(err.to_string().contains("no usable root CA"), "{err}");
}

#[test]
fn crls_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = TestCa::root("CRL Root");
    let store =
        TrustStore::from_pem(root.pem().as_bytes(), "t.pem", &TrustStoreLimits::default()).unwrap();
    let victim = root.client("victim").build();
    let good = write(dir.path(), "good.crl", root.crl(&[&victim.der]));
    let set = CrlSet::load(&[good], &store).unwrap();
    assert_eq!(set.len(), 1);
    assert!(set.next_update().is_some());
    assert!(set.warnings().is_empty());

    // A CRL with the root's name but signed by another key: refused.
    let impostor = TestCa::root("CRL Root");
    let forged = write(dir.path(), "forged.crl", impostor.crl(&[&victim.der]));
    let err = CrlSet::load(&[forged], &store).unwrap_err().to_string();
    assert!(
        err.contains("forged.crl") && err.contains("does not verify"),
        "{err}"
    );

    // An intermediate's CRL loads with a warning: it is checked at first use.
    let inter = root.intermediate("Issuing");
    let later = write(dir.path(), "inter.crl", inter.crl(&[]));
    let set = CrlSet::load(&[later], &store).unwrap();
    assert_eq!(set.warnings().len(), 1);

    // DER works too.
    let der = rustls::pki_types::CertificateRevocationListDer::from_pem_slice(
        root.crl(&[&victim.der]).as_bytes(),
    )
    .unwrap();
    let der_file = write(dir.path(), "root.crl.der", der.as_ref());
    assert_eq!(CrlSet::load(&[der_file], &store).unwrap().len(), 1);

    let junk = write(
        dir.path(),
        "junk.crl",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    );
    let err = CrlSet::load(&[junk], &store).unwrap_err().to_string();
    assert!(err.contains("junk.crl: CRL 1: not a usable CRL"), "{err}");
}

fn served_name(certs: &Arc<ServerCertificates>, ca: &TestCa, sni: &str) -> String {
    let config = Arc::new(tollgate_tls::server_config(certs.clone(), None).unwrap());
    let mut server = rustls::ServerConnection::new(config).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der())).unwrap();
    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from(sni.to_owned()).unwrap(),
    )
    .unwrap();
    let mut buf = Vec::new();
    for _ in 0..10 {
        buf.clear();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        buf.clear();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
        if !client.is_handshaking() {
            break;
        }
    }
    let leaf = &client.peer_certificates().unwrap()[0];
    tollgate_x509::CertInfo::parse(leaf).unwrap().subject()
}

#[test]
fn server_certificates_are_chosen_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::root("Server CA");
    let mut specs = Vec::new();
    for (file, names) in [
        ("default", vec!["default.test"]),
        ("api", vec!["api.test"]),
        ("wild", vec!["*.apps.test"]),
    ] {
        let cert = ca.server(&names.iter().map(|s| &**s).collect::<Vec<_>>());
        specs.push(ServerCertSpec {
            names: names.iter().map(|s| s.to_string()).collect(),
            cert: write(dir.path(), &format!("{file}.pem"), &cert.pem),
            key: write(dir.path(), &format!("{file}.key"), &cert.key_pem),
        });
    }
    let certs = ServerCertificates::load(&specs).unwrap();
    assert_eq!(served_name(&certs, &ca, "api.test"), "CN=api.test");
    assert_eq!(served_name(&certs, &ca, "API.TEST"), "CN=api.test");
    assert_eq!(served_name(&certs, &ca, "one.apps.test"), "CN=*.apps.test");
    assert_eq!(served_name(&certs, &ca, "default.test"), "CN=default.test");
    assert_eq!(certs.summaries().len(), 3);

    // A key that does not belong to the certificate is refused at load.
    let other = ca.server(&["x.test"]);
    let bad = ServerCertSpec {
        names: vec![],
        cert: specs[0].cert.clone(),
        key: write(dir.path(), "other.key", &other.key_pem),
    };
    let err = ServerCertificates::load(&[bad]).unwrap_err().to_string();
    assert!(
        err.contains("default.pem") && err.contains("does not fit"),
        "{err}"
    );
}

/// `expiry_ignored` is the answer for the path the verifier builds: an
/// expired certificate the client sends but the path does not use does not
/// count, and a trust-store intermediate that expired after the load does.
#[test]
fn expiry_ignored_is_the_verifiers_answer_for_its_path() {
    use rustls::pki_types::UnixTime;
    use tollgate_tls::{ClientAuthMode, ClientAuthPolicy, ClientVerifier, Usage, VerifyFailure};

    let root = TestCa::root("Expiry Root");
    let inter = root.intermediate("Expiry Intermediate");
    // The leaf outlives its CAs (valid ten years).
    let leaf = inter.client("long-lived").valid_days(-1, 5000).build();
    // (Test CAs are valid from yesterday: a leaf outside its dates inside
    // theirs is one not valid yet.)
    let early_leaf = inter.client("early").valid_days(1, 30).build();
    let stray_expired = root.client("stray").valid_days(-10, -5).build();
    let bundle = format!("{}{}", root.pem(), inter.pem());
    let trust =
        TrustStore::from_pem(bundle.as_bytes(), "cas.pem", &TrustStoreLimits::default()).unwrap();
    let trust = Arc::new(trust);
    let verifier = |ignore_expiry: bool| {
        ClientVerifier::new(ClientAuthPolicy {
            mode: ClientAuthMode::Required,
            trust: trust.clone(),
            crls: Arc::new(CrlSet::empty()),
            ignore_expiry,
            advertise_ca_names: false,
            max_chain_depth: 4,
        })
    };
    let der = |c: &tollgate_testkit::TestCert| CertificateDer::from(c.der.clone());
    let now = UnixTime::now();
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        now.as_secs() + 4000 * 86_400,
    ));
    let ignoring = verifier(true);

    // An expired certificate offered beside a valid chain is not on the path.
    let offered = [der(&stray_expired)];
    assert!(
        ignoring
            .verify_chain(&der(&leaf), &offered, now, Usage::ClientAuth)
            .is_ok()
    );
    assert_eq!(
        ignoring.expiry_ignored(&der(&leaf), None, &offered, now),
        Ok(false)
    );

    // In 4000 days the trust store's intermediate (and root) have expired:
    // the leaf alone is offered, and only ignoring expiry admits it.
    assert_eq!(
        verifier(false)
            .verify_chain(&der(&leaf), &[], later, Usage::ClientAuth)
            .err(),
        Some(VerifyFailure::Expired)
    );
    assert_eq!(
        ignoring.expiry_ignored(&der(&leaf), None, &[], later),
        Ok(true)
    );

    // A leaf not valid yet, now.
    assert_eq!(
        ignoring.expiry_ignored(&der(&early_leaf), None, &[], now),
        Ok(true)
    );
    // A valid one, now.
    assert_eq!(
        ignoring.expiry_ignored(&der(&leaf), None, &[], now),
        Ok(false)
    );
    // The same answers from a leaf the caller already parsed.
    let parsed = |c: &CertificateDer<'_>| tollgate_x509::CertInfo::parse(c).unwrap();
    assert_eq!(
        ignoring.expiry_ignored(&der(&leaf), Some(&parsed(&der(&leaf))), &[], now),
        Ok(false)
    );
    assert_eq!(
        ignoring.expiry_ignored(
            &der(&early_leaf),
            Some(&parsed(&der(&early_leaf))),
            &[],
            now
        ),
        Ok(true)
    );
    // Without ignore_expiry the question does not arise.
    assert_eq!(
        verifier(false).expiry_ignored(&der(&early_leaf), None, &[], now),
        Ok(false)
    );
    // A root that expires before its intermediate: after its notAfter it no
    // longer anchors a path (as it would not load), unless expiry is ignored.
    let short_root = TestCa::root_valid_days("Short Root", -1, 3000);
    let long_inter = short_root.intermediate("Long Intermediate");
    let leaf2 = long_inter
        .client("outlives-root")
        .valid_days(-1, 5000)
        .build();
    let trust2 = Arc::new(
        TrustStore::from_pem(
            short_root.pem().as_bytes(),
            "short.pem",
            &TrustStoreLimits::default(),
        )
        .unwrap(),
    );
    let short = |ignore_expiry: bool| {
        ClientVerifier::new(ClientAuthPolicy {
            mode: ClientAuthMode::Required,
            trust: trust2.clone(),
            crls: Arc::new(CrlSet::empty()),
            ignore_expiry,
            advertise_ca_names: false,
            max_chain_depth: 4,
        })
    };
    let after_root = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        now.as_secs() + 3200 * 86_400,
    ));
    let offered2 = [CertificateDer::from(long_inter.der())];
    assert!(
        short(false)
            .verify_chain(&der(&leaf2), &offered2, now, Usage::ClientAuth)
            .is_ok()
    );
    assert_eq!(
        short(false)
            .verify_chain(&der(&leaf2), &offered2, after_root, Usage::ClientAuth)
            .err(),
        Some(VerifyFailure::Expired)
    );
    assert_eq!(
        short(true).expiry_ignored(&der(&leaf2), None, &offered2, after_root),
        Ok(true)
    );

    // A chain that does not verify is an error, not an answer.
    let stranger = TestCa::root("Stranger")
        .client("x")
        .valid_days(-10, -5)
        .build();
    assert!(
        ignoring
            .expiry_ignored(&der(&stranger), None, &[], now)
            .is_err()
    );
}
