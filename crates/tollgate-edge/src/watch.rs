//! Reload when watched files change: the configuration file and every file
//! it names (certificates, keys, trust stores, CRLs, origin CA and client
//! certificate, function and import files). Polled, so it works on every
//! filesystem and with editors and tools that replace files by renaming.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tollgate_config::Config;

use crate::server::Reloader;

/// What is watched of a file: enough to see a write or a replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    modified: Option<SystemTime>,
    len: Option<u64>,
    #[cfg(unix)]
    inode: Option<u64>,
}

fn seen(path: &PathBuf) -> Seen {
    let meta = std::fs::metadata(path).ok();
    Seen {
        modified: meta.as_ref().and_then(|m| m.modified().ok()),
        len: meta.as_ref().map(|m| m.len()),
        #[cfg(unix)]
        inode: meta.as_ref().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        }),
    }
}

/// Every file `config` reads, the config file first.
pub fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.source.clone()];
    for f in config.functions.values() {
        files.push(f.wasm.clone());
    }
    for k in config.kvs.values() {
        files.extend(k.import.clone());
    }
    for l in &config.listeners {
        for c in &l.certificates {
            files.push(c.cert.clone());
            files.push(c.key.clone());
        }
        files.extend(l.mtls.trust_store.clone());
        files.extend(l.mtls.crls.iter().cloned());
        files.extend(l.origin.ca.clone());
        files.extend(l.origin.client_cert.clone());
        files.extend(l.origin.client_key.clone());
    }
    files.sort();
    files.dedup();
    files
}

fn snapshot(files: &[PathBuf]) -> Vec<Seen> {
    files.iter().map(seen).collect()
}

/// The baseline after a reload: a file watched before keeps what was seen
/// of it *before* the reload read it (a change made while the reload ran is
/// then seen at the next poll, not taken as already loaded); a newly named
/// file is looked at now.
fn rebase(old_files: &[PathBuf], old_seen: &[Seen], new_files: &[PathBuf]) -> Vec<Seen> {
    new_files
        .iter()
        .map(|f| match old_files.iter().position(|o| o == f) {
            Some(i) => old_seen[i].clone(),
            None => seen(f),
        })
        .collect()
}

/// Polls every `interval` and reloads when a watched file changed and then
/// stayed the same for one more poll (so a file being written is not read
/// half-way). A reload that fails is reported and not retried until the
/// files change again. The files are first looked at when `watch` is called,
/// not when its future first runs: a change made after the call (once the
/// server is announced, say) is seen even if the task starts late. The
/// future runs until it is dropped.
pub fn watch(reloader: Reloader, interval: Duration) -> impl Future<Output = ()> + Send {
    let files = watched_files(&reloader.config());
    let last = snapshot(&files);
    poll_files(reloader, interval, files, last)
}

async fn poll_files(
    reloader: Reloader,
    interval: Duration,
    mut files: Vec<PathBuf>,
    mut last: Vec<Seen>,
) {
    let mut pending: Option<Vec<Seen>> = None;
    loop {
        tokio::time::sleep(interval).await;
        let now = snapshot(&files);
        if now == last {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            // Changed since the last poll: wait until it holds still.
            pending = Some(now);
            continue;
        }
        pending = None;
        last = now.clone();
        let path = reloader.config().source;
        match reloader.reload_from_disk().await {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "tollgate: files changed; configuration reloaded from {}",
                    path.display()
                );
                // The new configuration may name other files.
                let named = watched_files(&reloader.config());
                last = rebase(&files, &now, &named);
                files = named;
            }
            Err(e) => eprintln!(
                "tollgate: files changed but the reload was refused, still serving the previous configuration:\n{e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changed_during_a_reload_is_seen_at_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let crl = dir.path().join("a.crl");
        let config = dir.path().join("tollgate.toml");
        std::fs::write(&crl, "one").unwrap();
        std::fs::write(&config, "x").unwrap();
        let before = vec![config.clone(), crl.clone()];
        let seen_before = snapshot(&before);
        // Written while the reload ran (after it read the file).
        std::fs::write(&crl, "two, longer").unwrap();
        let added = dir.path().join("b.crl");
        std::fs::write(&added, "new").unwrap();
        let after = vec![config.clone(), crl.clone(), added.clone()];
        let baseline = rebase(&before, &seen_before, &after);
        assert_eq!(baseline[0], seen(&config));
        assert_ne!(baseline[1], seen(&crl), "the change would be lost");
        assert_eq!(baseline[2], seen(&added));
        assert_ne!(snapshot(&after), baseline);
    }
}
