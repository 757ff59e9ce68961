//! A small typed client of the API over HTTPS that trusts only the service's CA, and a
//! [`ManagementKeyResponder`] that relays a card's 9B mutual authentication to the service, so
//! the agent (and the tests) never hold a card's management key.

use crate::protocol::{
    b64, CancelCardRequest, CardCertificate, Challenge, ChallengeAnswerRequest, ChallengeRequest,
    ConfirmRequest, CsrRequest, ErrorBody, Health, NewCardRequest, OperationStarted, OperationView,
    PukRelease, RelayResult, SelectRoleRequest, SessionCreated, SessionRequest, SessionView,
    SmartcardDetails, StartOperationRequest, TicketRequest, TicketValidation, UserCards,
    WitnessAnswerView, WitnessRequest,
};
use crate::{ErrorCode, OperationKind};
use piv::{ManagementKeyResponder, WitnessAnswer};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;
use zeroize::Zeroizing;

/// What a call to the service can fail with.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The service answered with an error.
    #[error("the Card Management Service refused ({status} {code}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable error code.
        code: ErrorCode,
        /// The service's message.
        message: String,
        /// With `rate_limited`: the seconds to wait before trying again, from the answer's
        /// `Retry-After` header (or its body's `retry_after`).
        retry_after: Option<u64>,
    },
    /// The service answered with an error whose code this version of the API does not know
    /// (a newer service).
    #[error("the Card Management Service refused ({status} {code}): {message}")]
    UnknownCode {
        /// The HTTP status.
        status: u16,
        /// The code as the service sent it.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service could not be reached, or the connection failed.
    #[error("cannot reach the Card Management Service: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer is not what the API promises.
    #[error("the Card Management Service sent an unexpected answer: {0}")]
    Unexpected(String),
    /// The client cannot be set up (bad CA certificate, bad URL).
    #[error("client set-up: {0}")]
    Setup(String),
    /// This call needs a session and the client has none.
    #[error("this call needs a session: authenticate first")]
    NoSession,
}

impl ClientError {
    /// The service's error code, for an error answer with a code of this API.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            ClientError::UnknownCode { .. }
            | ClientError::Transport(_)
            | ClientError::Unexpected(_)
            | ClientError::Setup(_)
            | ClientError::NoSession => None,
        }
    }

    /// For a `rate_limited` answer, how many seconds the service asks to wait.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ClientError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A client of one service, optionally carrying a session token.
#[derive(Clone)]
pub struct CmsClient {
    http: reqwest::Client,
    base: String,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for CmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsClient")
            .field("base", &self.base)
            .field("session", &self.token.is_some())
            .finish()
    }
}

impl CmsClient {
    /// A client of the service at `base_url` (`https://host:port`) trusting only the CA in
    /// `ca_pem`.
    pub fn new(base_url: &str, ca_pem: &str) -> Result<Self, ClientError> {
        Self::from_address(base_url, ca_pem, None)
    }

