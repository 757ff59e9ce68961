//! The HTTP API (`/v1/…`, documented in `cms/API.md`): routes, and errors as JSON with a stable
//! code and a human message.

mod extract;

pub use extract::{decode_body, ClientAddr};

use crate::error::CmsError;
use crate::service::Cms;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cms_api::protocol::{
    CancelCardRequest, ChallengeAnswerRequest, ChallengeRequest, ConfirmRequest, CsrRequest,
    ErrorBody, ErrorDetail, Health, NewCardRequest, SelectRoleRequest, SessionRequest,
    StartOperationRequest, TicketRequest, WitnessRequest, API_VERSION,
};
use extract::{Body, OperationSession, Session};
use serde::Serialize;
use std::sync::Arc;

impl IntoResponse for CmsError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, detail = ?self, "request failed");
        } else {
            // Codes only: messages can name serials, never secrets, but stay out of the log.
            tracing::debug!(
                code = self.code().as_str(),
                status = status.as_u16(),
                "request refused"
            );
        }
        let retry_after = self.retry_after();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                retry_after,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

type Answer<T> = Result<Json<T>, CmsError>;

fn ok<T: Serialize>(value: T) -> Answer<T> {
    Ok(Json(value))
}

/// The API's routes over the service.
pub fn router(cms: Arc<Cms>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/session", post(create_session))
        .route("/v1/session", get(session))
        .route("/v1/session/role", post(select_role))
        .route("/v1/session/logout", post(logout))
        .route("/v1/tickets/validate", post(validate_ticket))
        .route("/v1/users/{id}/cards", get(user_cards))
        .route("/v1/cards", post(new_card))
        .route("/v1/cards/{serial}", get(card))
        .route("/v1/cards/{serial}/cancel", post(cancel_card))
        .route("/v1/cards/{serial}/certificate", get(card_certificate))
        .route("/v1/operations", post(start_operation))
        .route("/v1/operations/{id}", get(operation))
        .route(
            "/v1/operations/{id}/management-key/witness",
            post(relay_witness),
        )
        .route(
            "/v1/operations/{id}/management-key/response",
            post(relay_response),
        )
        .route("/v1/operations/{id}/csr", post(submit_csr))
        .route("/v1/operations/{id}/puk", post(release_puk))
        .route("/v1/operations/{id}/confirm", post(confirm))
        .route("/v1/operations/{id}/abort", post(abort_operation))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(cms)
}

async fn unknown_endpoint(uri: Uri) -> CmsError {
    CmsError::UnknownEndpoint(uri.path().to_owned())
}

async fn method_not_allowed(method: Method) -> CmsError {
    CmsError::MethodNotAllowed(method.to_string())
}

async fn health(State(cms): State<Arc<Cms>>) -> Answer<Health> {
    ok(Health {
        status: "ok".into(),
        api_version: API_VERSION,
        minimum_agent_version: cms.policy().minimum_agent_version.to_string(),
    })
}

async fn challenge(
    State(cms): State<Arc<Cms>>,
    ClientAddr(client): ClientAddr,
    Body(req): Body<ChallengeRequest>,
) -> Answer<cms_api::protocol::Challenge> {
    ok(cms.issue_challenge(&req.serial, client)?)
}

async fn create_session(
    State(cms): State<Arc<Cms>>,
    ClientAddr(client): ClientAddr,
    Body(req): Body<SessionRequest>,
) -> Answer<cms_api::protocol::SessionCreated> {
    ok(cms.create_session(&req, client)?)
}

async fn session(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
) -> Answer<cms_api::protocol::SessionView> {
    ok(cms.session(&caller))
}

async fn select_role(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
    Body(req): Body<SelectRoleRequest>,
) -> Answer<cms_api::protocol::SessionView> {
    ok(cms.select_role(&caller, req.role_id)?)
}

async fn logout(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
) -> Result<StatusCode, CmsError> {
    cms.logout(&caller)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn validate_ticket(
    State(cms): State<Arc<Cms>>,
    Body(req): Body<TicketRequest>,
) -> Answer<cms_api::protocol::TicketValidation> {
    ok(cms.validate_ticket(&req.ticket)?)
}

async fn user_cards(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
    Path(id): Path<String>,
) -> Answer<cms_api::protocol::UserCards> {
    ok(cms.user_cards(&caller, &id)?)
}

async fn card(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
    Path(serial): Path<String>,
) -> Answer<cms_api::protocol::SmartcardDetails> {
    ok(cms.card_details(&caller, &serial)?)
}

async fn card_certificate(
    State(cms): State<Arc<Cms>>,
    Path(serial): Path<String>,
) -> Answer<cms_api::protocol::CardCertificate> {
    ok(cms.card_certificate(&serial)?)
}

async fn new_card(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
    Body(req): Body<NewCardRequest>,
) -> Result<(StatusCode, Json<cms_api::protocol::SmartcardDetails>), CmsError> {
    Ok((StatusCode::CREATED, Json(cms.new_card(&caller, &req)?)))
}

async fn cancel_card(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
    Path(serial): Path<String>,
    Body(req): Body<CancelCardRequest>,
) -> Answer<cms_api::protocol::SmartcardDetails> {
    ok(cms.cancel_card(&caller, &serial, &req.reason)?)
}

async fn start_operation(
    State(cms): State<Arc<Cms>>,
    Session(caller): Session,
    Body(req): Body<StartOperationRequest>,
) -> Answer<cms_api::protocol::OperationStarted> {
    ok(cms.start_operation(&caller, &req)?)
}

async fn operation(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
) -> Answer<cms_api::protocol::OperationView> {
    ok(cms.operation(&caller, &id)?)
}

async fn relay_witness(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
    Body(req): Body<WitnessRequest>,
) -> Answer<cms_api::protocol::WitnessAnswerView> {
    ok(cms.relay_witness(&caller, &id, &req)?)
}

async fn relay_response(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
    Body(req): Body<ChallengeAnswerRequest>,
) -> Answer<cms_api::protocol::RelayResult> {
    ok(cms.relay_response(&caller, &id, &req)?)
}

async fn submit_csr(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
    Body(req): Body<CsrRequest>,
) -> Answer<cms_api::protocol::OperationView> {
    ok(cms.submit_csr(&caller, &id, &req)?)
}

async fn release_puk(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
) -> Answer<cms_api::protocol::PukRelease> {
    ok(cms.release_puk(&caller, &id)?)
}

async fn abort_operation(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
) -> Answer<cms_api::protocol::OperationView> {
    ok(cms.abort_operation(&caller, &id)?)
}

async fn confirm(
    State(cms): State<Arc<Cms>>,
    OperationSession(caller): OperationSession,
    Path(id): Path<String>,
    Body(req): Body<ConfirmRequest>,
) -> Answer<cms_api::protocol::OperationView> {
    ok(cms.confirm(&caller, &id, &req)?)
}
