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
