//! Replaying a function's decision instead of running it again.
//!
//! A call in a fresh instance is a pure function of the host's answers: the
//! instance starts from the same state every time, Wasm is deterministic, and
//! every import that could differ between two calls with the same answers
//! (clocks, randomness, the rest of WASI) is either one of the questions
//! below or marks the call as not replayable. So once a call has run, the
//! sequence of questions it asked and the answers it got decide its outcome:
//! a later connection that gets the same answer to each of the same questions
//! would run the same code to the same outcome.
//!
//! [`Replays`] keeps those sequences as a tree per function version: each
//! node is the next question the function asks, each edge one answer, each
//! leaf an outcome. A call first walks the tree, asking each question of its
//! own connection and of the stores *as they are now*, with the host's own
//! code ([`answer`]); if every answer has an edge it ends on a leaf and that
//! outcome is the call's, with no instance. Otherwise the function runs, its
//! questions and answers are recorded, and a successful call becomes a new
//! path. Store updates need no invalidation: a lookup is a question, asked
//! again on every replay.
//!
//! Only what a call can decide on is replayed: a call that failed (trap,
//! timeout, limits) always runs; a call that asked a question without a
//! stable answer (the connection id, the client port, the handshake
//! duration, a certificate handle's fields, a store's metadata, any WASI
//! call) is not recorded. Instances kept between calls
//! (`max_calls_per_instance` > 1) carry state from call to call, so
//! functions that keep them never replay.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tollgate_kvs::Snapshot;
use tollgate_x509::CertInfo;

use crate::connection::{CertSource, ConnectionInfo};
use crate::host::kvs;
use crate::outcome::{Decision, FunctionError};
use crate::output::ConsoleLine;
use crate::runtime::StoreSet;

/// At most this many questions in a recorded call; a call that asks more is
/// not recorded (its replay would cost what running it does).
pub(crate) const MAX_QUESTIONS: usize = 32;

/// A question a function asks the host whose answer depends only on the
/// connection and on the data of the stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Ask {
    ClientIp,
    ServerIp,
    ServerPort,
    Sni,
    Alpn,
    TlsVersion,
    CipherSuite,
    Listener,
    ExpiryIgnored,
    ClientSerialHex,
    ExistsIn { store: Box<str>, key: Box<str> },
    Open { store: Box<str> },
    Get { store: Box<str>, key: Box<str> },
    GetBytes { store: Box<str>, key: Box<str> },
    Exists { store: Box<str>, key: Box<str> },
}

/// The host's answer to an [`Ask`], compared exactly on replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Answer {
    Bool(bool),
    Port(u16),
    Ip(IpAddr),
    Text(String),
    MaybeText(Option<String>),
    /// `exists-in`: `None` when there is no such store.
    Found(Option<bool>),
    /// `store.open`: whether the store is associated with the function.
    Opened(bool),
    /// `store.get`: `Err` when the value is not UTF-8.
    Value(Result<Option<String>, ()>),
    Bytes(Option<Vec<u8>>),
}

/// This call's snapshot of store `name`, opened on first use: every
/// question about a store in one call (and one replay) sees the same data.
pub(crate) fn open_in(
    stores: &StoreSet,
    opened: &mut Vec<(Box<str>, Arc<Snapshot>)>,
    name: &str,
) -> Result<Arc<Snapshot>, kvs::Error> {
    if let Some((_, snapshot)) = opened.iter().find(|(n, _)| **n == *name) {
        return Ok(snapshot.clone());
    }
    match stores.get(name) {
        Some(store) => {
            let snapshot = store.snapshot();
            opened.push((name.into(), snapshot.clone()));
            Ok(snapshot)
        }
        None => Err(kvs::Error::NoSuchStore(name.to_owned())),
    }
}

