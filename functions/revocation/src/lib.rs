//! The canonical revocation check: the leaf's serial number, colons removed,
//! is looked up in the store `revoked`. Present → deny, logging
//! `REVOKED:<serial>`; absent → allow, logging `VALID:<serial>`.
//!
//! A connection without a client certificate (an `optional`-mode listener)
//! has nothing to check and is denied: this function is for listeners that
//! admit certified clients only.
//!
//! The serial and the lookup take one host call each (`client_serial_hex`,
//! `Kvs::exists_in`) rather than a certificate and a store handle to open
//! and drop: on every connection, each host call counts.

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(check);

fn check(conn: &Connection) -> Result<Decision> {
    let Some(serial) = conn.client_serial_hex() else {
        return Ok(Decision::deny("no client certificate"));
    };
    if Kvs::exists_in("revoked", &serial)? {
        log_custom_data(&format!("REVOKED:{serial}"));
        return Ok(Decision::deny("certificate revoked"));
    }
    log_custom_data(&format!("VALID:{serial}"));
    Ok(Decision::Allow)
}
