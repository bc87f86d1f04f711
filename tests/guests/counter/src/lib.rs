//! Counts its calls in a static and logs the count as custom data. By
//! default every connection gets a fresh instance, so the count is always 1;
//! with `max_calls_per_instance` above 1 it counts the calls one instance
//! served.

use std::sync::atomic::{AtomicU32, Ordering};

use tollgate_guest::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

tollgate_guest::connection_function!(count);

fn count(_conn: &Connection) -> Decision {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    log_custom_data(&format!("calls={n}"));
    Decision::Allow
}