/// Answers `ask` for a connection: the one implementation both the host
/// imports and a replay use. `leaf` is the parsed leaf if there is one at
/// hand. An error is a host error (the call stops; a replay misses).
pub(crate) fn answer(
    ask: &Ask,
    conn: &ConnectionInfo,
    leaf: Option<&CertInfo>,
    stores: &StoreSet,
    opened: &mut Vec<(Box<str>, Arc<Snapshot>)>,
) -> wasmtime::Result<Answer> {
    let open = |opened: &mut Vec<_>, name: &str| {
        open_in(stores, opened, name).map_err(|_| wasmtime::format_err!("store {name} is not open"))
    };
    Ok(match ask {
        Ask::ClientIp => Answer::Ip(conn.client.ip()),
        Ask::ServerIp => Answer::Ip(conn.server.ip()),
        Ask::ServerPort => Answer::Port(conn.server.port()),
        Ask::Sni => Answer::MaybeText(conn.sni.clone()),
        Ask::Alpn => Answer::MaybeText(conn.alpn.clone()),
        Ask::TlsVersion => Answer::Text(conn.tls_version.clone()),
        Ask::CipherSuite => Answer::Text(conn.cipher_suite.clone()),
        Ask::Listener => Answer::Text(conn.listener.clone()),
        Ask::ExpiryIgnored => Answer::Bool(conn.expiry_ignored),
        Ask::ClientSerialHex => Answer::MaybeText(match conn.chain.first() {
            None => None,
            // Hex of the serial's bytes at once, rather than the colon form
            // stripped of its colons.
            Some(CertSource::Der(der)) => Some(tollgate_x509::hex_lower(match leaf {
                Some(info) => info.serial_bytes(),
                None => tollgate_x509::serial_bytes_from_der(der)
                    .map_err(|e| wasmtime::format_err!("client certificate 0: {e}"))?,
            })),
            Some(CertSource::Fields(f)) => Some(f.serial_number.replace(':', "")),
        }),
        Ask::ExistsIn { store, key } => {
            Answer::Found(open_in(stores, opened, store).ok().map(|s| s.exists(key)))
        }
        Ask::Open { store } => Answer::Opened(open_in(stores, opened, store).is_ok()),
        Ask::Get { store, key } => Answer::Value(match open(opened, store)?.get(key) {
            None => Ok(None),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Ok(Some(text.to_owned())),
                Err(_) => Err(()),
            },
        }),
        Ask::GetBytes { store, key } => {
            Answer::Bytes(open(opened, store)?.get(key).map(<[u8]>::to_vec))
        }
        Ask::Exists { store, key } => Answer::Bool(open(opened, store)?.exists(key)),
    })
}

/// What a replay hands back: everything of an outcome but its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub decision: Decision,
    pub reason: Option<String>,
    pub error: Option<FunctionError>,
    pub custom_data: Option<String>,
    pub console: Vec<ConsoleLine>,
}

impl Recorded {
    /// What of `outcome` a replay gives back.
    pub fn of(outcome: &crate::Outcome) -> Recorded {
        Recorded {
            decision: outcome.decision,
            reason: outcome.reason.clone(),
            error: outcome.error.clone(),
            custom_data: outcome.custom_data.clone(),
            console: outcome.console.clone(),
        }
    }

    /// The replayed outcome; `duration` is the replay's.
    pub fn outcome(&self, duration: std::time::Duration) -> crate::Outcome {
        crate::Outcome {
            decision: self.decision,
            reason: self.reason.clone(),
            error: self.error.clone(),
            custom_data: self.custom_data.clone(),
            console: self.console.clone(),
            duration,
            compute_utilization: 0,
            replayed: true,
        }
    }

    fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        64 + text(&self.reason)
            + self.error.as_ref().map_or(0, |e| e.message.len())
            + text(&self.custom_data)
            + self
                .console
                .iter()
                .map(|l| 32 + l.text.len())
                .sum::<usize>()
    }
}

