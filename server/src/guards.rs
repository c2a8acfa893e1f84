//! Answers for requests that would otherwise get none, or a misleading one: a body too large
//! for a server function (413, not 500), and a handler that panics (a generic 500, not a
//! dropped connection). The panic itself is logged once, by the hook `main` installs.

use std::panic::AssertUnwindSafe;

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_lite::{FutureExt, StreamExt};

use app::error::AppError;

/// Largest body a server function takes: forms are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// A body over the limit is still read (and dropped) up to this size, so that the client, still
/// sending, gets the 413 rather than a reset connection; past it the connection is closed.
const MAX_DRAINED_BYTES: u64 = 16 * 1024 * 1024;

fn is_api(request: &Request) -> bool {
    request.uri().path().starts_with("/api/")
}

/// An [`AppError`] as a server function answers it, with `status`.
fn app_error(status: StatusCode, error: &AppError) -> Response {
    let body = serde_json::to_vec(error).unwrap_or_else(|_| b"\"Internal\"".to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Reads a server function's body up to [`MAX_BODY_BYTES`], answering 413 past it (by the
/// declared length, before reading, or while reading a body of unknown length).
pub async fn limit_api_bodies(request: Request, next: Next) -> Response {
    if !is_api(&request) {
        return next.run(request).await;
    }
    let too_large = || {
        app_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &AppError::BadRequest(format!(
                "the request body is larger than {} MiB",
                MAX_BODY_BYTES / (1024 * 1024)
            )),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DRAINED_BYTES) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY_BYTES as u64) as usize);
    let mut read: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return app_error(
                StatusCode::BAD_REQUEST,
                &AppError::BadRequest("the request body could not be read".into()),
            );
        };
        read += chunk.len() as u64;
        if read > MAX_DRAINED_BYTES {
            return too_large();
        }
        if read <= MAX_BODY_BYTES as u64 {
            bytes.extend_from_slice(&chunk);
        }
    }
    if read > MAX_BODY_BYTES as u64 {
        return too_large();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Turns a panic in a handler into a 500 with the generic message: JSON for server functions,
/// a short page otherwise.
pub async fn catch_panics(request: Request, next: Next) -> Response {
    let api = is_api(&request);
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) if api => app_error(StatusCode::INTERNAL_SERVER_ERROR, &AppError::Internal),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>Error</title></head><body><h1>Error</h1><p>{}</p>\
                 <p><a href=\"/\">Home</a></p></body></html>",
                AppError::Internal
            ),
        )
            .into_response(),
    }
}

/// Logs a panic once, as an error event with where it happened (instead of the default
/// hook's line on standard error, which log collectors read as plain text).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic: {message}");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{middleware, routing::post, Router};
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/api/echo", post(|body: String| async move { body }))
            .route(
                "/api/boom",
                post(|| async {
                    if true {
                        panic!("on purpose");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("on purpose");
                    }
                    "unreachable"
                }),
            )
            .layer(middleware::from_fn(limit_api_bodies))
            .layer(middleware::from_fn(catch_panics))
    }

    async fn send(request: Request) -> (StatusCode, String) {
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn post_to(path: &str, body: Body) -> Request {
        Request::post(path).body(body).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_generic_500() {
        let (status, body) = send(post_to("/api/boom", Body::empty())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "\"Internal\"");
        let (status, body) = send(Request::get("/boom").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("Something went wrong on our side"), "{body}");
        assert!(!body.contains("on purpose"), "the panic stays in the log");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let (status, body) = send(post_to("/api/echo", Body::from(big.clone()))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("larger than 2 MiB"), "{body}");
        // No length given: the body arrives in chunks.
        let chunks = futures_lite::stream::iter(
            big.into_bytes()
                .chunks(64 * 1024)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        let (status, _) = send(post_to("/api/echo", Body::from_stream(chunks))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // At the limit, the handler gets the whole body.
        let (status, body) =
            send(post_to("/api/echo", Body::from("y".repeat(MAX_BODY_BYTES)))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), MAX_BODY_BYTES);
    }
}
