//! A plain WASI command component: it targets `wasi:cli/command`, not the
//! `tollgate:connection/connection-function` world, and must be refused at load.
fn main() {
    println!("I am not a connection function");
}