enum Node {
    /// The next question the function asks at this point.
    Ask(Ask),
    /// The function returned.
    Done(Arc<Recorded>),
}

#[derive(Default)]
struct Tree {
    /// `nodes[0]` is the root: the first question (or the outcome of a
    /// function that asks none).
    nodes: Vec<Node>,
    /// (node, answer) → the node that answer leads to.
    edges: HashMap<(u32, Answer), u32>,
    /// An estimate of the memory held, for the bound.
    bytes: usize,
}

/// The recorded calls of one function version. See the module docs.
///
/// A function's first question is the same on every call (it starts from
/// the same state), so the tree is split by the first answer into shards,
/// each under its own lock with its own share of the memory: recording a
/// new path, growing a map or starting over when full holds up only the
/// clients of one shard. The shard is chosen by a hash with random keys, so
/// no client can aim its answers at another's shard.
pub(crate) struct Replays {
    /// The first question every call asks; `None` inside: the function asks
    /// none. Unset until a call is recorded.
    first: OnceLock<Option<Ask>>,
    shards: Box<[RwLock<Tree>]>,
    shard_bytes: usize,
    hasher: RandomState,
    /// Set if a recorded call ever disagreed with the tree (a function that
    /// is not deterministic after all): it then always runs.
    off: AtomicBool,
    hits: AtomicU64,
}

/// Shards of about this much memory (fewer for small budgets, at most
/// [`MAX_SHARDS`]): what a reset frees, or a map rehashes, under one lock
/// stays small.
const SHARD_BYTES: usize = 2 << 20;
const MAX_SHARDS: usize = 256;

impl Replays {
    pub fn new(max_bytes: usize) -> Replays {
        let shards = (max_bytes / SHARD_BYTES).clamp(1, MAX_SHARDS);
        Replays {
            first: OnceLock::new(),
            shards: (0..shards).map(|_| RwLock::new(Tree::default())).collect(),
            shard_bytes: max_bytes / shards,
            hasher: RandomState::new(),
            off: AtomicBool::new(false),
            hits: AtomicU64::new(0),
        }
    }

    /// Calls answered by a replay so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn shard(&self, first: Option<&Answer>) -> &RwLock<Tree> {
        let i = first.map_or(0, |a| self.hasher.hash_one(a) as usize % self.shards.len());
        &self.shards[i]
    }

    /// The outcome a call on `conn` would have, if a recorded call got the
    /// same answers to the same questions.
    pub fn find(&self, conn: &ConnectionInfo, stores: &StoreSet) -> Option<Arc<Recorded>> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        let leaf = conn.leaf.as_deref();
        let mut opened = Vec::new();
        // The first answer picks the shard; the walk starts past it.
        let first = match self.first.get()? {
            Some(ask) => Some(answer(ask, conn, leaf, stores, &mut opened).ok()?),
            None => None,
        };
        let tree = self.shard(first.as_ref()).read().ok()?;
        let mut node = 0u32;
        let mut pending = first;
        loop {
            match tree.nodes.get(node as usize)? {
                Node::Done(recorded) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(recorded.clone());
                }
                Node::Ask(ask) => {
                    let answer = match pending.take() {
                        Some(first) => first,
                        None => answer(ask, conn, leaf, stores, &mut opened).ok()?,
                    };
                    node = *tree.edges.get(&(node, answer))?;
                }
            }
        }
    }

    /// Adds a call that ran to its end, asking `trace`'s questions.
    pub fn insert(&self, trace: &[(Ask, Answer)], recorded: Recorded) {
        if self.off.load(Ordering::Relaxed) {
            return;
        }
        let first = trace.first().map(|(ask, _)| ask);
        if self.first.get_or_init(|| first.cloned()).as_ref() != first {
            return self.turn_off();
        }
        // The most this path can add (less if it shares a prefix).
        let most = recorded.size()
            + trace
                .iter()
                .map(|(ask, answer)| NODE_BYTES + ask_size(ask) + EDGE_BYTES + answer_size(answer))
                .sum::<usize>();
        if most > self.shard_bytes {
            return;
        }
        let Ok(mut tree) = self.shard(trace.first().map(|(_, a)| a)).write() else {
            return;
        };
        // Full: start over rather than track what is used least. The old
        // tree is freed after the lock is released.
        let old = (tree.bytes + most > self.shard_bytes).then(|| std::mem::take(&mut *tree));
        let agrees = tree.add(trace, recorded);
        drop(tree);
        drop(old);
        if !agrees {
            self.turn_off();
        }
    }

    /// The same answers led somewhere else: the function is not a function
    /// of its answers. It is never replayed again.
    fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
        for shard in &self.shards {
            if let Ok(mut tree) = shard.write() {
                let old = std::mem::take(&mut *tree);
                drop(tree);
                drop(old);
            }
        }
        tracing::warn!(
            "a connection function behaved differently on the same answers; its calls are no longer replayed"
        );
    }
}

