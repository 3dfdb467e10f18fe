//! The restapi's one route, `POST /service/<service>`, and its answers.
//!
//! Checked in this order, each refusal with a plain-text reason:
//! - a path other than `/service/<service>` (the query string is not part of it): `404`;
//! - a method other than `POST`: `405` with `Allow: POST`;
//! - neither `Content-Length` nor a chunked body: `411`; a declared length over the
//!   limit: `413`;
//! - a service no running instance serves: `404`.
//!
//! These are decided on the head alone, so a client that sent `Expect: 100-continue`
//! never has to send its body for them. Then the body is read (`413` over the limit,
//! `408` when `request_timeout` passes), decoded ([`crate::body`], `400` naming the
//! field) and sent on as one event: `200 OK`, or `503` when the service is closing.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{Method, Request, StatusCode};
use plugin_sdk::SendError;
use tokio::time::Instant;

use crate::answer::{closing, read_body, text, Answer, Handler};
use crate::registry::Registry;

/// The largest request body accepted: 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// The route's prefix.
const PREFIX: &str = "/service/";

/// The restapi's handler: requests to the registered services.
pub struct Api {
    /// The services reachable now.
    pub registry: Registry,
}

impl Handler for Api {
    async fn answer(self: Arc<Self>, request: Request<Incoming>, deadline: Instant) -> Answer {
        let answer = self.route(request, deadline).await;
        if answer.status() != StatusCode::OK {
            tracing::debug!(status = answer.status().as_u16(), "request refused");
        }
        answer
    }
}

impl Api {
    async fn route(&self, request: Request<Incoming>, deadline: Instant) -> Answer {
        let path = request.uri().path();
        let Some(service) = path.strip_prefix(PREFIX) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("no such path '{path}': POST /service/<service>"),
            );
        };
        if request.method() != Method::POST {
            let mut answer = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} not allowed: POST /service/<service>", request.method()),
            );
            answer
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return answer;
        }
        if let Some(refusal) = length_refusal(&request) {
            return refusal;
        }
        let Some(entry) = self.registry.get(service) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("unknown service '{service}'"),
            );
        };
        let service = service.to_owned();
        let body = match read_body(request.into_body(), MAX_BODY, deadline).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let event = match crate::body::parse(&body) {
            Ok(event) => event,
            Err(reason) => return text(StatusCode::BAD_REQUEST, reason),
        };
        match entry.sender.send(event) {
            Ok(()) => text(StatusCode::OK, "OK"),
            // Checked already; the SDK's own check says the same.
            Err(SendError::BadNode(e)) => text(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("service '{service}' is closing: {e}"),
            ),
        }
    }
}

/// `411` for a body of unknown length, `413` for one declared over the limit.
fn length_refusal(request: &Request<Incoming>) -> Option<Answer> {
    let headers = request.headers();
    // hyper has refused a request whose Transfer-Encoding does not end in `chunked`,
    // and one with a malformed Content-Length.
    if headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    let Some(length) = headers.get(CONTENT_LENGTH) else {
        return Some(text(
            StatusCode::LENGTH_REQUIRED,
            "a body needs a Content-Length or Transfer-Encoding: chunked",
        ));
    };
    let length: u64 = length
        .to_str()
        .ok()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX);
    if length > MAX_BODY as u64 {
        return Some(closing(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body of {length} bytes is over the limit of {MAX_BODY} bytes"),
        )));
    }
    None
}
