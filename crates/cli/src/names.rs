//! Service names: a mixnet address and a virtual port, and the DNS-safe hostname form of
//! an address used by the SOCKS5 proxy.
//!
//! * Simulator addresses (`sim:` + 64 hex digits) are written `<32 hex>.<32 hex>.sim`
//!   (a DNS label holds at most 63 characters).
//! * Nym addresses (`identity.encryption@gateway`, base58) are written
//!   `<identity>.<encryption>.<gateway>.nym` (feature `nym`).
//!
//! ```
//! use nym_stream_cli::names::{hostname, parse_host};
//!
//! let addr = format!("sim:{}", "ab".repeat(32)).parse().unwrap();
//! let host = hostname(&addr);
//! assert_eq!(host, format!("{}.{}.sim", "ab".repeat(16), "ab".repeat(16)));
//! assert_eq!(parse_host(&host).unwrap(), addr);
//! assert!(parse_host("example.com").is_err());
//! ```

use std::fmt;

use nym_stream::mixnet::Recipient;

/// A service: a mixnet address and the virtual port to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The service's mixnet address.
    pub address: Recipient,
    /// The virtual port (what the service maps to a local target).
    pub port: u16,
}

/// Text that names no service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a mixnet service: {why}")]
pub struct NameError {
    /// The text given (at most 200 characters).
    pub input: String,
    /// What was wrong.
    pub why: String,
}

fn err(input: &str, why: impl fmt::Display) -> NameError {
    NameError {
        input: input.chars().take(200).collect(),
        why: why.to_string(),
    }
}

impl std::str::FromStr for Service {
    type Err = NameError;

    /// `ADDRESS:PORT`, the address as a client prints it or in its hostname form.
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (addr, port) = s
            .rsplit_once(':')
            .ok_or_else(|| err(s, "expected ADDRESS:PORT"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| err(s, format!("{port:?} is not a port number (0-65535)")))?;
        let address = addr
            .parse::<Recipient>()
            .or_else(|_| parse_host(addr))
            .map_err(|e| err(s, e.why))?;
        Ok(Service { address, port })
    }
}

/// The DNS-safe hostname of an address.
pub fn hostname(addr: &Recipient) -> String {
    let text = addr.to_string();
    if let Some(hex) = text.strip_prefix(mixnet_sim::ADDRESS_PREFIX) {
        let (a, b) = hex.split_at(hex.len() / 2);
        return format!("{a}.{b}.sim");
    }
    // identity.encryption@gateway
    format!("{}.nym", text.replace('@', "."))
}

/// The address a hostname names: the `.sim` or `.nym` form (see the module docs). Any
/// other name (an ordinary hostname, an IP address) is an error: the proxy is no exit
/// to the internet.
pub fn parse_host(host: &str) -> Result<Recipient, NameError> {
    let h = host.trim_end_matches('.');
    if let Some(rest) = h.strip_suffix(".sim") {
        let hex: String = rest.split('.').collect();
        return format!("{}{}", mixnet_sim::ADDRESS_PREFIX, hex.to_ascii_lowercase())
            .parse::<Recipient>()
            .map_err(|e| err(host, e));
    }
    if let Some(rest) = h.strip_suffix(".nym") {
        let parts: Vec<&str> = rest.split('.').collect();
        let [id, enc, gw] = parts[..] else {
            return Err(err(host, "expected <identity>.<encryption>.<gateway>.nym"));
        };
        return format!("{id}.{enc}@{gw}")
            .parse::<Recipient>()
            .map_err(|e| err(host, e));
    }
    Err(err(
        host,
        "only mixnet services are reachable: a name ending in .sim or .nym",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_in_both_forms() {
        let addr: Recipient = format!("sim:{}", "0f".repeat(32)).parse().unwrap();
        let s: Service = format!("{addr}:80").parse().unwrap();
        assert_eq!(
            s,
            Service {
                address: addr,
                port: 80
            }
        );
        let s: Service = format!("{}:8080", hostname(&addr)).parse().unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.address, addr);
        // Upper-case hex from a resolver that changed the case still works.
        assert_eq!(
            parse_host(&hostname(&addr).to_uppercase().replace("SIM", "sim")).unwrap(),
            addr
        );
        for bad in [
            "",
            "sim:12:80",
            "nowhere:80",
            &format!("{addr}"),
            &format!("{addr}:99999"),
            "1.2.3.4:80",
        ] {
            assert!(bad.parse::<Service>().is_err(), "{bad}");
        }
        assert!(parse_host("a.b.nym").is_err());
    }
}
