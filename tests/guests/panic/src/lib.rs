use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(boom);

fn boom(conn: &Connection) -> Decision {
    let id = conn.id();
    panic!("deliberate panic on connection {id}");
}
