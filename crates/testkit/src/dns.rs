//! A tiny DNS server on loopback answering TXT questions from a fixed table: enough to test
//! handles published as `_atproto.<handle>` TXT records without touching real DNS.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running fake DNS server; dropping it stops it.
pub struct TxtServer {
    /// Where it listens (UDP, 127.0.0.1).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TxtServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TxtServer {
    /// Serves `records` (lower-case name without the final dot → TXT text).
    pub async fn start(records: BTreeMap<String, String>) -> std::io::Result<TxtServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let task = tokio::spawn(serve(socket, records));
        Ok(TxtServer { addr, task })
    }
}

/// Answers TXT questions from `records` (lower-case name without the final dot → text);
/// anything else gets NXDOMAIN.
async fn serve(socket: UdpSocket, records: BTreeMap<String, String>) {
    let mut buf = [0u8; 1500];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        if let Some(reply) = answer(&buf[..n], &records) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

fn answer(query: &[u8], records: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    // Header (12 bytes), then one question: labels, type, class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = query.get(pos..pos + 2)?;
    let question = query.get(12..pos + 4)?;
    let text = records.get(&labels.join(".")).filter(|_| qtype == [0, 16]);
    let mut out = Vec::new();
    out.extend_from_slice(query.get(0..2)?); // id
    out.extend_from_slice(if text.is_some() {
        &[0x81, 0x80]
    } else {
        &[0x81, 0x83]
    });
    out.extend_from_slice(&[0, 1, 0, u8::from(text.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let Some(text) = text {
        let bytes = text.as_bytes();
        let len = u8::try_from(bytes.len()).ok()?;
        // Name: pointer to the question; TXT, IN, TTL 60, one character-string.
        out.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, len + 1, len]);
        out.extend_from_slice(bytes);
    }
    Some(out)
}
