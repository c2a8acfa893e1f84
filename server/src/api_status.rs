//! Server functions answer every error with HTTP 500; this gives each [`AppError`] its own status
//! (401, 403, 404, 422, ...) so that API clients and logs can tell them apart.

use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::Response,
};
use leptos::server_fn::error::SERVER_FN_ERROR_HEADER;

use app::error::AppError;

/// Error bodies are small JSON values; anything larger is left as it is.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn map_error_status(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        if let Ok(status) = StatusCode::from_u16(error.status()) {
            parts.status = status;
        }
        if let AppError::TooManyAttempts { retry_after_secs } = error {
            parts
                .headers
                .insert(axum::http::header::RETRY_AFTER, retry_after_secs.into());
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}
