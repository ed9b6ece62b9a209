//! `source_ip`: addresses and CIDR ranges.

use super::{Cx, one_or_many};
use crate::error::InvalidIpRange;
use crate::value::Value;
use crate::warning::CidrHostBits;
use ipnet::{IpNet, Ipv4Net};
use std::net::IpAddr;

pub(super) fn source_ip(data: &Value, cx: &mut Cx<'_>) -> Option<Vec<IpNet>> {
    let entries = one_or_many(data, "source_ip", cx)?;
    let mut networks = Vec::with_capacity(entries.len());
    for (text, value) in entries {
        match parse_network(text) {
            Ok(network) => {
                if network.trunc() != network {
                    cx.warn(CidrHostBits {
                        text: text.to_owned(),
                        network: network.trunc().to_string(),
                        span: value.span.into(),
                    });
                }
                networks.push(unmap_ipv4(network.trunc()));
            }
            Err(reason) => cx.error(InvalidIpRange { text: text.to_owned(), span: value.span.into(), reason }),
        }
    }
    Some(networks)
}

/// An address (as a single-address network) or a CIDR range, as Go's `net.ParseCIDR`/`ParseIP`
/// read them.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let trimmed = text.trim();
    if trimmed != text {
        return Err("remove the spaces around it".to_owned());
    }
    match text.split_once('/') {
        Some((address, prefix)) => {
            let address: IpAddr = address.parse().map_err(|_| format!("`{address}` is not an ip address"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max && !prefix.starts_with('+'))
                .ok_or_else(|| format!("`/{prefix}` is not a prefix length from 0 to {max}"))?;
            IpNet::new(address, prefix).map_err(|e| e.to_string())
        }
        None => {
            let address: IpAddr = text.parse().map_err(|_| "not an address or a range".to_owned())?;
            Ok(IpNet::from(address))
        }
    }
}

/// `::ffff:10.0.0.0/104` is the IPv4 range `10.0.0.0/8`: Pomerium matches plain IPv4 clients
/// against IPv4-mapped IPv6 ranges.
pub fn unmap_ipv4(network: IpNet) -> IpNet {
    match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map(IpNet::V4).unwrap_or(network),
            None => network,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_ranges() {
        assert_eq!(parse_network("192.168.1.1").unwrap().to_string(), "192.168.1.1/32");
        assert_eq!(parse_network("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_network("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert!(parse_network("not-an-ip-address").is_err());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("10.0.0.0/").is_err());
        assert!(parse_network(" 10.0.0.1").is_err());
    }

    #[test]
    fn ipv4_mapped_ranges_become_ipv4() {
        let mapped = parse_network("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(unmap_ipv4(mapped).to_string(), "10.0.0.0/8");
        let single = parse_network("::ffff:1.2.3.4").unwrap();
        assert_eq!(unmap_ipv4(single).to_string(), "1.2.3.4/32");
        let plain_v6 = parse_network("2001:db8::1").unwrap();
        assert_eq!(unmap_ipv4(plain_v6), plain_v6);
    }
}
