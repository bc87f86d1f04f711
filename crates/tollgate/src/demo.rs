//! `tollgate demo`: the proxy on embedded defaults. A dev PKI, the example
//! `revocation` function with a store holding one revoked serial, and a
//! built-in origin that echoes the headers it receives; then curl commands
//! that show each outcome.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tollgate_config::Config;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the dev PKI, the function and the config are written (reused
    /// when complete).
    #[arg(long, default_value = "tollgate-demo")]
    pub dir: PathBuf,
    /// The proxy's address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
}

/// Files of a complete demo directory.
const FILES: &[&str] = &[
    "ca.pem",
    "server.pem",
    "server.key",
    "valid-client.pem",
    "valid-client.key",
    "revoked-client.pem",
    "revoked-client.key",
    "other-ca.pem",
    "other-client.pem",
    "other-client.key",
    "revoked-serials.json",
];

fn name(o: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, o);
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("Tollgate Demo", cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A 16-byte random serial (positive, first byte non-zero).
fn random_serial() -> SerialNumber {
    use std::hash::{BuildHasher, Hasher};
    let bytes: [u8; 16] = std::array::from_fn(|i| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        (h.finish() & 0x7f) as u8 | if i == 0 { 0x10 } else { 0 }
    });
    SerialNumber::from_slice(&bytes)
}

/// Issues a certificate; returns (cert PEM, key PEM, DER).
fn issue(
    issuer: &CertifiedIssuer<'_, KeyPair>,
    cn: &str,
    server: bool,
) -> anyhow::Result<(String, String, Vec<u8>)> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("Tollgate Demo", cn);
    params.serial_number = Some(random_serial());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if server {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

fn write(dir: &Path, file: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Certificates of the demo directory, each checked before it is reused.
const CERTS: &[&str] = &[
    "ca.pem",
    "server.pem",
    "valid-client.pem",
    "revoked-client.pem",
    "other-ca.pem",
    "other-client.pem",
];

/// Whether every certificate of `dir` reads and stays valid for a week more
/// (the leaves last 90 days: an old demo directory is made anew, not served
/// with expired certificates).
fn still_valid(dir: &Path) -> bool {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let until = time::OffsetDateTime::now_utc().unix_timestamp() + 7 * 86_400;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    CERTS.iter().all(|file| {
        let Ok(mut certs) = CertificateDer::pem_file_iter(dir.join(file)) else {
            return false;
        };
        certs.next().is_some_and(|cert| {
            cert.ok()
                .and_then(|der| tollgate_x509::CertInfo::parse(&der).ok())
                .is_some_and(|info| info.is_valid_at(now) && info.is_valid_at(until))
        })
    })
}

/// Generates the dev PKI unless `dir` already holds a complete one that is
/// still valid.
fn prepare(dir: &Path) -> anyhow::Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if FILES.iter().all(|f| dir.join(f).is_file()) && still_valid(dir) {
        return Ok(false);
    }
    let other = ca("Some Other CA")?;
    let ca = ca("Tollgate Demo CA")?;
    write(dir, "ca.pem", ca.pem())?;
    write(dir, "other-ca.pem", other.pem())?;
    for (file, issuer, cn, server) in [
        ("server", &ca, "localhost", true),
        ("valid-client", &ca, "valid-client", false),
        ("other-client", &other, "other-client", false),
    ] {
        let (pem, key, _) = issue(issuer, cn, server)?;
        write(dir, &format!("{file}.pem"), pem)?;
        write(dir, &format!("{file}.key"), key)?;
    }
    let (pem, key, der) = issue(&ca, "revoked-client", false)?;
    write(dir, "revoked-client.pem", pem)?;
    write(dir, "revoked-client.key", key)?;
    let serial = tollgate_x509::serial_number_from_der(&der)?.replace(':', "");
    let json = serde_json::json!({"data": [{"key": serial, "value": "revoked by tollgate demo"}]});
    write(
        dir,
        "revoked-serials.json",
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(true)
}

fn config_text(listen: SocketAddr, origin: SocketAddr) -> String {
    format!(
        r#"# Written by `tollgate demo` on every run (the origin port changes).
# Serve it yourself with: tollgate serve --config tollgate.toml
# (the origin below is the demo's built-in echo origin: start your own).

[functions.revocation]
wasm = "revocation.wasm"
kvs = ["revoked"]

[kvs.revoked]
import = "revoked-serials.json"

[[listener]]
name = "demo"
address = "{listen}"

[[listener.certificate]]
names = ["localhost"]
cert = "server.pem"
key = "server.key"

[listener.mtls]
mode = "required"
trust_store = "ca.pem"
advertise_ca_names = true

[listener.function]
name = "revocation"

[listener.origin]
url = "http://{origin}"
"#
    )
}

pub fn main(args: DemoArgs) -> anyhow::Result<()> {
    let created = prepare(&args.dir)?;
    write(
        &args.dir,
        "revocation.wasm",
        tollgate_guests::REVOCATION_WASM,
    )?;
    let rt = crate::serve::runtime()?;
    rt.block_on(async move {
        let origin_socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("starting the built-in origin")?;
        let origin = origin_socket.local_addr()?;
        tokio::spawn(tollgate_proxy::echo::serve_echo(
            origin_socket,
            None,
            Arc::new(Default::default()),
        ));
        let config_path = args.dir.join("tollgate.toml");
        write(&args.dir, "tollgate.toml", config_text(args.listen, origin))?;
        let config = Config::load(&config_path)?;
        let dir = args.dir.clone();
        let ready = Box::new(move |addrs: &[(String, SocketAddr)]| {
            let addr = addrs.first().map(|(_, a)| *a).unwrap_or(args.listen);
            print_intro(&dir, addr, origin, created);
        });
        crate::serve::serve_config(config, Some(ready)).await
    })
}

fn print_intro(dir: &Path, addr: SocketAddr, origin: SocketAddr, created: bool) {
    let d = dir.display();
    let url = format!("https://localhost:{}/", addr.port());
    let resolve = if addr.ip().is_loopback() && addr.ip().is_ipv4() {
        format!(" --resolve localhost:{}:{}", addr.port(), addr.ip())
    } else {
        String::new()
    };
    let curl = |who: Option<&str>| match who {
        Some(who) => format!(
            "curl{resolve} --cacert {d}/ca.pem --cert {d}/{who}.pem --key {d}/{who}.key {url}"
        ),
        None => format!("curl{resolve} --cacert {d}/ca.pem {url}"),
    };
    println!(
        "Tollgate demo: mTLS proxy on https://{addr} → built-in origin http://{origin}\n\
         {} {d}/: dev CA, localhost server certificate, client certificates, the `revocation` \
         function and its store of revoked serials, tollgate.toml.\n",
        if created { "Created" } else { "Reusing" }
    );
    println!(
        "1. Valid client certificate → 200; the origin echoes the CloudFront-Viewer-Cert-* headers it got:"
    );
    println!("   {}\n", curl(Some("valid-client")));
    println!(
        "2. Revoked client certificate → refused by the revocation function (reset, no HTTP):"
    );
    println!("   {}\n", curl(Some("revoked-client")));
    println!(
        "3. No client certificate → refused in the handshake (TLS alert: certificate required):"
    );
    println!("   {}\n", curl(None));
    println!("4. Certificate from another CA → refused in the handshake (unknown CA):");
    println!("   {}\n", curl(Some("other-client")));
    println!("Connection and access logs follow as JSON lines. Ctrl-C stops the demo.");
}
