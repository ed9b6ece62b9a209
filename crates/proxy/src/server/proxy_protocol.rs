//! The PROXY protocol (HAProxy's, versions 1 and 2) on an accepted connection, before TLS
//! (`use_proxy_protocol`): an L4 load balancer in front says who the client is, and that address
//! is the peer from then on (`X-Forwarded-For`, `source_ip`, the access log).
//!
//! Every byte is hostile: the header is read with a bounded size, nothing past it is consumed
//! (what follows is the TLS handshake), and anything malformed closes the connection. A `LOCAL`
//! (v2) or `UNKNOWN` (v1) header, which a balancer sends for its own health checks, keeps the
//! connection's own addresses.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (the protocol's own bound).
const V1_MAX: usize = 107;
/// The most address and TLV bytes accepted after a version 2 header (the protocol allows 64 KiB;
/// balancers send a few hundred).
const V2_MAX_PAYLOAD: usize = 4096;

/// What the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's address as the balancer saw it.
    Proxied { source: SocketAddr, destination: SocketAddr },
    /// The balancer's own connection (`LOCAL`, `UNKNOWN`, or an address family other than
    /// TCP over IPv4 or IPv6): keep the connection's addresses.
    Local,
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("the connection does not begin with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header at the start of `stream`, consuming exactly its bytes (the caller bounds
/// the time it may take).
pub async fn read_header(stream: &mut TcpStream) -> Result<Header, ProxyProtocolError> {
    let mut first = [0u8; 6];
    read_exactly(stream, &mut first).await?;
    if &first == b"PROXY " {
        return read_v1(stream).await;
    }
    let mut rest = [0u8; 10];
    if V2_SIGNATURE.get(..6) != Some(&first[..]) {
        return Err(ProxyProtocolError::Missing);
    }
    read_exactly(stream, &mut rest).await?;
    let [s6, s7, s8, s9, s10, s11, version_command, family, high, low] = rest;
    if V2_SIGNATURE.get(6..) != Some(&[s6, s7, s8, s9, s10, s11][..]) {
        return Err(ProxyProtocolError::Missing);
    }
    let length = usize::from(u16::from_be_bytes([high, low]));
    if length > V2_MAX_PAYLOAD {
        return Err(ProxyProtocolError::Malformed("too long"));
    }
    let mut payload = vec![0u8; length];
    read_exactly(stream, &mut payload).await?;
    parse_v2(version_command, family, &payload)
}

async fn read_exactly(stream: &mut TcpStream, buffer: &mut [u8]) -> Result<(), ProxyProtocolError> {
    match stream.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            Err(ProxyProtocolError::Malformed("the connection closed inside the header"))
        }
        Err(error) => Err(error.into()),
    }
}

