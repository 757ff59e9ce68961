//! The bridge's HTTP face: the routes, the gate every request passes first (`guard`, then the
//! connection's rate), `GET /v1/status`, `POST /v1/call/{method}`, and the socket API's error
//! codes as HTTP statuses.

use super::admission::{over_rate, take_token, CallAdmission};
use super::guard::{self, Verdict};
use super::limits::{BODY_READ_TIMEOUT, MAX_BODY_BYTES};
use super::{socket, Bridge, Client};
use crate::ipc::{self, Refusal};
use agent_ipc::{ErrorCode, ErrorObject};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::sync::Arc;

/// The bridge's routes behind its gate.
pub(super) fn router(bridge: Arc<Bridge>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/call/{method}", post(call))
        .route("/v1/socket", get(socket::upgrade))
        .fallback(no_endpoint)
        .layer(middleware::from_fn_with_state(bridge.clone(), gate))
        .with_state(bridge)
}

/// The checks before anything else: a refused request gets its 403 and nothing more; a
/// preflight its grant; anything else is metered, served, and answered with the CORS headers
/// for its origin.
async fn gate(State(bridge): State<Arc<Bridge>>, request: Request, next: Next) -> Response {
    let verdict = guard::check(
        request.method(),
        request.headers(),
        bridge.port,
        &bridge.allowed_origins,
    );
    match verdict {
        Verdict::Refuse(refusal) => {
            tracing::debug!(reason = refusal.text(), "bridge request refused");
            (
                StatusCode::FORBIDDEN,
                [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                refusal.text(),
            )
                .into_response()
        }
        Verdict::Preflight(headers) => (StatusCode::NO_CONTENT, headers).into_response(),
        Verdict::Serve { origin } => {
            let metered = request
                .extensions()
                .get::<Client>()
                .map(|client| take_token(&client.bucket));
            let mut response = match metered {
                Some(Err(retry_after)) => too_many_requests(retry_after),
                Some(Ok(())) | None => next.run(request).await,
            };
            response.headers_mut().extend(guard::cors_headers(&origin));
            response
        }
    }
}

/// `GET /v1/status`: the socket API's `status` result.
async fn status(State(bridge): State<Arc<Bridge>>) -> Response {
    match ipc::answer(&bridge.link, agent_ipc::Call::Status).await {
        Ok(status) => json(StatusCode::OK, &status),
        Err(error) => error_response(error),
    }
}

/// `POST /v1/call/{method}`: the body is the method's params (empty, `{}` or `null` for none).
async fn call(
    State(bridge): State<Arc<Bridge>>,
    Path(method): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body).await {
        Ok(body) => body,
        Err(error) => return error_response(error),
    };
    let mut request = serde_json::json!({ "id": 0, "method": method });
    if !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<Value>(&body) {
            Ok(params) => request["params"] = params,
            Err(e) => {
                return error_response(ErrorObject::new(
                    ErrorCode::BadRequest,
                    format!("the body is not valid JSON: {e}"),
                ))
            }
        }
    }
    let call = match ipc::parse_value(request, true, &mut CallAdmission) {
        Ok((_, call)) => call,
        Err(Refusal { error, .. }) => return error_response(error),
    };
    match ipc::answer(&bridge.link, call).await {
        Ok(result) => json(StatusCode::OK, &serde_json::json!({ "result": result })),
        Err(error) => error_response(error),
    }
}

/// The body, at most [`MAX_BODY_BYTES`], arriving within [`BODY_READ_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ErrorObject> {
    let too_large = || {
        ErrorObject::new(
            ErrorCode::MessageTooLarge,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(body)) => Ok(body),
        // Past the cap, or the client went away mid-body (then nobody reads the answer).
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ErrorObject::new(
            ErrorCode::BadRequest,
            format!(
                "the body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Any other path.
async fn no_endpoint() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "no such endpoint: the bridge serves GET /v1/status, POST /v1/call/{method} and \
         GET /v1/socket",
    )
        .into_response()
}

/// 429 with `Retry-After` and the `busy` error.
fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut response = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({ "error": over_rate(retry_after_secs) }),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// `{"error": …}` with the status of its code.
pub(super) fn error_response(error: ErrorObject) -> Response {
    json(
        http_status(error.code),
        &serde_json::json!({ "error": error }),
    )
}

fn json(status: StatusCode, value: &Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a bridge answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The HTTP status for an error code of the socket API.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnknownMethod | ErrorCode::NotSupported => StatusCode::NOT_FOUND,
        ErrorCode::Busy => StatusCode::CONFLICT,
        ErrorCode::NoSession => StatusCode::UNAUTHORIZED,
        ErrorCode::RoleNotPermitted | ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::ShuttingDown | ErrorCode::PcscUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::CmsUnreachable => StatusCode::BAD_GATEWAY,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::HelloRequired
        | ErrorCode::ProtocolMismatch
        | ErrorCode::TooManyConnections
        | ErrorCode::SubscriberOverflow
        | ErrorCode::NoReader
        | ErrorCode::NoCard
        | ErrorCode::NotPiv
        | ErrorCode::CardRemoved
        | ErrorCode::CardError
        | ErrorCode::WrongPin
        | ErrorCode::PinBlocked
        | ErrorCode::PinCancelled
        | ErrorCode::PinentryFailed
        | ErrorCode::PinPolicy
        | ErrorCode::CertificateExpired
        | ErrorCode::CardCancelled
        | ErrorCode::CmsRefused
        | ErrorCode::UnknownRole
        | ErrorCode::UnknownOperation => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_the_contract_statuses() {
        for (code, status) in [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::MessageTooLarge, 413),
            (ErrorCode::UnknownMethod, 404),
            (ErrorCode::NotSupported, 404),
            (ErrorCode::Busy, 409),
            (ErrorCode::NoSession, 401),
            (ErrorCode::RoleNotPermitted, 403),
            (ErrorCode::PermissionDenied, 403),
            (ErrorCode::ShuttingDown, 503),
            (ErrorCode::PcscUnavailable, 503),
            (ErrorCode::CmsUnreachable, 502),
            (ErrorCode::Internal, 500),
            (ErrorCode::WrongPin, 422),
            (ErrorCode::PinCancelled, 422),
            (ErrorCode::NoCard, 422),
            (ErrorCode::CmsRefused, 422),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }
}
