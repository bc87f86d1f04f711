use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(spin);

fn spin(conn: &Connection) -> Decision {
    let mut n: u64 = conn.client_port().into();
    loop {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
