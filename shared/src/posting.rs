//! Reading a post, the two ways a page sends one: as a form
//! (`<form method="post">`, steps 01 on) and as JSON (the page's script,
//! steps 02 on). Both refuse the same things the same way (another site's
//! page, a body too large, too slow or broken, a client posting too fast),
//! each in its own voice: an error page for the form, `{"error": ...}` for
//! the script. A refused post stores nothing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Limited;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;

use crate::flood;
use crate::form::Fields;
use crate::http;
use crate::http::Response;
use crate::news;
use crate::news::NewPost;
use crate::news::PostRequest;
use crate::page;
use crate::page::Layout;

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit: answer 413 Payload Too Large.
    TooLarge,
    /// The client hung up or sent a broken body: answer 400 (if anyone is
    /// still listening).
    Broken,
    /// The body did not arrive within [`BODY_TIMEOUT`]: answer 408 and
    /// close the connection.
    TooSlow,
}

/// How long a client may take to send a request's body, once its headers
/// are in. The largest post is a few dozen KiB, which any client sends in
/// well under a second; one that announces `Content-Length: 100` and sends
/// 10 bytes, or trickles a byte a second, would otherwise hold its
/// connection (and one of the process's file descriptors) forever, and a
/// thousand of them would lock everyone else out.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a whole request body, refusing it as soon as it grows past `limit`
/// bytes. A `Content-Length` over the limit is refused before reading a
/// byte.
pub async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let reading = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout(BODY_TIMEOUT, reading).await {
        Err(_) => Err(BodyError::TooSlow),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge)
        }
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

/// `408 Request Timeout` for a body that took too long, with `Connection:
/// close`: what is left of that body will not be read, so the connection
/// cannot carry another request.
pub fn too_slow(response: Response) -> Response {
    http::with_header(response, header::CONNECTION, "close")
}

/// What a client whose body took too long reads.
pub const TOO_SLOW: &str =
    "The post took more than 10 seconds to arrive; nothing was stored. Try again.";

/// Reads a post that the page's `<form method="post">` sent: its fields,
/// or the error page that refuses it (a refused post stores nothing).
/// `403` when it came from another site's page: a form elsewhere could
/// post here in the visitor's name (cross-site request forgery), and its
/// `Origin` header gives it away. `408` for a body that takes more than
/// [`BODY_TIMEOUT`] to arrive, `415` when it is not a form, `429` when
/// its client posts too fast (see [`flood`]), `413` over
/// `limit` bytes, `400` for a body that broke off or is not UTF-8 text.
pub async fn read_form(
    layout: &Layout,
    request: Request<Incoming>,
    limit: usize,
) -> Result<Fields, Response> {
    let refuse = |status, message: &str| page::error(layout.clone(), status, message);
    if !http::same_origin(request.headers()) {
        let message = http::foreign_origin_message(request.headers(), "This form");
        return Err(refuse(StatusCode::FORBIDDEN, &message));
    }
    if !http::has_content_type(request.headers(), FORM) {
        let message = "Send the post as a form (application/x-www-form-urlencoded).";
        return Err(refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    // Taken before the body is read: `read_body` consumes the request.
    let poster = flood::Poster::of(request.extensions());
    let body = match read_body(request, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let message = format!(
                "That post is larger than {} KiB; nothing was stored.",
                limit / 1024
            );
            return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, &message));
        }
        Err(BodyError::Broken) => {
            let message = "The post did not arrive whole; nothing was stored.";
            return Err(refuse(StatusCode::BAD_REQUEST, message));
        }
        Err(BodyError::TooSlow) => {
            let page = refuse(StatusCode::REQUEST_TIMEOUT, TOO_SLOW);
            return Err(too_slow(page));
        }
    };
    // Only a post that arrived whole counts against its client.
    if let Err(refusal) = poster.admit() {
        let page = refuse(StatusCode::TOO_MANY_REQUESTS, &refusal.message);
        return Err(too_many_posts(page, &refusal));
    }
    Fields::parse(&body).map_err(|_| {
        let message = "The form data is not valid UTF-8 text; nothing was stored.";
        refuse(StatusCode::BAD_REQUEST, message)
    })
}

/// What a browser sends when it submits a `<form method="post">`.
const FORM: &str = "application/x-www-form-urlencoded";

/// Reads a post that a page's script sent as JSON
/// (`{"title":"...","body":"..."}`) and validates it: the post to store,
/// or the answer that refuses it. `403` when it came from another site's
/// page, `429` when its client posts too fast, `413` over `limit` bytes,
/// `408` for a body that takes more than [`BODY_TIMEOUT`] to arrive, `400` for a body that broke off or is
/// not that JSON, `422` with `{"errors":{"title":"..."}}` for a post that
/// breaks the rules. A refused post stores nothing.
pub async fn read_json(request: Request<Incoming>, limit: usize) -> Result<NewPost, Response> {
    if !http::same_origin(request.headers()) {
        let message = http::foreign_origin_message(request.headers(), "This request");
        return Err(http::json_error(StatusCode::FORBIDDEN, &message));
    }
    // Taken before the body is read: `read_body` consumes the request.
    let poster = flood::Poster::of(request.extensions());
    let body = match read_body(request, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let message = format!(
                "That post is larger than {} KiB; nothing was stored.",
                limit / 1024
            );
            return Err(http::json_error(StatusCode::PAYLOAD_TOO_LARGE, &message));
        }
        Err(BodyError::Broken) => {
            let message = "The post did not arrive whole; nothing was stored.";
            return Err(http::json_error(StatusCode::BAD_REQUEST, message));
        }
        Err(BodyError::TooSlow) => {
            return Err(too_slow(http::json_error(
                StatusCode::REQUEST_TIMEOUT,
                TOO_SLOW,
            )));
        }
    };
    // Only a post that arrived whole counts against its client.
    if let Err(refusal) = poster.admit() {
        return Err(too_many_posts(
            http::json_error(StatusCode::TOO_MANY_REQUESTS, &refusal.message),
            &refusal,
        ));
    }
    let post: PostRequest = match serde_json::from_slice(&body) {
        Ok(post) => post,
        Err(error) => {
            let message = format!(
                "The body is not the JSON this server expects ({error}); nothing was stored."
            );
            return Err(http::json_error(StatusCode::BAD_REQUEST, &message));
        }
    };
    news::validate(&post.title, &post.body).map_err(|errors| {
        http::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "errors": errors }),
        )
    })
}

/// Adds `Retry-After` to a `429 Too Many Requests`: when the client may
/// post again.
pub fn too_many_posts(response: Response, refusal: &flood::Refusal) -> Response {
    http::with_header(
        response,
        header::RETRY_AFTER,
        &refusal.retry_after.to_string(),
    )
}
