//! What can go wrong in the controller: bad flags, the environment (kubeconfig, listeners), and
//! the calls it makes (databroker, API server). Translation problems are not errors here: they
//! are outcomes of one Ingress, reported on it as a `Warning UpdateError` event.

use crate::ObjectKey;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControllerError {
    #[error("invalid `--{flag}`: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error("reading `{}` (`--{flag}`): {source}", path.display())]
    ReadFile {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no kubernetes client configuration (in-cluster or KUBECONFIG): {0}")]
    KubeConfig(#[source] Box<kube::Error>),
    #[error("databroker `{url}`: {reason}")]
    DatabrokerUrl { url: String, reason: String },
    #[error("reading the `{id}` config record from the databroker: {message}")]
    GetRecord { id: &'static str, message: String },
    #[error("writing the `{id}` config record to the databroker: {message}")]
    PutRecord { id: &'static str, message: String },
    #[error("binding the {what} address `{addr}`: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("posting a `{reason}` event on ingress `{ingress}`: {source}")]
    Event {
        ingress: ObjectKey,
        reason: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("updating the status of ingress `{ingress}`: {source}")]
    Status {
        ingress: ObjectKey,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("watching {what}: the watch ended")]
    WatchEnded { what: String },
}
