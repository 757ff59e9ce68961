//! Authentication: a challenge for a card (kept by [`crate::challenges`]); the card's signature
//! and certificate checked against the CA and the registry; sessions (bearer token for the agent,
//! ticket for relying applications, both stored only as hashes); role selection and logout.

use crate::ca::{CaError, CertificateAuthority};
use crate::dates;
use crate::db::{AuditEvent, CardRecord, CertificateStatus, SessionRecord};
use crate::error::{CmsError, CmsResult};
use crate::fields::{decode_base64, parse_serial};
use crate::service::{Caller, Cms};
use crate::throttle::ClientKey;
use crate::views::{role_view, session_view, user_view};
use cms_api::protocol::{
    self, b64, Challenge, SessionCreated, SessionRequest, SessionView, TicketValidation,
};
use piv::CardSerial;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use zeroize::Zeroizing;

/// The SHA-256 of a token or ticket, hex: what the database keeps instead of the secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a failed sign-in is a wrong or forged answer, which counts towards the backoff and
/// is audited: a challenge that is unknown, used, expired or another card's, a certificate that
/// is not this CA's, not usable or not the card's, a signature that does not verify. The card's
/// own state (expired, cancelled) and the service's failures do not count: they are no attempt
/// to get in with a wrong answer.
fn is_wrong_answer(error: &CmsError) -> bool {
    matches!(
        error,
        CmsError::UnknownChallenge
            | CmsError::ChallengeExpired
            | CmsError::ChallengeMismatch { .. }
            | CmsError::UntrustedCertificate
            | CmsError::InvalidField(_)
            | CmsError::CertificateNotOfCard(_)
            | CmsError::BadSignature
    )
}

fn random_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(b64::encode_url(bytes.as_ref()))
}

impl Cms {
    /// A challenge for a registered, active card, asked by the client at `client`. The
    /// client's challenge rate is checked first, before the database is read: a flood is
    /// refused for the price of a lock.
    pub fn issue_challenge(&self, serial: &str, client: IpAddr) -> CmsResult<Challenge> {
        let client = ClientKey::of(client);
        self.challenge_rate
            .take(client)
            .map_err(CmsError::rate_limited)?;
        let serial = parse_serial(serial)?;
        let card = self.active_card(&serial.to_string())?;
        let challenge = self.challenges.issue(serial, client)?;
        Ok(Challenge {
            serial: card.serial,
            challenge: b64::encode_url(&challenge),
            expires_at: dates::now() + self.policy.challenge_ttl.as_secs() as i64,
        })
    }

    /// Checks the card's answer to a challenge, sent by the client at `client`, and opens a
    /// session. A wrong answer is audited and counted towards the backoff of the card and the
    /// client ([`crate::throttle::failures`]); a client backing off is refused before anything
    /// is checked.
    pub fn create_session(
        &self,
        request: &SessionRequest,
        client: IpAddr,
    ) -> CmsResult<SessionCreated> {
        let serial = parse_serial(&request.serial)?;
        let key = ClientKey::of(client);
        self.sign_in_failures
            .check(serial, key)
            .map_err(CmsError::rate_limited)?;
        let challenge = b64::decode_url(&request.challenge)
            .ok_or_else(|| CmsError::InvalidField("challenge is not base64url".into()))?;
        let signature = decode_base64("signature", &request.signature)?;
        let cert_der = decode_base64("certificate", &request.certificate)?;
        match self.check_answer(serial, &challenge, &signature, &cert_der) {
            Ok((card, certificate)) => {
                self.sign_in_failures.succeeded(serial, key);
                self.open_session(card, &certificate)
            }
            Err(e) => {
                if is_wrong_answer(&e) {
                    self.sign_in_failed(serial, client, &e);
                }
                Err(e)
            }
        }
    }

