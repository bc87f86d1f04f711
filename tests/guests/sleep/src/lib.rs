//! Sleeps for a minute, then allows. A connection function cannot wait (a
//! sleep would hold the connection without spending the CPU time its limit
//! counts), so Tollgate stops it at the sleep: the call is denied at once.

use std::time::Duration;

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(sleepy);

fn sleepy(_conn: &Connection) -> Decision {
    std::thread::sleep(Duration::from_secs(60));
    Decision::Allow
}