impl Tree {
    /// Adds one path, counting the memory of what it creates; false if it
    /// contradicts the tree.
    fn add(&mut self, trace: &[(Ask, Answer)], recorded: Recorded) -> bool {
        let recorded = Arc::new(recorded);
        let node_for = |i: usize| match trace.get(i) {
            Some((ask, _)) => (Node::Ask(ask.clone()), NODE_BYTES + ask_size(ask)),
            None => (Node::Done(recorded.clone()), NODE_BYTES + recorded.size()),
        };
        if self.nodes.is_empty() {
            let (root, bytes) = node_for(0);
            self.nodes.push(root);
            self.bytes += bytes;
        }
        let mut node = 0u32;
        for (i, (ask, answer)) in trace.iter().enumerate() {
            match &self.nodes[node as usize] {
                Node::Ask(asked) if asked == ask => {}
                _ => return false,
            }
            let key = (node, answer.clone());
            node = match self.edges.get(&key) {
                Some(&next) => next,
                None => {
                    let Ok(next) = u32::try_from(self.nodes.len()) else {
                        return false;
                    };
                    let (created, bytes) = node_for(i + 1);
                    self.nodes.push(created);
                    self.edges.insert(key, next);
                    self.bytes += bytes + EDGE_BYTES + answer_size(answer);
                    next
                }
            };
        }
        match &self.nodes[node as usize] {
            Node::Done(existing) => **existing == *recorded,
            Node::Ask(_) => false,
        }
    }
}

/// Memory per node and per edge beyond their strings, spare capacity of
/// the vector and the map included (up to twice the entry size).
const NODE_BYTES: usize = 96;
const EDGE_BYTES: usize = 112;

/// The heap memory of a question's strings.
fn ask_size(ask: &Ask) -> usize {
    match ask {
        Ask::ExistsIn { store, key }
        | Ask::Get { store, key }
        | Ask::GetBytes { store, key }
        | Ask::Exists { store, key } => store.len() + key.len(),
        Ask::Open { store } => store.len(),
        _ => 0,
    }
}