    /// As [`CmsClient::new`], connecting from `local` (one of this host's addresses) when
    /// given: a host with several addresses picks the one the service sees.
    pub fn from_address(
        base_url: &str,
        ca_pem: &str,
        local: Option<std::net::IpAddr>,
    ) -> Result<Self, ClientError> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| ClientError::Setup(format!("CA certificate: {e}")))?;
        let http = reqwest::Client::builder()
            .local_address(local)
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .https_only(true)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    /// The same client carrying session `token`.
    pub fn with_session(&self, token: &str) -> Self {
        Self {
            token: Some(Zeroizing::new(token.to_owned())),
            ..self.clone()
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        session: bool,
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if session {
            let token = self.token.as_ref().ok_or(ClientError::NoSession)?;
            req = req.bearer_auth(token.as_str());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(ClientError::Transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp.bytes().await.map_err(ClientError::Transport)?;
        if status.is_success() {
            // An empty answer (204) reads as JSON null.
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(body)
                .map_err(|e| ClientError::Unexpected(format!("{path}: {e}")));
        }
        Err(match error_answer(path, status, &bytes) {
            ClientError::Api {
                status,
                code,
                message,
                retry_after: in_body,
            } => ClientError::Api {
                status,
                code,
                message,
                retry_after: retry_after.or(in_body),
            },
            other => other,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, session: bool) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None, session).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        session: bool,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body), session).await
    }

    /// A POST without a body, in the session.
    async fn post_in_session<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::POST, path, None, true).await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/v1/health", false).await
    }

    /// A challenge for card `serial`.
    pub async fn challenge(&self, serial: &str) -> Result<Challenge, ClientError> {
        let body = ChallengeRequest {
            serial: serial.to_owned(),
        };
        self.post("/v1/auth/challenge", &body, false).await
    }

    /// Opens a session with a signed challenge.
    pub async fn create_session(
        &self,
        request: &SessionRequest,
    ) -> Result<SessionCreated, ClientError> {
        self.post("/v1/auth/session", request, false).await
    }

    /// Authenticates card `serial`: asks a challenge, has `sign` sign
    /// [`crate::protocol::auth_message`] with the card's 9A key, and opens a session. Returns
    /// the session and a client carrying it.
    pub async fn authenticate<E: std::fmt::Display>(
        &self,
        serial: &str,
        certificate_der: &[u8],
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<(SessionCreated, CmsClient), ClientError> {
        let challenge = self.challenge(serial).await?;
        let raw = b64::decode_url(&challenge.challenge)
            .ok_or_else(|| ClientError::Unexpected("the challenge is not base64url".into()))?;
        let signature = sign(&crate::protocol::auth_message(&challenge.serial, &raw))
            .map_err(|e| ClientError::Setup(format!("signing the challenge: {e}")))?;
        let session = self
            .create_session(&SessionRequest {
                serial: challenge.serial.clone(),
                challenge: challenge.challenge,
                signature: b64::encode(&signature),
                certificate: b64::encode(certificate_der),
            })
            .await?;
        let client = self.with_session(&session.session_token);
        Ok((session, client))
    }

    /// The session this client carries.
    pub async fn session(&self) -> Result<SessionView, ClientError> {
        self.get("/v1/session", true).await
    }

    /// Selects a role profile.
    pub async fn select_role(&self, role_id: i64) -> Result<SessionView, ClientError> {
        self.post("/v1/session/role", &SelectRoleRequest { role_id }, true)
            .await
    }

    /// Ends the session.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.post_in_session("/v1/session/logout").await
    }

    /// Validates a ticket, as a relying application does.
    pub async fn validate_ticket(&self, ticket: &str) -> Result<TicketValidation, ClientError> {
        let body = TicketRequest {
            ticket: Zeroizing::new(ticket.to_owned()),
        };
        self.post("/v1/tickets/validate", &body, false).await
    }

    /// A user's Smartcard Details.
    pub async fn user_cards(&self, user_id: &str) -> Result<UserCards, ClientError> {
        self.get(&format!("/v1/users/{user_id}/cards"), true).await
    }

    /// One card's details.
    pub async fn card(&self, serial: &str) -> Result<SmartcardDetails, ClientError> {
        self.get(&format!("/v1/cards/{serial}"), true).await
    }

    /// A card's current certificate (no session needed).
    pub async fn card_certificate(&self, serial: &str) -> Result<CardCertificate, ClientError> {
        self.get(&format!("/v1/cards/{serial}/certificate"), false)
            .await
    }

    /// Registers a new card (RA).
    pub async fn new_card(
        &self,
        request: &NewCardRequest,
    ) -> Result<SmartcardDetails, ClientError> {
        self.post("/v1/cards", request, true).await
    }

    /// Cancels a card (RA).
    pub async fn cancel_card(
        &self,
        serial: &str,
        reason: &str,
    ) -> Result<SmartcardDetails, ClientError> {
        let body = CancelCardRequest {
            reason: reason.to_owned(),
        };
        self.post(&format!("/v1/cards/{serial}/cancel"), &body, true)
            .await
    }

    /// Starts (or resumes) a renewal, repair or restore; a renewal comes with its own token.
    pub async fn start_operation(
        &self,
        kind: OperationKind,
        serial: &str,
        agent_version: &str,
    ) -> Result<OperationStarted, ClientError> {
        let body = StartOperationRequest {
            kind: kind.as_str().to_owned(),
            serial: serial.to_owned(),
            agent_version: agent_version.to_owned(),
        };
        self.post("/v1/operations", &body, true).await
    }

    /// An operation, to resume it.
    pub async fn operation(&self, id: &str) -> Result<OperationView, ClientError> {
        self.get(&format!("/v1/operations/{id}"), true).await
    }

    /// Relays the card's encrypted witness.
    pub async fn relay_witness(
        &self,
        id: &str,
        algorithm: u8,
        witness: &[u8],
    ) -> Result<WitnessAnswerView, ClientError> {
        let body = WitnessRequest {
            algorithm,
            witness: b64::encode(witness),
        };
        self.post(
            &format!("/v1/operations/{id}/management-key/witness"),
            &body,
            true,
        )
        .await
    }

    /// Relays the card's answer to the service's challenge.
    pub async fn relay_response(
        &self,
        id: &str,
        response: &[u8],
    ) -> Result<RelayResult, ClientError> {
        let body = ChallengeAnswerRequest {
            response: b64::encode(response),
        };
        self.post(
            &format!("/v1/operations/{id}/management-key/response"),
            &body,
            true,
        )
        .await
    }

    /// Sends the card-signed certificate request; the answer carries the certificate.
    pub async fn submit_csr(&self, id: &str, csr_der: &[u8]) -> Result<OperationView, ClientError> {
        let body = CsrRequest {
            csr: b64::encode(csr_der),
        };
        self.post(&format!("/v1/operations/{id}/csr"), &body, true)
            .await
    }

    /// Asks for the card's PUK (repair only).
    pub async fn release_puk(&self, id: &str) -> Result<PukRelease, ClientError> {
        self.post_in_session(&format!("/v1/operations/{id}/puk"))
            .await
    }

    /// Aborts an operation that has not changed the card (still `started`); aborting an
    /// aborted one again answers with it.
    pub async fn abort_operation(&self, id: &str) -> Result<OperationView, ClientError> {
        self.post_in_session(&format!("/v1/operations/{id}/abort"))
            .await
    }

    /// Confirms the operation with the new key's signature over
    /// [`crate::protocol::confirm_message`].
    pub async fn confirm(&self, id: &str, signature: &[u8]) -> Result<OperationView, ClientError> {
        let body = ConfirmRequest {
            signature: b64::encode(signature),
        };
        self.post(&format!("/v1/operations/{id}/confirm"), &body, true)
            .await
    }

    /// Sends a raw request and returns the status and body, for tests of bad input.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.as_str());
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(ClientError::Transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(ClientError::Transport)?;
        Ok((status, bytes.to_vec()))
    }
}

