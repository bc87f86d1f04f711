//! The host side of the WIT world: the state of one call (one `Store`) and
//! the implementations of the `types`, `kvs` and `log` imports.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tollgate_kvs::Snapshot;
use tollgate_x509::CertInfo;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::connection::{CertSource, ConnectionInfo};
use crate::output::{ConsoleLevel, SharedOutput};
use crate::replay::{self, Answer, Ask};
use crate::runtime::StoreSet;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "connection-function",
    imports: { default: trappable },
    with: {
        "tollgate:connection/types.connection": crate::host::ConnectionRes,
        "tollgate:connection/types.certificate": crate::host::CertificateRes,
        "tollgate:connection/kvs.store": crate::host::StoreRes,
    },
});

pub(crate) use tollgate::connection::kvs;
use tollgate::connection::log;
pub(crate) use tollgate::connection::types;

/// The `connection` resource: there is one per call, the connection itself.
pub struct ConnectionRes;

/// The `certificate` resource: an index into the connection's chain.
pub struct CertificateRes {
    index: usize,
}

/// The `store` resource: a snapshot, fixed for the whole call.
pub struct StoreRes {
    name: Box<str>,
    snapshot: Arc<Snapshot>,
}

/// The data of one `Store`: everything one call may touch.
pub(crate) struct HostState {
    /// Built on the first WASI call: a guest that makes none (or only the
    /// `wasi:io` ones, which use the table alone) never pays for it.
    wasi: Option<WasiCtx>,
    /// The instant the frozen wall clock shows (the start of the call).
    wall_clock: Duration,
    table: ResourceTable,
    conn: Arc<ConnectionInfo>,
    /// Parsed lazily, one slot per certificate of the chain.
    parsed: Vec<OnceLock<Result<Arc<CertInfo>, String>>>,
    stores: StoreSet,
    /// Snapshots opened during this call: every open of a store sees the same
    /// data, even if the store is updated meanwhile.
    opened: Vec<(Box<str>, Arc<Snapshot>)>,
    pub output: SharedOutput,
    pub limiter: Limiter,
    /// Set by the epoch callback when it stops the guest for time.
    pub timed_out: bool,
    /// The questions this call asked and their answers, while it may still
    /// be replayed (see `replay.rs`); `None` when not recording or once the
    /// call asked something a replay cannot ask again.
    pub trace: Option<Vec<(Ask, Answer)>>,
}

impl HostState {
    pub fn new(
        wall_clock: Duration,
        conn: Arc<ConnectionInfo>,
        stores: StoreSet,
        output: SharedOutput,
        limiter: Limiter,
    ) -> HostState {
        let parsed: Vec<OnceLock<Result<Arc<CertInfo>, String>>> =
            conn.chain.iter().map(|_| OnceLock::new()).collect();
        if let (Some(leaf), Some(slot), Some(CertSource::Der(_))) =
            (&conn.leaf, parsed.first(), conn.chain.first())
        {
            let _ = slot.set(Ok(leaf.clone()));
        }
        HostState {
            wasi: None,
            wall_clock,
            table: ResourceTable::new(),
            conn,
            parsed,
            stores,
            opened: Vec::new(),
            output,
            limiter,
            timed_out: false,
            trace: None,
        }
    }

    /// Lets go of the call that ended, for an instance kept for the next
    /// one: while idle it holds nothing of its last connection (the
    /// connection object, the parsed certificates, the store snapshots, the
    /// WASI context), and what only it still held is freed now, while it is
    /// still in the cache, rather than by the next call.
    pub fn end_call(&mut self) {
        self.conn = Arc::new(ConnectionInfo::idle());
        self.parsed = Vec::new();
        self.opened = Vec::new();
        self.wasi = None;
        self.trace = None;
    }

