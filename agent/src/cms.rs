//! The agent's link to the Card Management Service: the typed client of the `cms` crate,
//! built from the configuration, and its errors in the socket API's words.

use crate::config::CmsConfig;
use agent_ipc::{ErrorCode, ErrorObject};
use anyhow::Context;
use cms::client::{ClientError, CmsClient};

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

/// A failed call to the service, in the socket API's words.
pub fn error_object(e: &ClientError) -> ErrorObject {
    match e {
        ClientError::Api { code, message, .. } => {
            let mapped = match code.as_str() {
                "card_cancelled" => Some((
                    ErrorCode::CardCancelled,
                    "This smartcard has been cancelled — contact your Registration Authority"
                        .to_owned(),
                )),
                "card_expired" => Some((ErrorCode::CertificateExpired, EXPIRED_MESSAGE.to_owned())),
                "activity_required" | "forbidden" | "foreign_role" => {
                    Some((ErrorCode::RoleNotPermitted, message.clone()))
                }
                "invalid_session" | "session_expired" | "unauthenticated" => Some((
                    ErrorCode::NoSession,
                    format!("the Card Management Service ended the session: {message}"),
                )),
                _ => None,
            };
            let (code_out, text) = mapped.unwrap_or((
                ErrorCode::CmsRefused,
                format!("the Card Management Service refused: {message}"),
            ));
            ErrorObject::new(code_out, text).with_data(serde_json::json!({ "cms_code": code }))
        }
        ClientError::Transport(_) | ClientError::Setup(_) => {
            ErrorObject::new(ErrorCode::CmsUnreachable, e.to_string())
        }
        ClientError::Unexpected(_) => ErrorObject::new(ErrorCode::CmsRefused, e.to_string()),
        ClientError::NoSession => ErrorObject::new(ErrorCode::NoSession, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> ClientError {
        ClientError::Api {
            status: 403,
            code: code.into(),
            message: "no".into(),
        }
    }

    #[test]
    fn service_codes_map_to_the_apis_codes() {
        assert_eq!(
            error_object(&api("card_cancelled")).code,
            ErrorCode::CardCancelled
        );
        let expired = error_object(&api("card_expired"));
        assert_eq!(expired.code, ErrorCode::CertificateExpired);
        assert!(expired.message.contains("Registration Authority"));
        assert_eq!(
            error_object(&api("activity_required")).code,
            ErrorCode::RoleNotPermitted
        );
        let other = error_object(&api("bad_signature"));
        assert_eq!(other.code, ErrorCode::CmsRefused);
        assert_eq!(other.data.unwrap()["cms_code"], "bad_signature");
        assert_eq!(
            error_object(&ClientError::NoSession).code,
            ErrorCode::NoSession
        );
    }
}
