//! Keeps the client certificate of its first call in a static and, on every
//! call, logs the serial number read through the handle it kept, if any.
//! A handle must never outlive its call: an instance that kept one is not
//! reused, so every call must log `kept=none`.

use std::cell::RefCell;

use tollgate_guest::prelude::*;

thread_local! {
    static KEPT: RefCell<Option<Certificate>> = const { RefCell::new(None) };
}

tollgate_guest::connection_function!(keep);

fn keep(conn: &Connection) -> Decision {
    let seen = KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        let seen = kept.as_ref().map(Certificate::serial_number);
        if kept.is_none() {
            *kept = conn.client_certificate();
        }
        seen
    });
    log_custom_data(&format!("kept={}", seen.as_deref().unwrap_or("none")));
    Decision::Allow
}
