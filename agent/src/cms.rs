//! The agent's link to the Card Management Service: the typed client of the `cms-api` crate,
//! built from the configuration, and its errors and operation kinds in the socket API's words.

use crate::config::CmsConfig;
use agent_ipc::{ErrorCode, ErrorObject};
use anyhow::Context;
use cms_api::client::{ClientError, CmsClient};
use cms_api::ErrorCode as CmsCode;

/// What the holder is told when the card's certificate has expired.
pub const EXPIRED_MESSAGE: &str =
    "Your smartcard has expired — contact your Registration Authority";

/// A client of the configured service, or `None` when none is configured (the agent still
/// watches cards and serves its socket; signing in says what is missing).
pub fn connect(config: &CmsConfig) -> anyhow::Result<Option<CmsClient>> {
    let Some(url) = &config.url else {
        return Ok(None);
    };
    let ca_file = config
        .ca_file
        .as_ref()
        .context("cms.url is set but cms.ca_file (the service's CA certificate) is not")?;
    let ca = std::fs::read_to_string(ca_file)
        .with_context(|| format!("reading the CMS CA certificate {}", ca_file.display()))?;
    let client = CmsClient::new(url, &ca).with_context(|| format!("the CMS client for {url}"))?;
    Ok(Some(client))
}

/// The error for a configuration without a service.
pub fn not_configured() -> ErrorObject {
    ErrorObject::new(
        ErrorCode::CmsUnreachable,
        "no Card Management Service is configured (set cms.url and cms.ca_file)",
    )
}

/// The service's name for an operation of `kind`.
pub fn operation_kind(kind: agent_ipc::OperationKind) -> cms_api::OperationKind {
    match kind {
        agent_ipc::OperationKind::Renew => cms_api::OperationKind::Renew,
        agent_ipc::OperationKind::Repair => cms_api::OperationKind::Repair,
        agent_ipc::OperationKind::Restore => cms_api::OperationKind::Restore,
    }
}

/// A failed call to the service, in the socket API's words.
pub fn error_object(e: &ClientError) -> ErrorObject {
    match e {
        ClientError::Api {
            code,
            message,
            retry_after,
            ..
        } => {
            let (code_out, text) = match code {
                CmsCode::RateLimited => (ErrorCode::CmsRefused, slow_down(*retry_after)),
                CmsCode::CardCancelled => (
                    ErrorCode::CardCancelled,
                    "This smartcard has been cancelled — contact your Registration Authority"
                        .to_owned(),
                ),
                CmsCode::CardExpired => (ErrorCode::CertificateExpired, EXPIRED_MESSAGE.to_owned()),
                CmsCode::ActivityRequired | CmsCode::Forbidden | CmsCode::ForeignRole => {
                    (ErrorCode::RoleNotPermitted, message.clone())
                }
                CmsCode::InvalidSession | CmsCode::SessionExpired | CmsCode::Unauthenticated => (
                    ErrorCode::NoSession,
                    format!("the Card Management Service ended the session: {message}"),
                ),
                CmsCode::MalformedJson
                | CmsCode::InvalidRequest
                | CmsCode::InvalidField
                | CmsCode::ChallengeMismatch
                | CmsCode::BadCsr
                | CmsCode::InvalidTicket
                | CmsCode::UnknownChallenge
                | CmsCode::ChallengeExpired
                | CmsCode::BadSignature
                | CmsCode::UntrustedCertificate
                | CmsCode::CertificateNotOfCard
                | CmsCode::AgentVersionBlocked
                | CmsCode::ManagementKeyRejected
                | CmsCode::OwnCard
                | CmsCode::UnknownCard
                | CmsCode::UnknownUser
                | CmsCode::UnknownOperation
                | CmsCode::UnknownEndpoint
                | CmsCode::MethodNotAllowed
                | CmsCode::CardFull
                | CmsCode::NoActiveCertificate
                | CmsCode::CardNotRepairable
                | CmsCode::OperationInProgress
                | CmsCode::WrongOperationState
                | CmsCode::NoRelayInProgress
                | CmsCode::CardExists
                | CmsCode::PayloadTooLarge
                | CmsCode::RelayLimit
                | CmsCode::Internal
                | CmsCode::Busy => refused(message),
            };
            ErrorObject::new(code_out, text)
                .with_data(serde_json::json!({ "cms_code": code.as_str() }))
        }
        ClientError::UnknownCode { code, message, .. } => {
            let (code_out, text) = refused(message);
            ErrorObject::new(code_out, text).with_data(serde_json::json!({ "cms_code": code }))
        }
        ClientError::Transport(_) | ClientError::Setup(_) => {
            ErrorObject::new(ErrorCode::CmsUnreachable, e.to_string())
        }
        ClientError::Unexpected(_) => ErrorObject::new(ErrorCode::CmsRefused, e.to_string()),
        ClientError::NoSession => ErrorObject::new(ErrorCode::NoSession, e.to_string()),
    }
}

/// What the holder is told when the service asks the agent to slow down.
fn slow_down(retry_after: Option<u64>) -> String {
    match retry_after {
        Some(secs) => format!(
            "the Card Management Service is asking to slow down; try again in {secs} seconds"
        ),
        None => "the Card Management Service is asking to slow down; try again shortly".into(),
    }
}

/// A refusal the socket API has no code of its own for.
fn refused(message: &str) -> (ErrorCode, String) {
    (
        ErrorCode::CmsRefused,
        format!("the Card Management Service refused: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: CmsCode) -> ClientError {
        ClientError::Api {
            status: code.status(),
            code,
            message: "no".into(),
            retry_after: None,
        }
    }

    #[test]
    fn service_codes_map_to_the_apis_codes() {
        assert_eq!(
            error_object(&api(CmsCode::CardCancelled)).code,
            ErrorCode::CardCancelled
        );
        let expired = error_object(&api(CmsCode::CardExpired));
        assert_eq!(expired.code, ErrorCode::CertificateExpired);
        assert!(expired.message.contains("Registration Authority"));
        assert_eq!(
            error_object(&api(CmsCode::ActivityRequired)).code,
            ErrorCode::RoleNotPermitted
        );
        let other = error_object(&api(CmsCode::BadSignature));
        assert_eq!(other.code, ErrorCode::CmsRefused);
        assert_eq!(other.data.unwrap()["cms_code"], "bad_signature");
        let slow = error_object(&ClientError::Api {
            status: 429,
            code: CmsCode::RateLimited,
            message: "no".into(),
            retry_after: Some(7),
        });
        assert!(slow.message.contains("slow down; try again in 7 seconds"));
        assert_eq!(
            error_object(&ClientError::NoSession).code,
            ErrorCode::NoSession
        );
        let newer = error_object(&ClientError::UnknownCode {
            status: 409,
            code: "card_on_fire".into(),
            message: "no".into(),
        });
        assert_eq!(newer.code, ErrorCode::CmsRefused);
        assert_eq!(newer.data.unwrap()["cms_code"], "card_on_fire");
    }
}
