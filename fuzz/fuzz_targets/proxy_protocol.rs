//! The PROXY protocol header (`use_proxy_protocol`), versions 1 and 2: the first bytes of every
//! connection, from anyone who can reach the listener. `parse_v1` and `parse_v2` must refuse
//! anything malformed without panicking, and `read_header` on a real loopback connection must
//! consume exactly the header, never a byte of what follows (the TLS handshake).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use proxy::server::proxy_protocol;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

struct Loopback {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
}

fn loopback() -> &'static Loopback {
    static LOOPBACK: OnceLock<Loopback> = OnceLock::new();
    LOOPBACK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        Loopback { runtime, listener }
    })
}

/// Where the header ends, read independently of the code under test (None: not a header).
fn header_len(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"PROXY ") {
        return data.windows(2).position(|w| w == b"\r\n").map(|at| at + 2).filter(|&end| end <= 107);
    }
    if data.starts_with(V2_SIGNATURE) && data.len() >= 16 {
        let length = usize::from(u16::from_be_bytes([data[14], data[15]]));
        return Some(16 + length).filter(|&end| end <= data.len());
    }
    None
}

fuzz_target!(|data: &[u8]| {
    // The pure parsers, on every split of the input.
    let _ = proxy_protocol::parse_v1(data);
    if let [version_command, family, payload @ ..] = data {
        let _ = proxy_protocol::parse_v2(*version_command, *family, payload);
    }
    if data.len() > 16 * 1024 {
        return;
    }
    // The reader on a real connection: the client writes the bytes (in two pieces, so that the
    // byte-at-a-time path runs too) and closes its side.
    let Loopback { runtime, listener } = loopback();
    let split = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    runtime.block_on(async {
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (mut client, (mut server, _)) = (client.unwrap(), accepted.unwrap());
        let bytes = data.to_vec();
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&bytes[..split]).await;
            tokio::time::sleep(Duration::from_micros(50)).await;
            let _ = client.write_all(&bytes[split..]).await;
            let _ = client.shutdown().await;
            client
        });
        let read = tokio::time::timeout(Duration::from_secs(5), proxy_protocol::read_header(&mut server))
            .await
            .expect("read_header returns once the peer has closed");
        let _client = writer.await.unwrap();
        if let Ok(header) = read {
            let end = header_len(data).unwrap_or_else(|| panic!("accepted a non-header: {header:?} from {data:?}"));
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut rest)).await.unwrap().unwrap();
            assert_eq!(rest, data[end..], "the header's bytes, and only they, are consumed ({header:?})");
        }
    });
});
