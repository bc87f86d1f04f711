use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(dive);

/// Recursion that keeps its state in Wasm locals, so it is the engine's
/// stack (not the guest's shadow stack in linear memory) that overflows.
#[allow(unconditional_recursion)]
fn depth(n: u64) -> u64 {
    std::hint::black_box(depth(n.wrapping_add(1))) ^ n
}

fn dive(conn: &Connection) -> Decision {
    std::hint::black_box(depth(u64::from(conn.client_port())));
    Decision::Allow
}
