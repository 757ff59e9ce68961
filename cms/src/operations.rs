//! Self-renewal, RA repair and restoration of a lost certificate object: one resumable state
//! machine per card (`started → certificate_issued → completed`), every step idempotent, so an
//! agent that was interrupted at any point asks for the operation again and carries on.
//!
//! Steps: start (permissions, version policy, card state) · management-key relay (the service
//! answers the card's 9B witness; the key never leaves it) · CSR → certificate · PUK release
//! (repair only) · confirm (the card signs with its new key). A restore starts with the card's
//! current certificate as the operation's (no new key, no CSR): the agent writes it back and
//! confirms with the key the card still holds.

use crate::ca::CertificateAuthority;
use crate::custody::RelayError;
use crate::dates;
use crate::db::{CardRecord, CertificateRecord, CertificateStatus, OperationRecord};
use crate::error::{CmsError, CmsResult};
use crate::fields::{decode_base64, parse_serial};
use crate::policy::AgentVersion;
use crate::service::{Caller, Cms};
use cms_api::protocol::{
    self, b64, ChallengeAnswerRequest, ConfirmRequest, CsrRequest, OperationStarted, OperationView,
    PukRelease, RelayResult, StartOperationRequest, WitnessAnswerView, WitnessRequest,
};
use cms_api::RA_ACTIVITY;
use cms_api::{OperationKind, OperationState};
use piv::CardSerial;
use rand::RngCore;
use zeroize::Zeroizing;

/// Slack for workstation clocks behind the service's: a new certificate is valid from this
/// many seconds ago.
const CLOCK_SKEW: i64 = 300;

fn kind_of(text: &str) -> CmsResult<OperationKind> {
    text.parse()
        .map_err(|e: cms_api::operation::UnknownOperationKind| {
            CmsError::InvalidField(e.to_string())
        })
}

fn wrong_state(op: &OperationRecord, step: &'static str) -> CmsError {
    CmsError::WrongOperationState {
        id: op.id.clone(),
        state: op.state,
        step,
    }
}

fn step_name(kind: OperationKind, step: &str) -> &'static str {
    match (kind, step) {
        (OperationKind::Renew, "start") => "renew.start",
        (OperationKind::Renew, "certificate") => "renew.certificate",
        (OperationKind::Renew, "confirm") => "renew.confirm",
        (OperationKind::Repair, "start") => "repair.start",
        (OperationKind::Repair, "certificate") => "repair.certificate",
        (OperationKind::Repair, "confirm") => "repair.confirm",
        (OperationKind::Restore, "start") => "restore.start",
        (OperationKind::Restore, "confirm") => "restore.confirm",
        (OperationKind::Renew, "abort") => "renew.abort",
        (OperationKind::Repair, "abort") => "repair.abort",
        (OperationKind::Restore, "abort") => "restore.abort",
        _ => "operation",
    }
}

impl Cms {
    fn check_agent(&self, version: &str) -> CmsResult<()> {
        let parsed: AgentVersion = version
            .parse()
            .map_err(|e: crate::policy::BadVersion| CmsError::InvalidField(e.to_string()))?;
        if self.policy.allows_agent(&parsed) {
            Ok(())
        } else {
            Err(CmsError::AgentVersionBlocked {
                version: parsed.to_string(),
                minimum: self.policy.minimum_agent_version.to_string(),
            })
        }
    }

    /// Whether `caller` may work on an operation of `kind` on `card`.
    fn authorise(&self, caller: &Caller, kind: OperationKind, card: &CardRecord) -> CmsResult<()> {
        match kind {
            OperationKind::Renew | OperationKind::Restore if card.holder_id != caller.user.id => {
                Err(CmsError::Forbidden(format!(
                    "only the card holder can {} card {}",
                    kind.as_str(),
                    card.serial
                )))
            }
            OperationKind::Renew | OperationKind::Restore => Ok(()),
            OperationKind::Repair => {
                caller.require_activity(RA_ACTIVITY)?;
                if card.holder_id == caller.user.id {
                    return Err(CmsError::OwnCard);
                }
                Ok(())
            }
        }
    }