/// The heap memory of an answer.
fn answer_size(answer: &Answer) -> usize {
    match answer {
        Answer::Text(t) | Answer::MaybeText(Some(t)) | Answer::Value(Ok(Some(t))) => t.len(),
        Answer::Bytes(Some(b)) => b.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(custom: &str) -> Recorded {
        Recorded {
            decision: Decision::Allow,
            reason: None,
            error: None,
            custom_data: Some(custom.into()),
            console: Vec::new(),
        }
    }

    fn text(t: &str) -> Answer {
        Answer::MaybeText(Some(t.into()))
    }

    #[test]
    fn paths_share_their_common_questions() {
        let mut tree = Tree::default();
        let a = [(Ask::Sni, text("a")), (Ask::Alpn, text("h2"))];
        let b = [(Ask::Sni, text("b"))];
        assert!(tree.add(&a, recorded("a")));
        assert!(tree.add(&b, recorded("b")));
        assert!(tree.add(&a, recorded("a")));
        // Sni, then Alpn after "a", two leaves.
        assert_eq!(tree.nodes.len(), 4);
        assert_eq!(tree.edges.len(), 3);
    }

    fn conn_with_sni(sni: Option<&str>) -> ConnectionInfo {
        let mut conn = ConnectionInfo::for_test();
        conn.sni = sni.map(str::to_owned);
        conn
    }

    #[test]
    fn paths_spread_over_shards_and_each_finds_its_own() {
        let replays = Replays::new(32 << 20);
        assert_eq!(replays.shards.len(), 16);
        let stores = StoreSet::new([]);
        let names: Vec<String> = (0..200).map(|i| format!("h{i}.example")).collect();
        for name in &names {
            replays.insert(&[(Ask::Sni, text(name))], recorded(name));
        }
        for name in &names {
            let found = replays.find(&conn_with_sni(Some(name)), &stores);
            assert_eq!(found.unwrap().custom_data.as_deref(), Some(name.as_str()));
        }
        assert!(
            replays
                .find(&conn_with_sni(Some("other")), &stores)
                .is_none()
        );
        let used = replays
            .shards
            .iter()
            .filter(|s| !s.read().unwrap().nodes.is_empty())
            .count();
        assert!(used > 8, "{used} shards used");
        // Small budgets keep one shard, so a path still fits.
        assert_eq!(Replays::new(4096).shards.len(), 1);
    }

    #[test]
    fn memory_is_counted_for_what_a_path_creates_and_an_oversized_path_changes_nothing() {
        let mut tree = Tree::default();
        let path = [(Ask::Sni, text("a")), (Ask::Alpn, text("h2"))];
        assert!(tree.add(&path, recorded("a")));
        let once = tree.bytes;
        assert!(once > 0);
        assert!(tree.add(&path, recorded("a")));
        assert_eq!(tree.bytes, once, "nothing new, nothing counted");

        let replays = Replays::new(4096);
        let stores = StoreSet::new([]);
        replays.insert(&[(Ask::Sni, text("small"))], recorded("small"));
        let big = "x".repeat(5000);
        replays.insert(&[(Ask::Sni, text(&big))], recorded("big"));
        assert!(replays.find(&conn_with_sni(Some(&big)), &stores).is_none());
        assert!(
            replays
                .find(&conn_with_sni(Some("small")), &stores)
                .is_some(),
            "a path too big to keep emptied the shard"
        );
    }

    #[test]
    fn another_first_question_turns_replay_off() {
        let replays = Replays::new(1 << 20);
        let stores = StoreSet::new([]);
        let conn = conn_with_sni(None);
        replays.insert(&[(Ask::Sni, Answer::MaybeText(None))], recorded("a"));
        assert!(replays.find(&conn, &stores).is_some());
        replays.insert(&[(Ask::Alpn, text("h2"))], recorded("a"));
        assert!(replays.find(&conn, &stores).is_none());
        replays.insert(&[(Ask::Sni, Answer::MaybeText(None))], recorded("a"));
        assert!(replays.find(&conn, &stores).is_none(), "stays off");
    }

    #[test]
    fn a_contradiction_is_detected() {
        let mut tree = Tree::default();
        assert!(tree.add(&[(Ask::Sni, text("a"))], recorded("a")));
        // Same answer, another outcome.
        assert!(!tree.add(&[(Ask::Sni, text("a"))], recorded("x")));
        // Same answer, another next question.
        assert!(!tree.add(
            &[(Ask::Sni, text("a")), (Ask::Alpn, text("h2"))],
            recorded("a")
        ));
        // Another first question.
        assert!(!tree.add(&[(Ask::Alpn, text("h2"))], recorded("a")));
    }
}
