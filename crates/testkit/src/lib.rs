//! Guildhall test support (dev-only): runs Bluesky's reference PDS and PLC
//! from `tests/peer` on loopback and gives tests a small XRPC client.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use guildhall_testkit::{Peer, PeerOptions};
//! let peer = Peer::start(PeerOptions { accounts: 3, ..Default::default() }).await?;
//! let alice = &peer.accounts()[0];
//! let rec = serde_json::json!({"$type": "dev.guildhall.operator", "displayName": "A", "createdAt": "2026-01-01T00:00:00Z"});
//! peer.xrpc()
//!     .put_record(&alice.pds_url, &alice.access_jwt, &alice.did, "dev.guildhall.operator", "self", &rec)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The harness must be installed first with `tests/peer/install.sh` (npm,
//! about two minutes once); [`Peer::start`] fails with that hint otherwise.

pub mod db;
pub mod dns;
mod frames;
mod peer;
pub mod plc;
pub mod tls;
mod xrpc;

pub use frames::{parse_frames, read_frames};
pub use peer::{Account, PdsInfo, Peer, PeerInfo, PeerOptions, peer_dir};
pub use xrpc::{
    ApplyWritesResult, RecordEntry, Session, Write, WriteResult, XrpcClient, XrpcError,
};