    /// Counts a wrong answer for `serial` from `client`, and audits and logs it within the
    /// budget of rows (with the client's whole address; the count is by [`ClientKey`]).
    fn sign_in_failed(&self, serial: CardSerial, client: IpAddr, error: &CmsError) {
        // An IPv4 client of a dual-stack listener reads as its IPv4 address.
        let client = client.to_canonical();
        let failure = self.sign_in_failures.failed(serial, ClientKey::of(client));
        if !failure.audited {
            return;
        }
        let reason = error.code().as_str();
        let backoff = failure
            .backoff
            .map(|b| format!("; backing off {} s", b.as_secs_f64().ceil()))
            .unwrap_or_default();
        let unaudited = match failure.unaudited {
            0 => String::new(),
            n => format!("; {n} earlier failed sign-ins not audited one by one"),
        };
        let serial_text = serial.to_string();
        let detail = format!(
            "{reason} from {client}: failure {} in a row of this card from this address, {} \
             from this address, {} of this card{backoff}{unaudited}",
            failure.in_a_row, failure.from_client, failure.of_card
        );
        tracing::warn!(
            card = %serial_text,
            client = %client,
            reason,
            in_a_row = failure.in_a_row,
            backoff_secs = failure.backoff.map(|b| b.as_secs()),
            unaudited = failure.unaudited,
            "failed sign-in"
        );
        let event = AuditEvent {
            actor: "anonymous",
            action: "authenticate.failed",
            card_serial: Some(&serial_text),
            detail,
        };
        if let Err(e) = self
            .db
            .audit_client(dates::now(), &event, &client.to_string())
        {
            tracing::error!(error = %e, "writing a failed sign-in to the audit log");
        }
    }

    /// Redeems the challenge and checks the card, its certificate and the signature; returns the
    /// card and the certificate's serial.
    fn check_answer(
        &self,
        serial: CardSerial,
        challenge: &[u8],
        signature: &[u8],
        cert_der: &[u8],
    ) -> CmsResult<(CardRecord, String)> {
        let serial_text = serial.to_string();
        self.challenges.redeem(challenge, serial)?;

        let card = self.active_card(&serial_text)?;
        let cert = self
            .verified
            .check(&self.ca, cert_der)
            .map_err(|e| match e {
                CaError::NotIssuedHere => CmsError::UntrustedCertificate,
                other => CmsError::InvalidField(other.to_string()),
            })?;
        let record = self
            .db
            .certificate(&cert.serial_hex())?
            .filter(|r| r.card_serial == serial_text)
            .ok_or_else(|| CmsError::CertificateNotOfCard(serial_text.clone()))?;
        let current = match record.status {
            CertificateStatus::Active => true,
            // A certificate issued in an open operation whose confirmation was interrupted:
            // the card may already hold the new key.
            CertificateStatus::Pending => record
                .operation_id
                .as_deref()
                .map(|op| self.db.operation(op))
                .transpose()?
                .flatten()
                .is_some_and(|op| op.state.is_open()),
            CertificateStatus::Replaced | CertificateStatus::Superseded => false,
        };
        if !current {
            return Err(CmsError::CertificateNotOfCard(serial_text));
        }
        let now = dates::now();
        let not_after = CertificateAuthority::not_after(&cert);
        if now >= not_after || now < CertificateAuthority::not_before(&cert) {
            return Err(CmsError::CardExpired {
                serial: serial_text,
                expired_on: dates::iso_date(not_after),
            });
        }
        cert.verify(&protocol::auth_message(&serial_text, challenge), signature)
            .map_err(|_| CmsError::BadSignature)?;
        Ok((card, record.serial))
    }

    /// Opens a session for the holder of `card`, who signed in with certificate `certificate`.
    fn open_session(&self, card: CardRecord, certificate: &str) -> CmsResult<SessionCreated> {
        let serial_text = card.serial.clone();
        let now = dates::now();
        let user = self
            .db
            .user(&card.holder_id)?
            .ok_or_else(|| CmsError::UnknownUser(card.holder_id.clone()))?;
        let roles = self.db.role_profiles(&user.id)?;
        let token = random_secret();
        let ticket = random_secret();
        let session = SessionRecord {
            token_hash: secret_hash(&token),
            ticket_hash: secret_hash(&ticket),
            user_id: user.id.clone(),
            card_serial: serial_text.clone(),
            selected_role: match roles.as_slice() {
                [only] => Some(only.id),
                _ => None,
            },
            created_at: now,
            expires_at: now + self.policy.session_ttl.as_secs() as i64,
            ended_at: None,
            operation_id: None,
        };
        let caller = Caller {
            session,
            user,
            roles,
        };
        self.db.add_session(
            &caller.session,
            &caller.audit(
                "authenticate",
                Some(&serial_text),
                format!("certificate {certificate}"),
            ),
        )?;
        Ok(SessionCreated {
            session_token: token,
            ticket,
            session: session_view(&caller),
        })
    }

