//! Request extractors that answer bad input with the service's JSON errors: a size-limited
//! JSON body, the bearer session, and the client's address.

use crate::error::CmsError;
use crate::service::{Caller, Cms};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The largest oversized body read (and dropped) before answering `payload_too_large`.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

async fn drain(mut body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

/// Whether a body read failed because the body is longer than its limit (rather than because
/// it stopped arriving).
fn is_over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A JSON body of at most the policy's size, parsed into `T`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Cms>> for Body<T> {
    type Rejection = CmsError;

    async fn from_request(req: Request, state: &Arc<Cms>) -> Result<Self, Self::Rejection> {
        let limit = state.policy().max_body_bytes;
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            // Read and drop a body of reasonable size, so the client gets the answer instead
            // of a connection closed under its feet; a huge one is cut off.
            if declared.is_some_and(|n| n <= DRAIN_LIMIT) {
                drain(req.into_body()).await;
            }
            return Err(CmsError::PayloadTooLarge { limit });
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                if is_over_limit(&e) {
                    CmsError::PayloadTooLarge { limit }
                } else {
                    // The body stopped: the client went away, or (behind the server) it was
                    // late and the server closes the connection without this answer.
                    CmsError::InvalidRequest("the body did not arrive in full".into())
                }
            })?;
        decode_body(&bytes).map(Body)
    }
}

/// Decodes a request body into `T` as the API does: JSON (else `malformed_json`), an object
/// (else `invalid_request`), then the fields of `T` (else `invalid_request`). The size limit is
/// the extractor's, checked before this.
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CmsError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CmsError::MalformedJson(e.to_string()))?;
    if !value.is_object() {
        return Err(CmsError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    }
    T::deserialize(value).map_err(|e| CmsError::InvalidRequest(e.to_string()))
}

/// The caller of a request that needs a sign-in (`Authorization: Bearer <token>`); an
/// operation's own token is refused.
#[derive(Debug)]
pub struct Session(pub Caller);

impl FromRequestParts<Arc<Cms>> for Session {
    type Rejection = CmsError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Cms>,
    ) -> Result<Self, Self::Rejection> {
        let caller = bearer_caller(parts, state)?;
        caller.require_sign_in()?;
        Ok(Session(caller))
    }
}

/// The caller of a request on an operation: a sign-in, or the operation's own token (which
/// the service checks against the operation the request names).
#[derive(Debug)]
pub struct OperationSession(pub Caller);

impl FromRequestParts<Arc<Cms>> for OperationSession {
    type Rejection = CmsError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Cms>,
    ) -> Result<Self, Self::Rejection> {
        bearer_caller(parts, state).map(OperationSession)
    }
}

/// The caller behind the request's bearer token.
fn bearer_caller(parts: &Parts, cms: &Cms) -> Result<Caller, CmsError> {
    let token = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    cms.caller(token)
}

/// The address of the client that sent a request, as the server saw it on the connection (the
/// server puts it in each request's extensions; a request without one, from a router used
/// without the server, counts as the unspecified address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(std::net::Ipv4Addr::UNSPECIFIED.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms_api::protocol::ChallengeRequest;

    #[test]
    fn decode_body_checks_json_then_object_then_fields() {
        assert!(matches!(
            decode_body::<ChallengeRequest>(b"{\"serial\":"),
            Err(CmsError::MalformedJson(_))
        ));
        assert!(matches!(
            decode_body::<ChallengeRequest>(b"[1]"),
            Err(CmsError::InvalidRequest(m)) if m.contains("JSON object")
        ));
        assert!(matches!(
            decode_body::<ChallengeRequest>(b"{}"),
            Err(CmsError::InvalidRequest(_))
        ));
        let req: ChallengeRequest = decode_body(b"{\"serial\":\"4082A001132F2817\"}").unwrap();
        assert_eq!(req.serial, "4082A001132F2817");
    }
}
