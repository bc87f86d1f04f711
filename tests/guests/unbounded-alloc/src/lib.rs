use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(hoard);

fn hoard(_conn: &Connection) -> Decision {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really used.
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