    /// Answers a question of the connection or the stores, and records it.
    fn ask(&mut self, ask: Ask) -> wasmtime::Result<Answer> {
        let leaf = match self.parsed.first().and_then(OnceLock::get) {
            Some(Ok(info)) => Some(&**info),
            _ => None,
        };
        let answer = replay::answer(&ask, &self.conn, leaf, &self.stores, &mut self.opened)?;
        if let Some(trace) = &mut self.trace {
            if trace.len() < replay::MAX_QUESTIONS {
                trace.push((ask, answer.clone()));
            } else {
                self.trace = None;
            }
        }
        Ok(answer)
    }

    /// The call asked something a replay could not ask again (or that has
    /// a new answer every time): it is not recorded.
    pub fn unrepeatable(&mut self) {
        self.trace = None;
    }

    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Whether the instance may serve another call: it was not stopped for
    /// time, did not run into its memory or table limit, and holds no handle
    /// of this call (the connection object, its certificates, stores,
    /// streams).
    pub fn reusable(&self) -> bool {
        !self.hit_a_limit() && self.table.is_empty()
    }

    /// The call was stopped for time, or its memory or a table could not
    /// grow.
    pub fn hit_a_limit(&self) -> bool {
        self.timed_out || self.limiter.memory_exhausted || self.limiter.table_exhausted
    }

    /// Ends the call's hold on its connection object (the guest only
    /// borrowed it). Fails if the guest still holds a handle derived from it.
    pub fn release_connection(&mut self, conn: u32) -> wasmtime::Result<()> {
        self.table
            .delete(Resource::<ConnectionRes>::new_own(conn))?;
        Ok(())
    }

    pub fn push_connection(&mut self) -> wasmtime::Result<Resource<ConnectionRes>> {
        Ok(self.table.push(ConnectionRes)?)
    }

    /// A handle to the certificate at `index` of the chain. Its fields are
    /// not questions a replay asks: handing one out makes the call
    /// unrepeatable (so its methods need not).
    fn push_certificate(&mut self, index: usize) -> wasmtime::Result<Resource<CertificateRes>> {
        self.unrepeatable();
        Ok(self.table.push(CertificateRes { index })?)
    }

    fn cert_index(&self, res: &Resource<CertificateRes>) -> wasmtime::Result<usize> {
        Ok(self.table.get(res)?.index)
    }

    /// The parsed certificate at `index`. A DER certificate is parsed on first
    /// use; a parse failure is a host error that stops the call.
    fn parsed(&self, index: usize) -> wasmtime::Result<Option<&CertInfo>> {
        let CertSource::Der(der) = &self.conn.chain[index] else {
            return Ok(None);
        };
        let slot = self.parsed[index].get_or_init(|| {
            CertInfo::parse(der)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
        match slot {
            Ok(info) => Ok(Some(info)),
            Err(e) => Err(wasmtime::format_err!(
                "client certificate {index} cannot be parsed: {e}"
            )),
        }
    }

    fn cert(&self, res: &Resource<CertificateRes>) -> wasmtime::Result<Cert<'_>> {
        let index = self.cert_index(res)?;
        Ok(match &self.conn.chain[index] {
            CertSource::Der(der) => Cert::Der {
                der,
                info: self
                    .parsed(index)?
                    .ok_or_else(|| wasmtime::format_err!("unreachable"))?,
            },
            CertSource::Fields(fields) => Cert::Fields(fields),
        })
    }

    fn store_name(&self, res: &Resource<StoreRes>) -> wasmtime::Result<Box<str>> {
        Ok(self.table.get(res)?.name.clone())
    }

    fn snapshot(&self, res: &Resource<StoreRes>) -> wasmtime::Result<&Snapshot> {
        Ok(&self.table.get(res)?.snapshot)
    }
}

/// A certificate as the accessors see it.
enum Cert<'a> {
    Der { der: &'a [u8], info: &'a CertInfo },
    Fields(&'a crate::connection::CertFields),
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Clocks, randomness, stdio: nothing a replay asks again.
        self.unrepeatable();
        let (output, wall_clock) = (&self.output, self.wall_clock);
        WasiCtxView {
            ctx: self
                .wasi
                .get_or_insert_with(|| crate::runtime::wasi_ctx(output, wall_clock)),
            table: &mut self.table,
        }
    }
}

