//! `tollgate demo`: the example revocation function, run exactly as the
//! proxy runs it, on a dev PKI generated on the spot.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use tollgate_function::{
    CertSource, ConnectionInfo, FunctionSpec, Limits, Outcome, Runtime, RuntimeConfig, StoreSet,
};

fn name(o: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, o);
    dn.push(DnType::CommonName, cn);
    dn
}

/// A dev client certificate with a random 16-byte serial.
fn client(issuer: &CertifiedIssuer<'_, KeyPair>, cn: &str) -> anyhow::Result<(Vec<u8>, String)> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("Tollgate Demo", cn);
    let serial: [u8; 16] = std::array::from_fn(|i| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        (h.finish() & 0x7f) as u8 | if i == 0 { 0x10 } else { 0 }
    });
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let der = cert.der().to_vec();
    let serial = tollgate_x509::serial_number_from_der(&der)?.replace(':', "");
    Ok((der, serial))
}

pub fn main() -> anyhow::Result<()> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("Tollgate Demo", "Tollgate Demo CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca, KeyPair::generate()?).context("generating the demo CA")?;
    let (valid, valid_serial) = client(&ca, "valid-client")?;
    let (revoked, revoked_serial) = client(&ca, "revoked-client")?;

    let json =
        format!(r#"{{"data":[{{"key":"{revoked_serial}","value":"revoked by the demo"}}]}}"#);
    let store = tollgate_kvs::Store::from_import_json(
        "revoked",
        tollgate_kvs::Limits::default(),
        json.as_bytes(),
    )?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_calls: 4,
        ..RuntimeConfig::default()
    })?;
    let function = rt.block_on(runtime.load(FunctionSpec {
        name: "revocation",
        wasm: tollgate_guests::REVOCATION_WASM,
        limits: Limits::default(),
        stores: StoreSet::new([Arc::new(store)]),
    }))?;

    println!("Tollgate demo: the example `revocation` connection function (functions/revocation)");
    println!("Dev PKI: CA \"Tollgate Demo CA\"; store `revoked` holds serial {revoked_serial}.\n");
    let cases: [(&str, Vec<Vec<u8>>); 3] = [
        ("valid client certificate", vec![valid]),
        ("revoked client certificate", vec![revoked]),
        ("no client certificate", vec![]),
    ];
    for (label, chain) in cases {
        let mut conn = ConnectionInfo::for_test();
        conn.listener = "demo".into();
        conn.chain = chain.into_iter().map(CertSource::Der).collect();
        let outcome = rt.block_on(function.call(Arc::new(conn)));
        print_line(label, &outcome);
    }
    println!("\nvalid serial: {valid_serial}");
    println!(
        "Write your own: guest-sdk/README.md. Test it: tollgate test FUNCTION.wasm --cert client.pem --kvs revoked=revoked.json"
    );
    Ok(())
}

fn print_line(label: &str, o: &Outcome) {
    let mut detail = vec![o.connection_status().to_owned()];
    if let Some(reason) = &o.reason {
        detail.push(format!("reason: {reason}"));
    }
    if let Some(data) = &o.custom_data {
        detail.push(format!("log: {data}"));
    }
    detail.push(format!("{} µs", o.duration.as_micros()));
    println!("{label:<28} → {:<5}  {}", o.decision, detail.join(", "));
}
