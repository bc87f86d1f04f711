//! Tries to read a file and open a TCP connection. Tollgate links neither
//! `wasi:filesystem` nor `wasi:sockets`, so this component is refused at load.

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(escape);

fn escape(_conn: &Connection) -> Decision {
    let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let net = std::net::TcpStream::connect("192.0.2.1:80").is_ok();
    Decision::allow_if(!secret.is_empty() || net, "sandbox held")
}
