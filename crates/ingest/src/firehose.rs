//! The firehose socket: subscribes to `com.atproto.sync.subscribeRepos`, resumes from a cursor,
//! reconnects with capped, jittered backoff, and hands raw frames on through a bounded channel.
//!
//! It decodes nothing but what it must to keep its place: the header (error frames, `#info`)
//! and the seq. Backpressure is the channel: when the pipeline is behind, `send` waits, the
//! socket stops being read, and TCP tells the server to slow down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use guildhall_proto::frame::{self, Frame, MAX_FRAME_BYTES};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

use crate::metrics::Metrics;

/// One raw frame from one source.
#[derive(Debug)]
pub struct RawFrame {
    /// Which subscription it came from (index into the configured URLs).
    pub source: usize,
    /// The frame's bytes, at most [`MAX_FRAME_BYTES`].
    pub bytes: Vec<u8>,
}

/// How the socket behaves.
#[derive(Debug, Clone)]
pub struct SubscribeConfig {
    /// First wait after a failed connection.
    pub backoff_min: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// How long a connection may stay silent before it is presumed dead.
    pub idle_timeout: Duration,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The `subscribeRepos` URL for a host or a full endpoint, with the cursor when there is one.
pub fn subscribe_url(base: &Url, cursor: Option<i64>) -> Url {
    let mut url = base.clone();
    if !url.path().ends_with("com.atproto.sync.subscribeRepos") {
        url.set_path("/xrpc/com.atproto.sync.subscribeRepos");
    }
    url.query_pairs_mut().clear();
    if let Some(c) = cursor {
        url.query_pairs_mut().append_pair("cursor", &c.to_string());
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// Runs one subscription until `shutdown` flips to true or the receiver is dropped.
/// `cursor` is where to resume: the last seq handed on (after a reconnect) or the stored
/// cursor (at start).
pub async fn subscribe(
    source: usize,
    base: Url,
    mut cursor: Option<i64>,
    config: SubscribeConfig,
    tx: mpsc::Sender<RawFrame>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let tls = match crate::net::websocket_tls() {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(%base, error = %e, "no TLS configuration; not subscribing");
            return;
        }
    };
    let mut failures: u32 = 0;
    // Reconnects in a row that came back to the same cursor without progress: a frame there
    // that we cannot read. After a few, skip past it rather than loop on it forever.
    let mut stuck: (Option<i64>, u32) = (None, 0);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let url = subscribe_url(&base, cursor);
        tracing::info!(%url, "connecting to firehose");
        let connected = tokio::select! {
            r = tokio_tungstenite::connect_async_tls_with_config(
                url.as_str(),
                Some(ws_config),
                true,
                Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
            ) => r,
            _ = shutdown.changed() => return,
        };
        match connected {
            Ok((mut ws, _)) => {
                metrics.connects.fetch_add(1, Ordering::Relaxed);
                // A connection that opened is not a failure, whatever ends it later.
                failures = 0;
                loop {
                    let next = tokio::select! {
                        m = tokio::time::timeout(config.idle_timeout, ws.next()) => m,
                        _ = shutdown.changed() => return,
                    };
                    let msg = match next {
                        Err(_) => {
                            tracing::warn!(%base, "firehose idle, reconnecting");
                            break;
                        }
                        Ok(None) => break,
                        Ok(Some(Err(e))) => {
                            tracing::warn!(%base, error = %e, "firehose read failed");
                            metrics.frame_error("socket");
                            break;
                        }
                        Ok(Some(Ok(m))) => m,
                    };
                    let bytes = match msg {
                        Message::Binary(b) => b.to_vec(),
                        Message::Close(_) => break,
                        // Pings are answered by tungstenite; text frames are not part of the protocol.
                        _ => continue,
                    };
                    match frame::route(&bytes) {
                        Ok(r) if r.kind == "error" || r.kind == "#info" => {
                            match frame::decode_frame(&bytes) {
                                Ok(Frame::Error(e)) => {
                                    metrics.server_message(known_message(&e.error));
                                    tracing::warn!(%base, error = %e.error, message = ?e.message, "firehose error frame");
                                    if e.error == "FutureCursor" {
                                        // Our cursor is ahead of the server (it was reset):
                                        // only live events exist there now.
                                        cursor = None;
                                    }
                                }
                                Ok(Frame::Info(i)) => {
                                    metrics.server_message(known_message(&i.name));
                                    tracing::warn!(%base, name = %i.name, message = ?i.message, "firehose info");
                                    // The pipeline acts on it (OutdatedCursor: recheck every
                                    // tracked repo), in order with the events around it.
                                    metrics.queued.fetch_add(1, Ordering::Relaxed);
                                    if tx.send(RawFrame { source, bytes }).await.is_err() {
                                        return;
                                    }
                                }
                                _ => metrics.frame_error("header"),
                            }
                            continue;
                        }
                        Ok(r) => {
                            if let Some(seq) = r.seq {
                                cursor = Some(seq);
                            }
                        }
                        Err(e) => match frame::peek_seq(&bytes) {
                            // Well-framed but unusable (say, a body of the wrong shape): count
                            // it and move past it; the pipeline never sees it.
                            Some(seq) => {
                                tracing::warn!(%base, seq, error = %e, "skipping unreadable frame");
                                metrics.frame_error("unreadable");
                                cursor = Some(seq);
                                continue;
                            }
                            // Not even framed: the spec says to drop the connection. Resuming
                            // from the last good seq skips nothing valid.
                            None => {
                                tracing::warn!(%base, error = %e, "undecodable frame, reconnecting");
                                metrics.frame_error("undecodable");
                                break;
                            }
                        },
                    }
                    metrics.queued.fetch_add(1, Ordering::Relaxed);
                    if tx.send(RawFrame { source, bytes }).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if is_tls_failure(&e) => {
                // Not a passing fault: say what to fix. It is retried all the same, since a
                // certificate can be renewed while we wait.
                metrics.frame_error("tls");
                tracing::error!(
                    %base,
                    error = %e,
                    "firehose TLS handshake failed: the server's certificate must chain to the \
                     web PKI, the system's roots, or SSL_CERT_FILE / SSL_CERT_DIR"
                );
            }
            Err(e) => {
                tracing::warn!(%base, error = %e, "firehose connection failed");
            }
        }
        if stuck.0 == cursor && cursor.is_some() {
            stuck.1 += 1;
            if stuck.1 >= 3
                && let Some(c) = cursor
            {
                tracing::error!(%base, cursor = c, "no progress past this cursor; skipping one event");
                metrics.frame_error("skipped");
                cursor = Some(c + 1);
                stuck = (cursor, 0);
            }
        } else {
            stuck = (cursor, 0);
        }
        failures = failures.saturating_add(1);
        let wait = backoff(&config, failures);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether a connection failed in the TLS handshake (rustls reports it through an I/O error).
fn is_tls_failure(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Tls(_) => true,
        Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// Server message names as metric labels: a fixed set, so a hostile server cannot grow it.
fn known_message(name: &str) -> &'static str {
    match name {
        "FutureCursor" => "FutureCursor",
        "ConsumerTooSlow" => "ConsumerTooSlow",
        "OutdatedCursor" => "OutdatedCursor",
        _ => "other",
    }
}

/// Exponential backoff with full jitter, capped.
fn backoff(config: &SubscribeConfig, failures: u32) -> Duration {
    let exp = config
        .backoff_min
        .saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let cap = exp.min(config.backoff_max);
    let jitter = rand::random_range(0.5..=1.0);
    cap.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keeps_host_and_sets_cursor() {
        let base = Url::parse("ws://127.0.0.1:2583").unwrap();
        assert_eq!(
            subscribe_url(&base, Some(42)).as_str(),
            "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos?cursor=42"
        );
        assert_eq!(
            subscribe_url(&base, None).as_str(),
            "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos"
        );
        let full = Url::parse("wss://relay.example/xrpc/com.atproto.sync.subscribeRepos?cursor=1")
            .unwrap();
        assert_eq!(
            subscribe_url(&full, Some(7)).as_str(),
            "wss://relay.example/xrpc/com.atproto.sync.subscribeRepos?cursor=7"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = SubscribeConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(1),
        };
        assert!(backoff(&c, 1) <= Duration::from_millis(100));
        assert!(backoff(&c, 1) >= Duration::from_millis(50));
        for n in 1..40 {
            assert!(backoff(&c, n) <= Duration::from_secs(2));
        }
        assert!(backoff(&c, 30) >= Duration::from_secs(1));
    }
}