/// Enforces the memory and table limits, and records which one stopped a
/// guest so the error can say so.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    pub memory_exhausted: bool,
    pub table_exhausted: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_exhausted = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.table_exhausted = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// Growth refused for another reason than the limit (the memory type's
    /// maximum, the system): the guest sees -1 all the same. Flagged like
    /// the limit, so the call is not recorded for replay and its instance
    /// is not kept.
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_exhausted = true;
        Ok(())
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_exhausted = true;
        Ok(())
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

fn ip_address(ip: std::net::IpAddr) -> types::IpAddress {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            types::IpAddress::Ipv4((a, b, c, d))
        }
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            types::IpAddress::Ipv6((a, b, c, d, e, f, g, h))
        }
    }
}

fn name_attributes(attrs: &[tollgate_x509::NameAttribute]) -> Vec<types::NameAttribute> {
    attrs
        .iter()
        .map(|a| types::NameAttribute {
            name: a.name.clone(),
            oid: a.oid.clone(),
            value: a.value.clone(),
        })
        .collect()
}

fn dn_attributes(dn: &str) -> wasmtime::Result<Vec<tollgate_x509::NameAttribute>> {
    tollgate_x509::parse_rfc2253(dn)
        .map_err(|e| wasmtime::format_err!("distinguished name {dn:?}: {e}"))
}

fn attribute_values(attrs: &[tollgate_x509::NameAttribute], name: &str) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.oid == name || a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.clone())
        .collect()
}

fn key_usage(ku: tollgate_x509::KeyUsage) -> types::KeyUsage {
    use tollgate_x509::KeyUsage as K;
    use types::KeyUsage as W;
    [
        (K::DIGITAL_SIGNATURE, W::DIGITAL_SIGNATURE),
        (K::CONTENT_COMMITMENT, W::CONTENT_COMMITMENT),
        (K::KEY_ENCIPHERMENT, W::KEY_ENCIPHERMENT),
        (K::DATA_ENCIPHERMENT, W::DATA_ENCIPHERMENT),
        (K::KEY_AGREEMENT, W::KEY_AGREEMENT),
        (K::KEY_CERT_SIGN, W::KEY_CERT_SIGN),
        (K::CRL_SIGN, W::CRL_SIGN),
        (K::ENCIPHER_ONLY, W::ENCIPHER_ONLY),
        (K::DECIPHER_ONLY, W::DECIPHER_ONLY),
    ]
    .into_iter()
    .filter(|(bit, _)| ku.contains(*bit))
    .fold(W::empty(), |acc, (_, flag)| acc | flag)
}

fn san(san: &tollgate_x509::SubjectAltName) -> types::SubjectAltName {
    use tollgate_x509::SubjectAltName as S;
    match san {
        S::Dns(v) => types::SubjectAltName::Dns(v.clone()),
        S::Ip(ip) => types::SubjectAltName::Ip(ip.to_string()),
        S::Uri(v) => types::SubjectAltName::Uri(v.clone()),
        S::Email(v) => types::SubjectAltName::Email(v.clone()),
        S::Other(v) => types::SubjectAltName::Other(v.clone()),
    }
}

/// An answer of another kind than the question's: a bug in `replay::answer`.
fn mismatch(answer: Answer) -> wasmtime::Error {
    wasmtime::format_err!("the host's answer {answer:?} does not fit the question")
}

fn text(answer: Answer) -> wasmtime::Result<String> {
    match answer {
        Answer::Text(text) => Ok(text),
        other => Err(mismatch(other)),
    }
}

