//! Authentication: single-use, short-lived challenges for a card; the card's signature and
//! certificate checked against the CA and the registry; sessions (bearer token for the agent,
//! ticket for relying applications, both stored only as hashes); role selection and logout.

use crate::ca::{CaError, CertificateAuthority};
use crate::dates;
use crate::db::{CertificateStatus, SessionRecord};
use crate::error::{CmsError, CmsResult};
use crate::registry::{role_view, user_view};
use crate::service::{Caller, Cms};
use cms_api::protocol::{
    self, b64, Challenge, SessionCreated, SessionRequest, SessionView, TicketValidation,
};
use piv::CardSerial;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The most challenges outstanding at once; beyond it the service answers `busy`.
const MAX_OUTSTANDING: usize = 100_000;

/// Outstanding challenges, in memory: a restart forgets them, which only makes clients ask
/// again.
#[derive(Debug)]
pub struct ChallengeStore {
    ttl: Duration,
    outstanding: Mutex<HashMap<[u8; 32], (CardSerial, Instant)>>,
}

impl ChallengeStore {
    /// A store whose challenges live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            outstanding: Mutex::new(HashMap::new()),
        }
    }

    /// A new challenge for `serial`.
    pub fn issue(&self, serial: CardSerial) -> CmsResult<[u8; 32]> {
        let mut challenge = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        let now = Instant::now();
        let mut map = self.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_OUTSTANDING {
            map.retain(|_, (_, expires)| *expires > now);
            if map.len() >= MAX_OUTSTANDING {
                return Err(CmsError::Busy);
            }
        }
        map.insert(challenge, (serial, now + self.ttl));
        Ok(challenge)
    }

    /// Takes `challenge` out of the store (it can never be used again) and checks it was
    /// issued for `serial` and is still fresh.
    pub fn redeem(&self, challenge: &[u8], serial: CardSerial) -> CmsResult<()> {
        let key: [u8; 32] = challenge
            .try_into()
            .map_err(|_| CmsError::UnknownChallenge)?;
        let entry = self
            .outstanding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let (issued_for, expires) = entry.ok_or(CmsError::UnknownChallenge)?;
        if Instant::now() >= expires {
            return Err(CmsError::ChallengeExpired);
        }
        if issued_for != serial {
            return Err(CmsError::ChallengeMismatch {
                issued_for: issued_for.to_string(),
                presented: serial.to_string(),
            });
        }
        Ok(())
    }
}

/// The most certificates remembered as checked.
const MAX_VERIFIED: usize = 65_536;

/// Certificates already checked against the CA, by the SHA-256 of their DER, so a card that
/// signs in again costs one signature check, not two. Whether a certificate is still the
/// card's is asked of the registry every time.
#[derive(Debug, Default)]
pub struct VerifiedCertificates {
    known: Mutex<HashMap<[u8; 32], piv::Certificate>>,
}

impl VerifiedCertificates {
    /// The parsed certificate if this CA issued `der` (checked once, then remembered).
    pub fn check(
        &self,
        ca: &CertificateAuthority,
        der: &[u8],
    ) -> Result<piv::Certificate, CaError> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        if let Some(cert) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok(cert.clone());
        }
        let cert = ca.verify_issued(der)?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_VERIFIED {
            known.clear();
        }
        known.insert(digest, cert.clone());
        Ok(cert)
    }
}

/// The SHA-256 of a token or ticket, hex: what the database keeps instead of the secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(b64::encode_url(bytes.as_ref()))
}

/// Parses a card serial (16 hex digits) from a request.
pub fn parse_serial(text: &str) -> CmsResult<CardSerial> {
    text.trim().parse().map_err(|_| {
        CmsError::InvalidField(format!("{text:?} is not a card serial (16 hex digits)"))
    })
}

fn decode(field: &str, text: &str) -> CmsResult<Vec<u8>> {
    b64::decode(text).ok_or_else(|| CmsError::InvalidField(format!("{field} is not base64")))
}

impl Cms {
    /// A challenge for a registered, active card.
    pub fn issue_challenge(&self, serial: &str) -> CmsResult<Challenge> {
        let serial = parse_serial(serial)?;
        let card = self.active_card(&serial.to_string())?;
        let challenge = self.challenges.issue(serial)?;
        Ok(Challenge {
            serial: card.serial,
            challenge: b64::encode_url(&challenge),
            expires_at: dates::now() + self.policy.challenge_ttl.as_secs() as i64,
        })
    }

    /// Checks the card's answer to a challenge and opens a session.
    pub fn create_session(&self, request: &SessionRequest) -> CmsResult<SessionCreated> {
        let serial = parse_serial(&request.serial)?;
        let serial_text = serial.to_string();
        let challenge = b64::decode_url(&request.challenge)
            .ok_or_else(|| CmsError::InvalidField("challenge is not base64url".into()))?;
        let signature = decode("signature", &request.signature)?;
        let cert_der = decode("certificate", &request.certificate)?;
        self.challenges.redeem(&challenge, serial)?;

        let card = self.active_card(&serial_text)?;
        let cert = self
            .verified
            .check(&self.ca, &cert_der)
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
        cert.verify(
            &protocol::auth_message(&serial_text, &challenge),
            &signature,
        )
        .map_err(|_| CmsError::BadSignature)?;

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
                format!("certificate {}", record.serial),
            ),
        )?;
        Ok(SessionCreated {
            session_token: token,
            ticket,
            session: session_view(&caller),
        })
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

    /// Checks a ticket for a relying application.
    pub fn validate_ticket(&self, ticket: &str) -> CmsResult<TicketValidation> {
        let session = self
            .db
            .session_by_ticket(&secret_hash(ticket))?
            .ok_or(CmsError::InvalidTicket)?;
        let caller = self.caller_of(session, CmsError::InvalidTicket, CmsError::InvalidTicket)?;
        Ok(TicketValidation {
            valid: true,
            user: user_view(&caller.user),
            card_serial: caller.session.card_serial.clone(),
            role: caller.selected_role().map(role_view),
            expires_at: caller.session.expires_at,
        })
    }
}

fn session_view(caller: &Caller) -> SessionView {
    SessionView {
        user: user_view(&caller.user),
        card_serial: caller.session.card_serial.clone(),
        roles: caller.roles.iter().map(role_view).collect(),
        selected_role: caller.session.selected_role,
        expires_at: caller.session.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_single_use_short_lived_and_bound_to_a_card() {
        let a = CardSerial([1; 8]);
        let b = CardSerial([2; 8]);
        let store = ChallengeStore::new(Duration::from_secs(60));
        let c = store.issue(a).unwrap();
        assert!(matches!(
            store.redeem(&c, b),
            Err(CmsError::ChallengeMismatch { .. })
        ));
        let c = store.issue(a).unwrap();
        store.redeem(&c, a).unwrap();
        assert!(matches!(
            store.redeem(&c, a),
            Err(CmsError::UnknownChallenge)
        ));
        assert!(matches!(
            store.redeem(&[0; 5], a),
            Err(CmsError::UnknownChallenge)
        ));

        let short = ChallengeStore::new(Duration::from_millis(1));
        let c = short.issue(a).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            short.redeem(&c, a),
            Err(CmsError::ChallengeExpired)
        ));
    }

    #[test]
    fn secrets_are_stored_as_hashes() {
        let token = random_secret();
        assert_eq!(token.len(), 43);
        assert_eq!(secret_hash(&token).len(), 64);
        assert_ne!(secret_hash(&token), *token);
    }
}