/// The rest of a version 1 line after `PROXY `. A balancer sends the line in one piece, so one
/// peek finds its end and exactly the line is consumed; a line arriving in pieces is read a
/// byte at a time (never past its CRLF: what follows is the TLS handshake).
async fn read_v1(stream: &mut TcpStream) -> Result<Header, ProxyProtocolError> {
    let mut line = b"PROXY ".to_vec();
    let mut peeked = [0u8; V1_MAX - 6];
    let seen = stream.peek(&mut peeked).await?;
    let found = peeked.get(..seen).and_then(|bytes| bytes.windows(2).position(|w| w == b"\r\n"));
    if let Some(at) = found {
        let mut rest = vec![0u8; at + 2];
        read_exactly(stream, &mut rest).await?;
        line.extend_from_slice(&rest);
    } else {
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if line.len() == V1_MAX {
                return Err(ProxyProtocolError::Malformed("no CRLF within 107 bytes"));
            }
            read_exactly(stream, &mut byte).await?;
            line.extend_from_slice(&byte);
        }
    }
    parse_v1(&line)
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n` (or `TCP6`, or `UNKNOWN …`).
pub fn parse_v1(line: &[u8]) -> Result<Header, ProxyProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyProtocolError::Malformed("not ASCII"))?;
    let text = text.strip_suffix("\r\n").ok_or(ProxyProtocolError::Malformed("no CRLF"))?;
    let mut fields = text.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyProtocolError::Malformed("no PROXY"));
    }
    let family = fields.next().ok_or(ProxyProtocolError::Malformed("no protocol"))?;
    if family == "UNKNOWN" {
        return Ok(Header::Local);
    }
    let fields: Vec<&str> = fields.collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(ProxyProtocolError::Malformed("expected four fields after the protocol"));
    };
    let address = |text: &str| -> Result<IpAddr, ProxyProtocolError> {
        let ip: IpAddr = text.parse().map_err(|_| ProxyProtocolError::Malformed("an address does not parse"))?;
        match (family, ip) {
            ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
            ("TCP4" | "TCP6", _) => Err(ProxyProtocolError::Malformed("an address is not of the protocol's family")),
            _ => Err(ProxyProtocolError::Malformed("unknown protocol")),
        }
    };
    let port = |text: &str| -> Result<u16, ProxyProtocolError> {
        // The protocol forbids leading zeros and signs; `u16::from_str` would take `+1` and `01`.
        let canonical =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
        canonical.then(|| text.parse().ok()).flatten().ok_or(ProxyProtocolError::Malformed("a port does not parse"))
    };
    Ok(Header::Proxied {
        source: SocketAddr::new(address(source)?, port(source_port)?),
        destination: SocketAddr::new(address(destination)?, port(destination_port)?),
    })
}

/// The version 2 header after its signature: the version and command byte, the family byte and
/// the payload (addresses, then TLVs, which are skipped).
pub fn parse_v2(version_command: u8, family: u8, payload: &[u8]) -> Result<Header, ProxyProtocolError> {
    if version_command >> 4 != 2 {
        return Err(ProxyProtocolError::Malformed("not version 2"));
    }
    match version_command & 0x0f {
        0 => return Ok(Header::Local),
        1 => {}
        _ => return Err(ProxyProtocolError::Malformed("unknown command")),
    }
    let short = || ProxyProtocolError::Malformed("short addresses");
    match family {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 => {
            let addresses: [u8; 12] = payload.get(..12).and_then(|b| b.try_into().ok()).ok_or_else(short)?;
            let [a, b, c, d, e, f, g, h, sp1, sp2, dp1, dp2] = addresses;
            Ok(Header::Proxied {
                source: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), u16::from_be_bytes([sp1, sp2])),
                destination: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(e, f, g, h)), u16::from_be_bytes([dp1, dp2])),
            })
        }
        // TCP over IPv6.
        0x21 => {
            let part = |range: std::ops::Range<usize>| payload.get(range).ok_or_else(short);
            let ip = |at: usize| -> Result<IpAddr, ProxyProtocolError> {
                let bytes: [u8; 16] = part(at..at + 16)?.try_into().map_err(|_| short())?;
                Ok(IpAddr::V6(Ipv6Addr::from(bytes)))
            };
            let port = |at: usize| -> Result<u16, ProxyProtocolError> {
                let bytes: [u8; 2] = part(at..at + 2)?.try_into().map_err(|_| short())?;
                Ok(u16::from_be_bytes(bytes))
            };
            Ok(Header::Proxied {
                source: SocketAddr::new(ip(0)?, port(32)?),
                destination: SocketAddr::new(ip(16)?, port(34)?),
            })
        }
        // UNSPEC, UDP, UNIX sockets: nothing this listener can use as a client address.
        0x00 | 0x12 | 0x22 | 0x31 | 0x32 => Ok(Header::Local),
        _ => Err(ProxyProtocolError::Malformed("unknown address family")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn version_1_lines() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n").unwrap(),
            Header::Proxied { source: addr("192.0.2.1:56324"), destination: addr("198.51.100.1:443") }
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n").unwrap(),
            Header::Proxied { source: addr("[2001:db8::1]:1"), destination: addr("[2001:db8::2]:65535") }
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap(), Header::Local);
        assert_eq!(parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap(), Header::Local);
        for bad in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\n"[..],
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 +1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 01 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n",
            b"PROXY\r\n",
            b"proxy TCP4 192.0.2.1 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 \xff 198.51.100.1 1 2\r\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn version_2_headers() {
        let v4 = [192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb];
        assert_eq!(
            parse_v2(0x21, 0x11, &v4).unwrap(),
            Header::Proxied { source: addr("192.0.2.1:56324"), destination: addr("198.51.100.1:443") }
        );
        let mut with_tlv = v4.to_vec();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        assert!(matches!(parse_v2(0x21, 0x11, &with_tlv).unwrap(), Header::Proxied { .. }));
        let mut v6 = vec![0u8; 36];
        v6[15] = 1;
        v6[31] = 2;
        v6[32..34].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(
            parse_v2(0x21, 0x21, &v6).unwrap(),
            Header::Proxied { source: addr("[::1]:1234"), destination: addr("[::2]:0") }
        );
        assert_eq!(parse_v2(0x20, 0x11, &[]).unwrap(), Header::Local, "LOCAL keeps the connection's address");
        assert_eq!(parse_v2(0x21, 0x31, &[0; 216]).unwrap(), Header::Local);
        assert!(parse_v2(0x21, 0x11, &v4[..11]).is_err(), "short");
        assert!(parse_v2(0x21, 0x21, &v4).is_err(), "short for IPv6");
        assert!(parse_v2(0x11, 0x11, &v4).is_err(), "version 1 in a version 2 header");
        assert!(parse_v2(0x22, 0x11, &v4).is_err(), "unknown command");
        assert!(parse_v2(0x21, 0x41, &v4).is_err(), "unknown family");
    }

    proptest::proptest! {
        /// Any bytes: an answer, never a panic.
        #[test]
        fn any_header_bytes_are_answered(line in proptest::collection::vec(proptest::num::u8::ANY, 0..120), a: u8, b: u8) {
            let _ = parse_v1(&line);
            let _ = parse_v2(a, b, &line);
        }
    }
}
