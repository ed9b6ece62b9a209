//! The managed-cluster protocol (zero.md, system.md §7): what a cluster replica (`pomerium` in
//! managed mode) and its control plane (`pomerium-console`, or Pomerium Zero) must agree on, one
//! place each.
//!
//! - [`api`]: the cluster API's JSON models (`/cluster/v1/...`) and the error body;
//! - [`status`]: what a status code means for the caller (exchange again, give up, back off);
//! - [`connect`]: the `pomerium.zero.Connect/Subscribe` gRPC service, client and server;
//! - [`keys`]: the signing key, cookie secret and file key derived from the cluster token;
//! - [`seal`]: the sealed `bootstrap.dat` cache file;
//! - [`bundle`]: a resource bundle's content (length-delimited databroker records);
//! - [`config_pb`]: protobuf `pomerium.config.Config`, the `config` record's data on the wire;
//! - [`usage`]: usage reports' pseudonyms;
//! - [`client`]: the cluster API's HTTP client (the only I/O here).

pub mod api;
pub mod bundle;
pub mod client;
pub mod config_pb;
pub mod connect;
pub mod keys;
pub mod seal;
pub mod status;
pub mod usage;
