//! What a request handler is to the server, and the pieces every handler uses: plain
//! text answers and a body read within its limit and deadline.

use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::time::Instant;

/// The answer type of every handler.
pub type Answer = Response<Full<Bytes>>;

/// Answers requests; one per server, shared by its connections.
pub trait Handler: Send + Sync + 'static {
    /// The answer to `request`, whose head and body must be complete by `deadline`
    /// (read the body with [`read_body`]).
    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        deadline: Instant,
    ) -> impl Future<Output = Answer> + Send + 'static;
}

/// A `text/plain` answer.
pub fn text(status: StatusCode, body: impl Into<String>) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.into())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// `answer` with `Connection: close`: for a request whose body was not read to its
/// end, after which the connection cannot carry another request.
pub fn closing(mut answer: Answer) -> Answer {
    answer
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// Reads a request body of at most `limit` bytes by `deadline`; `Err` is the answer
/// (`413`, `408`, or `400` for a body the client broke off).
pub async fn read_body(body: Incoming, limit: usize, deadline: Instant) -> Result<Bytes, Answer> {
    match tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(closing(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over the limit of {limit} bytes"),
        ))),
        Ok(Err(e)) => Err(closing(text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        ))),
        Err(_) => Err(closing(text(
            StatusCode::REQUEST_TIMEOUT,
            "request not complete within request_timeout",
        ))),
    }
}
