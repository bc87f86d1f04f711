//! Counts its calls in a static and logs the count as custom data. Every
//! connection gets a fresh instance, so the count must always be 1.

use std::sync::atomic::{AtomicU32, Ordering};

use tollgate_guest::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

tollgate_guest::connection_function!(count);

fn count(_conn: &Connection) -> Decision {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    log_custom_data(&format!("calls={n}"));
    Decision::Allow
}
