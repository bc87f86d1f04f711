//! Allow only clients whose identity is listed in the store `allowed`.
//!
//! The identity is taken, in this order, from the leaf certificate's URI SANs
//! (e.g. SPIFFE IDs: key `uri:spiffe://example.org/ns/prod/sa/billing`), its
//! subject common names (key `cn:<CN>`), and its organizational units (key
//! `ou:<OU>`). The first listed one admits the client; its key is logged as
//! custom data (`ALLOWED:<key>`). Everything else is denied with a reason,
//! including connections without a client certificate.

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(check);

fn check(conn: &Connection) -> Result<Decision> {
    let Some(leaf) = conn.client_certificate() else {
        return Ok(Decision::deny("no client certificate"));
    };
    let allowed = Kvs::open("allowed")?;
    let candidates = leaf
        .uris()
        .into_iter()
        .map(|uri| format!("uri:{uri}"))
        .chain(
            leaf.subject_attribute("CN")
                .into_iter()
                .map(|cn| format!("cn:{cn}")),
        )
        .chain(
            leaf.organizational_units()
                .into_iter()
                .map(|ou| format!("ou:{ou}")),
        );
    for key in candidates {
        if allowed.exists(&key) {
            log_custom_data(&format!("ALLOWED:{key}"));
            return Ok(Decision::Allow);
        }
    }
    let subject = leaf.subject();
    log_custom_data(&format!("NOT-LISTED:{subject}"));
    Ok(Decision::deny(format!("subject not allowed: {subject}")))
}