    /// A token for the operation `operation` on `caller`'s card, opened by `caller`'s session:
    /// a session of the same holder that may work on that operation only, with a session's
    /// lifetime, so the operation can be finished after the holder's session has ended.
    pub(crate) fn operation_token(
        &self,
        caller: &Caller,
        operation: &str,
    ) -> CmsResult<Zeroizing<String>> {
        let now = dates::now();
        let token = random_secret();
        // Never handed out: an operation's token is no sign-in for relying applications.
        let ticket = random_secret();
        let session = SessionRecord {
            token_hash: secret_hash(&token),
            ticket_hash: secret_hash(&ticket),
            user_id: caller.user.id.clone(),
            card_serial: caller.session.card_serial.clone(),
            selected_role: None,
            created_at: now,
            expires_at: now + self.policy.session_ttl.as_secs() as i64,
            ended_at: None,
            operation_id: Some(operation.to_owned()),
        };
        self.db.add_session(
            &session,
            &caller.audit(
                "renew.token",
                Some(&caller.session.card_serial),
                format!("operation {operation}"),
            ),
        )?;
        Ok(token)
    }

    /// The caller behind a bearer token.
    pub fn caller(&self, token: Option<&str>) -> CmsResult<Caller> {
        let token = token.ok_or(CmsError::Unauthenticated)?;
        let session = self
            .db
            .session_by_token(&secret_hash(token))?
            .ok_or(CmsError::InvalidSession)?;
        self.caller_of(session, CmsError::InvalidSession, CmsError::SessionExpired)
    }

    fn caller_of(
        &self,
        session: SessionRecord,
        ended: CmsError,
        expired: CmsError,
    ) -> CmsResult<Caller> {
        if session.ended_at.is_some() {
            return Err(ended);
        }
        if session.expires_at <= dates::now() {
            return Err(expired);
        }
        let user = self
            .db
            .user(&session.user_id)?
            .ok_or_else(|| CmsError::UnknownUser(session.user_id.clone()))?;
        let roles = self.db.role_profiles(&user.id)?;
        Ok(Caller {
            session,
            user,
            roles,
        })
    }

    /// The caller's session.
    pub fn session(&self, caller: &Caller) -> SessionView {
        session_view(caller)
    }

    /// Selects one of the caller's role profiles.
    pub fn select_role(&self, caller: &Caller, role_id: i64) -> CmsResult<SessionView> {
        let role = caller
            .roles
            .iter()
            .find(|r| r.id == role_id)
            .ok_or(CmsError::ForeignRole(role_id))?;
        self.db.select_role(
            &caller.session.token_hash,
            role_id,
            dates::now(),
            &caller.audit(
                "session.select_role",
                Some(&caller.session.card_serial),
                format!("{} at {}", role.job_role, role.organisation),
            ),
        )?;
        let mut updated = caller.clone();
        updated.session.selected_role = Some(role_id);
        Ok(session_view(&updated))
    }

    /// Ends the caller's session.
    pub fn logout(&self, caller: &Caller) -> CmsResult<()> {
        self.db.end_session(
            &caller.session.token_hash,
            dates::now(),
            &caller.audit(
                "session.logout",
                Some(&caller.session.card_serial),
                String::new(),
            ),
        )
    }

    /// The live session behind a ticket, its user and their role profiles, checked as
    /// [`Cms::validate_ticket`] checks it (`invalid_ticket` for an unknown, ended or expired
    /// one). For the portal, whose pages act for the ticket's holder.
    pub fn ticket_caller(&self, ticket: &str) -> CmsResult<Caller> {
        let session = self
            .db
            .session_by_ticket(&secret_hash(ticket))?
            .ok_or(CmsError::InvalidTicket)?;
        self.caller_of(session, CmsError::InvalidTicket, CmsError::InvalidTicket)
    }

    /// Checks a ticket for a relying application.
    pub fn validate_ticket(&self, ticket: &str) -> CmsResult<TicketValidation> {
        let caller = self.ticket_caller(ticket)?;
        Ok(TicketValidation {
            valid: true,
            user: user_view(&caller.user),
            card_serial: caller.session.card_serial.clone(),
            role: caller.selected_role().map(role_view),
            expires_at: caller.session.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_stored_as_hashes() {
        let token = random_secret();
        assert_eq!(token.len(), 43);
        assert_eq!(secret_hash(&token).len(), 64);
        assert_ne!(secret_hash(&token), *token);
    }
}
