//! [`EtcdError`]: why a request to etcd failed, sorted by what the caller does next.
//!
//! gRPC reports every failure as a status code and a message. A connection that broke
//! or could not carry the call (`UNAVAILABLE`, `UNKNOWN`, `CANCELLED`,
//! `DEADLINE_EXCEEDED`) is [`EtcdError::Io`]: try again, on a new connection. Any other
//! code is etcd's answer ([`EtcdError::Refused`]): a compacted revision (`OUT_OF_RANGE`),
//! a lease not found (`NOT_FOUND`), a bad token or password, a request too large. etcd
//! keeps its messages stable (`etcdserver: mvcc: required revision has been
//! compacted`), so the predicates below read them.

use std::io;

use thiserror::Error;
use tonic::{Code, Status};

/// Why a request to etcd failed.
#[derive(Debug, Error)]
pub enum EtcdError {
    /// No endpoint accepted a connection.
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Unreachable {
        /// Every endpoint tried.
        endpoints: String,
        /// The last endpoint's failure.
        source: io::Error,
    },
    /// The connection failed during the request.
    #[error("etcd at {endpoint}: {path}: {source}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The gRPC method of the request.
        path: &'static str,
        /// What failed.
        source: io::Error,
    },
    /// etcd refused the request.
    #[error("etcd at {endpoint}: {path} refused: {message} (grpc code {code})")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The gRPC method of the request.
        path: &'static str,
        /// The gRPC status code (11: out of range, 5: not found, 16: unauthenticated).
        code: i64,
        /// etcd's message.
        message: String,
    },
    /// The answer was not what the v3 API promises.
    #[error("etcd at {endpoint}: {path}: unexpected answer: {reason}")]
    BadAnswer {
        /// The endpoint.
        endpoint: String,
        /// The gRPC method of the request.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl EtcdError {
    /// Whether the revision asked for was compacted away.
    pub fn is_compacted(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("compacted"))
    }

    /// Whether a lease named in the request no longer exists.
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("lease not found"))
    }

    /// Whether the auth token was refused (expired, or etcd restarted): sign in again.
    pub(crate) fn is_bad_token(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("auth token"))
    }

    /// Sorts a failed call's status.
    pub(crate) fn from_status(endpoint: &str, path: &'static str, status: Status) -> EtcdError {
        let endpoint = endpoint.to_owned();
        match status.code() {
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
                EtcdError::Io {
                    endpoint,
                    path,
                    source: io::Error::other(chain(&status)),
                }
            }
            code => EtcdError::Refused {
                endpoint,
                path,
                code: code as i64,
                message: status.message().to_owned(),
            },
        }
    }
}

/// A status's message followed by its causes (`transport error: connection refused`).
fn chain(status: &Status) -> String {
    let mut text = status.message().to_owned();
    if text.is_empty() {
        text = format!("{:?}", status.code());
    }
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_or_refusal() {
        let compacted =
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        let e = EtcdError::from_status("http://e:1", "/p", compacted);
        assert!(e.is_compacted() && !e.is_lease_not_found(), "{e}");
        let e = EtcdError::from_status("http://e:1", "/p", Status::unavailable("reset"));
        assert!(matches!(e, EtcdError::Io { .. }), "{e}");
        let token = Status::unauthenticated("etcdserver: invalid auth token");
        assert!(EtcdError::from_status("http://e:1", "/p", token).is_bad_token());
    }
}