/// The error an answer with `status` and `body` is: one of the API's codes, a code of a newer
/// service, or no error body at all.
fn error_answer(path: &str, status: reqwest::StatusCode, body: &[u8]) -> ClientError {
    if let Ok(err) = serde_json::from_slice::<ErrorBody>(body) {
        return ClientError::Api {
            status: status.as_u16(),
            code: err.error.code,
            message: err.error.message,
            retry_after: err.error.retry_after,
        };
    }
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(message)) => ClientError::UnknownCode {
            status: status.as_u16(),
            code: code.to_owned(),
            message: message.to_owned(),
        },
        _ => ClientError::Unexpected(format!("{path}: status {status} without an error body")),
    }
}

/// Answers a card's 9B mutual authentication through the service, for one operation.
///
/// The card's methods are blocking, so this one is too: it runs each call on `runtime` and
/// must not be used from inside that runtime's async tasks (use it from a plain thread or
/// `spawn_blocking`).
#[derive(Debug)]
pub struct RelayResponder {
    client: CmsClient,
    operation_id: String,
    algorithm: u8,
    runtime: tokio::runtime::Handle,
}

impl RelayResponder {
    /// A responder relaying to `client`'s service for `operation`, in the algorithm of the
    /// card's management key that the operation names.
    pub fn new(
        client: CmsClient,
        operation: &OperationView,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            client,
            operation_id: operation.id.clone(),
            algorithm: operation.management_algorithm,
            runtime,
        }
    }
}

fn relay_error(e: ClientError) -> piv::Error {
    if e.code() == Some(ErrorCode::ManagementKeyRejected) {
        piv::Error::ManagementKeyRejected
    } else {
        piv::Error::Responder(Box::new(e))
    }
}

impl ManagementKeyResponder for RelayResponder {
    fn algorithm(&self) -> u8 {
        self.algorithm
    }

    fn answer_witness(
        &mut self,
        alg: u8,
        encrypted_witness: &[u8],
    ) -> Result<WitnessAnswer, piv::Error> {
        let answer = self
            .runtime
            .block_on(
                self.client
                    .relay_witness(&self.operation_id, alg, encrypted_witness),
            )
            .map_err(relay_error)?;
        let decode = |field: &str, text: &str| {
            b64::decode(text).ok_or_else(|| {
                relay_error(ClientError::Unexpected(format!("{field} is not base64")))
            })
        };
        Ok(WitnessAnswer {
            decrypted_witness: Zeroizing::new(decode(
                "decrypted_witness",
                &answer.decrypted_witness,
            )?),
            challenge: decode("challenge", &answer.challenge)?,
        })
    }

    fn check_challenge_response(&mut self, response: &[u8]) -> Result<(), piv::Error> {
        self.runtime
            .block_on(self.client.relay_response(&self.operation_id, response))
            .map(drop)
            .map_err(relay_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_keep_their_code_known_or_not() {
        let status = reqwest::StatusCode::FORBIDDEN;
        let known = br#"{"error": {"code": "card_expired", "message": "expired"}}"#;
        assert!(matches!(
            error_answer("/v1/x", status, known),
            ClientError::Api {
                status: 403,
                code: ErrorCode::CardExpired,
                ..
            }
        ));
        let newer = br#"{"error": {"code": "card_on_fire", "message": "hot"}}"#;
        let e = error_answer("/v1/x", status, newer);
        assert!(matches!(&e, ClientError::UnknownCode { code, .. } if code == "card_on_fire"));
        assert_eq!(e.code(), None);
        let slow = br#"{"error": {"code": "rate_limited", "message": "slow", "retry_after": 3}}"#;
        let e = error_answer("/v1/x", reqwest::StatusCode::TOO_MANY_REQUESTS, slow);
        assert_eq!(e.code(), Some(ErrorCode::RateLimited));
        assert_eq!(e.retry_after(), Some(3));
        assert!(matches!(
            error_answer("/v1/x", status, b"<html>"),
            ClientError::Unexpected(_)
        ));
    }
}