    /// Starts a renewal, repair or restore, or resumes the one of that kind already open for
    /// the card. A restore left open changes nothing, so any other operation takes it over.
    /// A renewal comes with its own token ([`Cms::operation_token`]).
    pub fn start_operation(
        &self,
        caller: &Caller,
        request: &StartOperationRequest,
    ) -> CmsResult<OperationStarted> {
        let operation = self.open_or_resume(caller, request)?;
        let operation_token = match operation.kind {
            OperationKind::Renew => Some(self.operation_token(caller, &operation.id)?),
            OperationKind::Repair | OperationKind::Restore => None,
        };
        Ok(OperationStarted {
            operation,
            operation_token,
        })
    }

    /// [`Cms::start_operation`] without the token.
    fn open_or_resume(
        &self,
        caller: &Caller,
        request: &StartOperationRequest,
    ) -> CmsResult<OperationView> {
        let kind = kind_of(&request.kind)?;
        let serial = parse_serial(&request.serial)?.to_string();
        let card = self.active_card(&serial)?;
        self.authorise(caller, kind, &card)?;
        self.check_agent(&request.agent_version)?;
        let now = dates::now();
        let open = self.db.open_operation(&serial)?;
        if let Some(op) = &open {
            if op.kind == kind {
                return self.view(op, true);
            }
        }
        match kind {
            OperationKind::Renew => {
                if card.is_expired(now) {
                    return Err(CmsError::CardExpired {
                        serial,
                        expired_on: card.certs_expire.map(dates::iso_date).unwrap_or_default(),
                    });
                }
                if card.is_full() {
                    return Err(CmsError::CardFull(serial));
                }
                in_progress(open.as_ref())?;
            }
            OperationKind::Repair => {
                // A renewal left open may have replaced the card's key without the card ever
                // getting its certificate: such a card is repairable too, not a dead end. Only
                // one left alone for the policy's age: a renewal under way is not a way to a
                // healthy card's PUK.
                let stalled_age =
                    i64::try_from(self.policy.stalled_renewal_age.as_secs()).unwrap_or(i64::MAX);
                let stalled_renewal = open.as_ref().is_some_and(|op| {
                    op.kind == OperationKind::Renew
                        && now.saturating_sub(op.updated_at) >= stalled_age
                });
                if !card.is_expired(now) && !card.is_full() && !stalled_renewal {
                    return Err(CmsError::CardNotRepairable {
                        serial,
                        expires_on: card.certs_expire.map(dates::iso_date).unwrap_or_default(),
                    });
                }
            }
            OperationKind::Restore => {
                if card.is_expired(now) {
                    return Err(CmsError::CardExpired {
                        serial,
                        expired_on: card.certs_expire.map(dates::iso_date).unwrap_or_default(),
                    });
                }
                in_progress(open.as_ref())?;
            }
        }
        // A repair takes over a renewal left open on a card that has since expired; any
        // operation takes over a restore left open.
        let replaced = open.map(|op| op.id);
        let mut op = OperationRecord {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            card_serial: serial.clone(),
            actor_id: caller.user.id.clone(),
            state: OperationState::Started,
            agent_version: Some(request.agent_version.clone()),
            created_at: now,
            updated_at: now,
            pending_certificate: None,
            confirm_challenge: None,
            relay_count: 0,
            puk_released: false,
        };
        if kind == OperationKind::Restore {
            // The card's current certificate is the operation's from the start.
            let active = self
                .db
                .active_certificate(&serial)?
                .ok_or_else(|| CmsError::NoActiveCertificate(serial.clone()))?;
            op.state = OperationState::CertificateIssued;
            op.pending_certificate = Some(active.serial);
            op.confirm_challenge = Some(confirm_challenge().to_vec());
        }
        let detail = match &replaced {
            Some(old) => format!("operation {} (replaces {old})", op.id),
            None => format!("operation {}", op.id),
        };
        let added = self.db.add_operation(
            &op,
            replaced.as_deref(),
            &caller.audit(step_name(kind, "start"), Some(&serial), detail),
        );
        match added {
            Ok(()) => self.view(&op, false),
            // Another request opened one first: resume it, or say it is there.
            Err(e) if crate::db::Database::is_open_operation_conflict(&e) => {
                match self.db.open_operation(&serial)? {
                    Some(other) if other.kind == kind => self.view(&other, true),
                    Some(other) => Err(CmsError::OperationInProgress {
                        kind: other.kind,
                        id: other.id,
                    }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// An operation the caller may work on, with its card.
    fn authorised_operation(
        &self,
        caller: &Caller,
        id: &str,
    ) -> CmsResult<(OperationRecord, CardRecord)> {
        caller.require_operation(id)?;
        let op = self
            .db
            .operation(id)?
            .ok_or_else(|| CmsError::UnknownOperation(id.to_owned()))?;
        let card = self
            .db
            .card(&op.card_serial)?
            .ok_or_else(|| CmsError::UnknownCard(op.card_serial.clone()))?;
        self.authorise(caller, op.kind, &card)?;
        Ok((op, card))
    }

    fn open_operation(
        &self,
        caller: &Caller,
        id: &str,
        step: &'static str,
    ) -> CmsResult<(OperationRecord, CardRecord)> {
        let (op, card) = self.authorised_operation(caller, id)?;
        if !op.state.is_open() {
            return Err(wrong_state(&op, step));
        }
        Ok((op, card))
    }

    /// An operation, for resuming it.
    pub fn operation(&self, caller: &Caller, id: &str) -> CmsResult<OperationView> {
        let (op, _) = self.authorised_operation(caller, id)?;
        self.view(&op, true)
    }

    /// Step 1 of the relayed 9B authentication: decrypts the card's witness with the card's
    /// management key and returns it with the service's challenge for the card.
    pub fn relay_witness(
        &self,
        caller: &Caller,
        id: &str,
        request: &WitnessRequest,
    ) -> CmsResult<WitnessAnswerView> {
        let (op, card) = self.open_operation(caller, id, "management-key relay")?;
        let witness = decode_base64("witness", &request.witness)?;
        if op.relay_count >= self.policy.max_relays_per_operation {
            return Err(CmsError::RelayLimit(self.policy.max_relays_per_operation));
        }
        let serial: CardSerial = parse_serial(&card.serial)?;
        let algorithm = card.management_algorithm;
        if request.algorithm != algorithm.id() {
            return Err(CmsError::InvalidField(format!(
                "card {}'s management key is {algorithm} (algorithm {}), not algorithm {}",
                card.serial,
                algorithm.id(),
                request.algorithm
            )));
        }
        let answer = self
            .relays
            .answer_witness(
                &op.id,
                self.custody.management_key(serial, algorithm),
                request.algorithm,
                &witness,
            )
            .map_err(|e| CmsError::InvalidField(e.to_string()))?;
        self.db.count_relay(&op.id)?;
        Ok(WitnessAnswerView {
            decrypted_witness: Zeroizing::new(b64::encode(&answer.decrypted_witness)),
            challenge: b64::encode(&answer.challenge),
        })
    }

    /// Step 2 of the relayed 9B authentication: checks the card's answer to the challenge.
    pub fn relay_response(
        &self,
        caller: &Caller,
        id: &str,
        request: &ChallengeAnswerRequest,
    ) -> CmsResult<RelayResult> {
        let (op, _) = self.open_operation(caller, id, "management-key relay")?;
        let response = decode_base64("response", &request.response)?;
        match self.relays.check_response(&op.id, &response) {
            Ok(()) => Ok(RelayResult {
                authenticated: true,
            }),
            Err(RelayError::Rejected) => Err(CmsError::ManagementKeyRejected),
            Err(RelayError::NothingPending) => Err(CmsError::NoRelayInProgress),
            Err(RelayError::BadWitness(m)) => Err(CmsError::InvalidField(m)),
        }
    }

    /// Certifies the new key of the card from a request the card signed. The same key again
    /// gets the same certificate; another key gets a new one and supersedes the first.
    pub fn submit_csr(
        &self,
        caller: &Caller,
        id: &str,
        request: &CsrRequest,
    ) -> CmsResult<OperationView> {
        let (op, card) = self.open_operation(caller, id, "certificate request")?;
        if op.kind == OperationKind::Restore {
            return Err(CmsError::Forbidden(
                "a restore writes the card's current certificate back: it issues none".into(),
            ));
        }
        let der = decode_base64("csr", &request.csr)?;
        let verified =
            piv::csr::verify_request(&der).map_err(|e| CmsError::BadCsr(e.to_string()))?;
        if let Some(pending) = self.pending_certificate(&op)? {
            if pending.spki == verified.spki_der {
                return self.view(&op, true);
            }
        }
        let active_key_reused = self
            .active_certificate_spki(&card.serial)?
            .is_some_and(|spki| spki == verified.spki_der);
        if active_key_reused {
            return Err(CmsError::BadCsr(
                "the request is for the card's current key: generate a new key on the card".into(),
            ));
        }
        let now = dates::now();
        let not_after = now + self.policy.certificate_days * dates::DAY;
        let issued = self.sign_card_key(
            &card.holder_id,
            &verified.spki_der,
            now - CLOCK_SKEW,
            not_after,
        )?;
        let record = CertificateRecord {
            serial: issued.serial.clone(),
            card_serial: card.serial.clone(),
            operation_id: Some(op.id.clone()),
            spki: verified.spki_der,
            der: issued.der,
            not_before: now - CLOCK_SKEW,
            not_after,
            status: CertificateStatus::Pending,
        };
        let challenge = confirm_challenge();
        let written = self.db.issue_in_operation(
            &op.id,
            &record,
            &challenge,
            now,
            &caller.audit(
                step_name(op.kind, "certificate"),
                Some(&card.serial),
                format!(
                    "operation {}: certificate {} until {}",
                    op.id,
                    record.serial,
                    dates::iso_date(not_after)
                ),
            ),
        )?;
        let op = self.reread(&op)?;
        if !written {
            return Err(wrong_state(&op, "certificate request"));
        }
        self.view(&op, false)
    }

    /// Completes the operation once the card proves it holds the new key (a signature over
    /// [`protocol::confirm_message`]). Confirming a completed operation again answers with it.
    pub fn confirm(
        &self,
        caller: &Caller,
        id: &str,
        request: &ConfirmRequest,
    ) -> CmsResult<OperationView> {
        let (op, card) = self.authorised_operation(caller, id)?;
        if op.state == OperationState::Completed {
            return self.view(&op, true);
        }
        if op.state != OperationState::CertificateIssued {
            return Err(wrong_state(&op, "confirmation"));
        }
        let signature = decode_base64("signature", &request.signature)?;
        let pending = self
            .pending_certificate(&op)?
            .ok_or_else(|| wrong_state(&op, "confirmation"))?;
        let challenge = op.confirm_challenge.clone().unwrap_or_default();
        let cert = piv::Certificate::from_der(&pending.der)
            .map_err(|e| CmsError::Internal(e.to_string()))?;
        cert.verify(&protocol::confirm_message(&op.id, &challenge), &signature)
            .map_err(|_| CmsError::BadSignature)?;
        let completed = self.db.complete_operation(
            &op,
            &pending,
            dates::now(),
            &caller.audit(
                step_name(op.kind, "confirm"),
                Some(&card.serial),
                format!(
                    "operation {}: certificate {} active until {}",
                    op.id,
                    pending.serial,
                    dates::iso_date(CertificateAuthority::not_after(&cert))
                ),
            ),
        )?;
        self.finished(&op, completed, OperationState::Completed, "confirmation")
    }

    /// Aborts an operation the agent gave up before it changed the card (it is still
    /// `started`), so nothing of it is left open. Aborting an aborted operation again answers
    /// with it; one that has gone further is refused (`wrong_operation_state`): the card may
    /// be between two keys, and only finishing the walk (or an RA repair) mends it.
    pub fn abort_operation(&self, caller: &Caller, id: &str) -> CmsResult<OperationView> {
        let (op, card) = self.authorised_operation(caller, id)?;
        if op.state == OperationState::Aborted {
            return self.view(&op, true);
        }
        let aborted = self.db.abort_started_operation(
            &op.id,
            dates::now(),
            &caller.audit(
                step_name(op.kind, "abort"),
                Some(&card.serial),
                format!("operation {} given up before the card changed", op.id),
            ),
        )?;
        self.finished(&op, aborted, OperationState::Aborted, "abort")
    }

    /// Releases the card's PUK to an open repair, so the holder can set a new PIN, with the
    /// PUK the card must be changed to: once the repair is confirmed the released PUK is no
    /// longer the card's.
    pub fn release_puk(&self, caller: &Caller, id: &str) -> CmsResult<PukRelease> {
        let (op, card) = self.open_operation(caller, id, "PUK release")?;
        if op.kind != OperationKind::Repair {
            return Err(CmsError::Forbidden(
                "a PUK is released only inside a Registration Authority repair".into(),
            ));
        }
        let serial = parse_serial(&card.serial)?;
        let puk = self.custody.puk(serial, card.puk_generation);
        let next_puk = self.custody.puk(serial, card.puk_generation + 1);
        self.db.release_puk(
            &op.id,
            dates::now(),
            &caller.audit(
                "repair.puk_release",
                Some(&card.serial),
                format!("operation {}", op.id),
            ),
        )?;
        Ok(PukRelease { puk, next_puk })
    }

    fn pending_certificate(&self, op: &OperationRecord) -> CmsResult<Option<CertificateRecord>> {
        match &op.pending_certificate {
            Some(serial) => self.db.certificate(serial),
            None => Ok(None),
        }
    }

    fn active_certificate_spki(&self, card_serial: &str) -> CmsResult<Option<Vec<u8>>> {
        Ok(self.db.active_certificate(card_serial)?.map(|c| c.spki))
    }

    /// `op` as the database holds it now.
    /// The view of `op` after a step meant to end it in `end`. A step that did not go ahead
    /// found the operation already there (a repeated request), answered as resumed; any other
    /// state refuses the step.
    fn finished(
        &self,
        op: &OperationRecord,
        went_ahead: bool,
        end: OperationState,
        step: &'static str,
    ) -> CmsResult<OperationView> {
        let op = self.reread(op)?;
        if !went_ahead && op.state != end {
            return Err(wrong_state(&op, step));
        }
        self.view(&op, !went_ahead)
    }

    fn reread(&self, op: &OperationRecord) -> CmsResult<OperationRecord> {
        self.db
            .operation(&op.id)?
            .ok_or_else(|| CmsError::UnknownOperation(op.id.clone()))
    }

    fn view(&self, op: &OperationRecord, resumed: bool) -> CmsResult<OperationView> {
        let certificate = self.pending_certificate(op)?.map(|c| b64::encode(&c.der));
        let card = self
            .db
            .card(&op.card_serial)?
            .ok_or_else(|| CmsError::UnknownCard(op.card_serial.clone()))?;
        Ok(OperationView {
            id: op.id.clone(),
            kind: op.kind,
            serial: op.card_serial.clone(),
            state: op.state,
            resumed,
            certificate,
            confirm_challenge: op.confirm_challenge.as_deref().map(b64::encode_url),
            puk_released: op.puk_released,
            management_algorithm: card.management_algorithm.id(),
            created_at: op.created_at,
            updated_at: op.updated_at,
        })
    }
}

/// Refuses to start an operation while another one that changes the card is open.
fn in_progress(open: Option<&OperationRecord>) -> CmsResult<()> {
    match open {
        Some(op) if op.kind != OperationKind::Restore => Err(CmsError::OperationInProgress {
            kind: op.kind,
            id: op.id.clone(),
        }),
        _ => Ok(()),
    }
}

/// The random bytes the card signs to confirm an operation.
fn confirm_challenge() -> [u8; 32] {
    let mut challenge = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    challenge
}
