use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(flood);

fn flood(_conn: &Connection) -> Decision {
    let mut i: u64 = 0;
    loop {
        console::info(&format!("line {i}"));
        i += 1;
    }
}