fn maybe_text(answer: Answer) -> wasmtime::Result<Option<String>> {
    match answer {
        Answer::MaybeText(text) => Ok(text),
        other => Err(mismatch(other)),
    }
}

impl types::Host for HostState {}

impl types::HostConnection for HostState {
    fn id(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<String> {
        self.unrepeatable();
        Ok(self.conn.id.clone())
    }

    fn client_ip(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<types::IpAddress> {
        match self.ask(Ask::ClientIp)? {
            Answer::Ip(ip) => Ok(ip_address(ip)),
            other => Err(mismatch(other)),
        }
    }

    fn client_port(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<u16> {
        self.unrepeatable();
        Ok(self.conn.client.port())
    }

    fn server_ip(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<types::IpAddress> {
        match self.ask(Ask::ServerIp)? {
            Answer::Ip(ip) => Ok(ip_address(ip)),
            other => Err(mismatch(other)),
        }
    }

    fn server_port(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<u16> {
        match self.ask(Ask::ServerPort)? {
            Answer::Port(port) => Ok(port),
            other => Err(mismatch(other)),
        }
    }

    fn sni(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<Option<String>> {
        maybe_text(self.ask(Ask::Sni)?)
    }

    fn alpn(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<Option<String>> {
        maybe_text(self.ask(Ask::Alpn)?)
    }

    fn tls_version(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<String> {
        text(self.ask(Ask::TlsVersion)?)
    }

    fn cipher_suite(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<String> {
        text(self.ask(Ask::CipherSuite)?)
    }

    fn listener(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<String> {
        text(self.ask(Ask::Listener)?)
    }

    fn handshake_duration_us(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<u64> {
        self.unrepeatable();
        Ok(u64::try_from(self.conn.handshake_duration.as_micros()).unwrap_or(u64::MAX))
    }

    fn client_certificate(
        &mut self,
        _: Resource<ConnectionRes>,
    ) -> wasmtime::Result<Option<Resource<CertificateRes>>> {
        if self.conn.chain.is_empty() {
            // Whether there is one is a question a replay cannot ask again.
            self.unrepeatable();
            return Ok(None);
        }
        Ok(Some(self.push_certificate(0)?))
    }

    fn client_serial_hex(
        &mut self,
        _: Resource<ConnectionRes>,
    ) -> wasmtime::Result<Option<String>> {
        maybe_text(self.ask(Ask::ClientSerialHex)?)
    }

    fn intermediates(
        &mut self,
        _: Resource<ConnectionRes>,
    ) -> wasmtime::Result<Vec<Resource<CertificateRes>>> {
        self.unrepeatable();
        (1..self.conn.chain.len())
            .map(|index| self.push_certificate(index))
            .collect()
    }

    fn expiry_ignored(&mut self, _: Resource<ConnectionRes>) -> wasmtime::Result<bool> {
        match self.ask(Ask::ExpiryIgnored)? {
            Answer::Bool(ignored) => Ok(ignored),
            other => Err(mismatch(other)),
        }
    }

    fn drop(&mut self, rep: Resource<ConnectionRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

// Reachable only through a handle, and every handle is handed out by
// `HostState::push_certificate`, which makes the call unrepeatable.
impl types::HostCertificate for HostState {
    fn serial_number(&mut self, res: Resource<CertificateRes>) -> wasmtime::Result<String> {
        let index = self.cert_index(&res)?;
        match &self.conn.chain[index] {
            // The common case needs only the serial: read it straight from
            // the DER unless the certificate is parsed anyway.
            CertSource::Der(der) => match self.parsed[index].get() {
                Some(Ok(info)) => Ok(info.serial_number()),
                _ => tollgate_x509::serial_number_from_der(der)
                    .map_err(|e| wasmtime::format_err!("client certificate {index}: {e}")),
            },
            CertSource::Fields(f) => Ok(f.serial_number.clone()),
        }
    }

    fn subject(&mut self, res: Resource<CertificateRes>) -> wasmtime::Result<String> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => info.subject(),
            Cert::Fields(f) => f.subject.clone(),
        })
    }

    fn subject_attributes(
        &mut self,
        res: Resource<CertificateRes>,
    ) -> wasmtime::Result<Vec<types::NameAttribute>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => name_attributes(info.subject_attributes()),
            Cert::Fields(f) => name_attributes(&dn_attributes(&f.subject)?),
        })
    }

    fn subject_attribute(
        &mut self,
        res: Resource<CertificateRes>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => attribute_values(info.subject_attributes(), &name),
            Cert::Fields(f) => attribute_values(&dn_attributes(&f.subject)?, &name),
        })
    }

    fn issuer(&mut self, res: Resource<CertificateRes>) -> wasmtime::Result<String> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => info.issuer(),
            Cert::Fields(f) => f.issuer.clone(),
        })
    }

    fn issuer_attributes(
        &mut self,
        res: Resource<CertificateRes>,
    ) -> wasmtime::Result<Vec<types::NameAttribute>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => name_attributes(info.issuer_attributes()),
            Cert::Fields(f) => name_attributes(&dn_attributes(&f.issuer)?),
        })
    }

    fn issuer_attribute(
        &mut self,
        res: Resource<CertificateRes>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => attribute_values(info.issuer_attributes(), &name),
            Cert::Fields(f) => attribute_values(&dn_attributes(&f.issuer)?, &name),
        })
    }

    fn validity(&mut self, res: Resource<CertificateRes>) -> wasmtime::Result<types::Validity> {
        let (not_before_unix, not_after_unix) = match self.cert(&res)? {
            Cert::Der { info, .. } => (info.not_before_unix(), info.not_after_unix()),
            Cert::Fields(f) => (f.not_before, f.not_after),
        };
        Ok(types::Validity {
            not_before: tollgate_x509::format_rfc3339(not_before_unix),
            not_after: tollgate_x509::format_rfc3339(not_after_unix),
            not_before_unix,
            not_after_unix,
        })
    }

    fn sha256_fingerprint(&mut self, res: Resource<CertificateRes>) -> wasmtime::Result<String> {
        let index = self.cert_index(&res)?;
        Ok(match &self.conn.chain[index] {
            CertSource::Der(der) => tollgate_x509::sha256_fingerprint(der),
            CertSource::Fields(f) => f.sha256_fingerprint.clone(),
        })
    }

    fn subject_alt_names(
        &mut self,
        res: Resource<CertificateRes>,
    ) -> wasmtime::Result<Vec<types::SubjectAltName>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => info.subject_alt_names().iter().map(san).collect(),
            Cert::Fields(f) => f.san.iter().map(san).collect(),
        })
    }

    fn key_usage(
        &mut self,
        res: Resource<CertificateRes>,
    ) -> wasmtime::Result<Option<types::KeyUsage>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => info.key_usage().map(key_usage),
            Cert::Fields(_) => None,
        })
    }

    fn extended_key_usage(
        &mut self,
        res: Resource<CertificateRes>,
    ) -> wasmtime::Result<Option<Vec<String>>> {
        Ok(match self.cert(&res)? {
            Cert::Der { info, .. } => info.extended_key_usage().map(<[String]>::to_vec),
            Cert::Fields(_) => None,
        })
    }

    fn der(&mut self, res: Resource<CertificateRes>) -> wasmtime::Result<Vec<u8>> {
        Ok(match self.cert(&res)? {
            Cert::Der { der, .. } => der.to_vec(),
            Cert::Fields(_) => Vec::new(),
        })
    }

    fn drop(&mut self, rep: Resource<CertificateRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl kvs::Host for HostState {
    fn exists_in(
        &mut self,
        name: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, kvs::Error>> {
        let store: Box<str> = name.into();
        match self.ask(Ask::ExistsIn {
            store: store.clone(),
            key: key.into(),
        })? {
            Answer::Found(Some(found)) => Ok(Ok(found)),
            Answer::Found(None) => Ok(Err(kvs::Error::NoSuchStore(store.into()))),
            other => Err(mismatch(other)),
        }
    }
}

impl kvs::HostStore for HostState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<StoreRes>, kvs::Error>> {
        let name: Box<str> = name.into();
        match self.ask(Ask::Open {
            store: name.clone(),
        })? {
            Answer::Opened(true) => {}
            Answer::Opened(false) => return Ok(Err(kvs::Error::NoSuchStore(name.into()))),
            other => return Err(mismatch(other)),
        }
        let snapshot = replay::open_in(&self.stores, &mut self.opened, &name)
            .map_err(|_| wasmtime::format_err!("store {name} is not open"))?;
        Ok(Ok(self.table.push(StoreRes { name, snapshot })?))
    }

    fn get(
        &mut self,
        res: Resource<StoreRes>,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, kvs::Error>> {
        let store = self.store_name(&res)?;
        match self.ask(Ask::Get {
            store,
            key: key.into(),
        })? {
            Answer::Value(Ok(value)) => Ok(Ok(value)),
            Answer::Value(Err(())) => Ok(Err(kvs::Error::NotUtf8)),
            other => Err(mismatch(other)),
        }
    }

    fn get_bytes(
        &mut self,
        res: Resource<StoreRes>,
        key: String,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let store = self.store_name(&res)?;
        match self.ask(Ask::GetBytes {
            store,
            key: key.into(),
        })? {
            Answer::Bytes(value) => Ok(value),
            other => Err(mismatch(other)),
        }
    }

    fn exists(&mut self, res: Resource<StoreRes>, key: String) -> wasmtime::Result<bool> {
        let store = self.store_name(&res)?;
        match self.ask(Ask::Exists {
            store,
            key: key.into(),
        })? {
            Answer::Bool(found) => Ok(found),
            other => Err(mismatch(other)),
        }
    }

    fn meta(&mut self, res: Resource<StoreRes>) -> wasmtime::Result<kvs::Meta> {
        // Its etag and times change with every update: not worth recording.
        self.unrepeatable();
        let meta = self.snapshot(&res)?.meta();
        Ok(kvs::Meta {
            key_count: meta.key_count,
            total_size_bytes: meta.total_size_bytes,
            created: meta.created_rfc3339(),
            last_updated: meta.last_modified_rfc3339(),
            etag: meta.etag.clone(),
        })
    }

    fn drop(&mut self, rep: Resource<StoreRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn log_custom_data(&mut self, text: String) -> wasmtime::Result<()> {
        self.output.lock().set_custom_data(text)?;
        Ok(())
    }

    fn console(&mut self, level: log::Level, text: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Debug => ConsoleLevel::Debug,
            log::Level::Info => ConsoleLevel::Info,
            log::Level::Warn => ConsoleLevel::Warn,
            log::Level::Error => ConsoleLevel::Error,
        };
        self.output.lock().console(level, text)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(memory_exhausted: bool, table_exhausted: bool) -> HostState {
        let limiter = Limiter {
            memory_bytes: 1 << 20,
            table_elements: 100,
            instances: 1,
            tables: 1,
            memories: 1,
            memory_exhausted,
            table_exhausted,
        };
        HostState::new(
            std::time::Duration::ZERO,
            Arc::new(ConnectionInfo::for_test()),
            crate::StoreSet::new([]),
            SharedOutput::new(1024),
            limiter,
        )
    }

    #[test]
    fn an_instance_that_hit_a_limit_is_not_reused() {
        assert!(state(false, false).reusable());
        assert!(!state(true, false).reusable());
        assert!(!state(false, true).reusable());
        let mut timed_out = state(false, false);
        timed_out.timed_out = true;
        assert!(!timed_out.reusable());
    }
}
