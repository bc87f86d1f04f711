use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(flood);

fn flood(_conn: &Connection) -> Decision {
    let megabyte = "x".repeat(1 << 20);
    log_custom_data(&megabyte);
    Decision::Allow
}
