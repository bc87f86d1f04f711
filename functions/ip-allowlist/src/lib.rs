//! Allow client IPs inside the CIDR ranges listed in the store `ip-allowlist`
//! under the key `ranges`, as a JSON array of strings:
//! `["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]` (a bare address is a
//! /32 or /128). A malformed list is a function error, so the connection is
//! denied (fail closed) and the error is logged.

use std::net::IpAddr;

use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(check);

fn check(conn: &Connection) -> Result<Decision> {
    let ranges: Vec<String> = Kvs::open("ip-allowlist")?
        .get_json("ranges")?
        .ok_or("the store ip-allowlist has no key \"ranges\"")?;
    let ip = conn.client_ip();
    for range in &ranges {
        let cidr = Cidr::parse(range).map_err(|e| format!("bad range {range:?}: {e}"))?;
        if cidr.contains(ip) {
            log_custom_data(&format!("ALLOWED:{ip} in {range}"));
            return Ok(Decision::Allow);
        }
    }
    log_custom_data(&format!("NOT-LISTED:{ip}"));
    Ok(Decision::deny(format!(
        "client IP {ip} is not in an allowed range"
    )))
}

/// An address range in CIDR notation.
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> std::result::Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| "not an IP address".to_string())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32, self.prefix)
                    == masked(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            // An IPv4 client seen through an IPv4-mapped IPv6 socket.
            (IpAddr::V4(_), IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => self.contains(IpAddr::V4(v4)),
                None => false,
            },
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let shift = width - u32::from(prefix);
    (bits >> shift) << shift
}
