//! The walk on the card: one card transaction in which the service's view of the operation is
//! read, the PIN verified, the card compared with it, and only what is missing done — the
//! repair's PIN and PUK, the 9B management key relayed to the service, a new key, its
//! certificate, the confirmation. The PIN and the management key are logged out on every path.

use super::failure::{bad_puk, Failure};
use super::finish::Run;
use super::journal::{Entry, Journal, PukRotation};
use super::save;
use crate::card::with_card;
use agent_ipc::OperationStep as Step;
use agent_ipc::{ErrorCode, ErrorObject, OperationKind};
use cms_api::client::{CmsClient, RelayResponder};
use cms_api::protocol::{b64, confirm_message, OperationView};
use cms_api::OperationState;
use piv::consts::key;
use piv::{Certificate, KeyAlgorithm, Pin, Puk};
use tokio::runtime::Handle;

/// Everything one walk needs, owned, so it can move to the blocking thread that holds the card
/// and come back with the journal entry as the walk left it.
pub(super) struct WalkPlan {
    /// The run: card, operation, where steps go, what cancels it.
    pub(super) run: Run,
    /// The journal entry, updated as the walk goes.
    pub(super) entry: Entry,
    /// The holder's PIN (a repair's new one).
    pub(super) pin: Pin,
    /// The session the operation is walked in (the renewal's token, or the officer's).
    pub(super) client: CmsClient,
    /// Where the service said the operation is, when this run just started it.
    pub(super) started: Option<OperationView>,
    /// Where the entry is saved.
    pub(super) journal: Journal,
    /// The runtime the service calls are made on.
    pub(super) rt: Handle,
}

impl WalkPlan {
    /// The card part of a run, in one card transaction (the management-key relay must share it
    /// with the writes it unlocks). Returns the certificate the card holds at the end; the
    /// entry is left as the walk left it. The PIN and the management key are logged out on
    /// every path.
    pub(super) fn on_card(&mut self) -> Result<Certificate, Failure> {
        let run = &self.run;
        let started = self.started.take();
        with_card(&run.reader, |tx| {
            let mut walk = Walk {
                run,
                entry: &mut self.entry,
                tx,
                pin: &self.pin,
                client: &self.client,
                journal: &self.journal,
                rt: &self.rt,
                unlocked: None,
            };
            let result = walk.walk(started);
            walk.sign_off();
            result
        })
    }
}

/// One walk of an operation on the card, in one transaction.
struct Walk<'a, 'tx> {
    run: &'a Run,
    entry: &'a mut Entry,
    tx: &'a piv::Transaction<'tx>,
    pin: &'a Pin,
    client: &'a CmsClient,
    journal: &'a Journal,
    rt: &'a Handle,
    /// The algorithm of the management key, once it was authenticated in this transaction.
    unlocked: Option<u8>,
}

impl Walk<'_, '_> {
    /// The walk itself: from where the service says the operation is (`started`, when this
    /// run just started it), to its confirmation.
    fn walk(&mut self, started: Option<OperationView>) -> Result<Certificate, Failure> {
        if self.run.cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        let mut op = match started {
            Some(op) => op,
            None => self
                .rt
                .block_on(self.client.operation(&self.run.operation))?,
        };
        if self.entry.kind == OperationKind::Repair && op.state != OperationState::Completed {
            self.set_pin()?;
        }
        self.tx.verify_pin(self.pin)?;
        // What the card holds matters only once the service issued a certificate: whether it
        // was written already.
        let current = match op.state {
            OperationState::Started => None,
            _ => self.tx.read_certificate(key::AUTHENTICATION).ok(),
        };
        match op.state {
            OperationState::Started | OperationState::CertificateIssued => {}
            OperationState::Completed => {
                return current.ok_or(Failure::Card(piv::Error::NotFound));
            }
            OperationState::Aborted => {
                return Err(Failure::Other(ErrorObject::new(
                    ErrorCode::CmsRefused,
                    "the service aborted the operation",
                )));
            }
        }
        let issued = issued_certificate(&op)?;
        let written = matches!((&current, &issued), (Some(c), Some(i)) if c.der() == i.der());
        let certificate = match issued {
            Some(issued) if written => issued,
            Some(issued) if self.run.kind == OperationKind::Restore => {
                self.unlock(&op)?;
                self.changing()?;
                self.tx.write_certificate(key::AUTHENTICATION, &issued)?;
                self.run.step(Step::CertificateWritten);
                issued
            }
            _ => {
                self.unlock(&op)?;
                self.changing()?;
                let algorithm = KeyAlgorithm::from(self.entry.algorithm);
                let public = self.tx.generate_key(key::AUTHENTICATION, algorithm)?;
                self.run.step(Step::KeyGenerated);
                let csr = self.tx.certificate_request(
                    key::AUTHENTICATION,
                    &public,
                    &format!("CN={}", self.run.serial),
                )?;
                op = self
                    .rt
                    .block_on(self.client.submit_csr(&self.run.operation, &csr))?;
                let certificate = issued_certificate(&op)?.ok_or_else(|| {
                    Failure::Other(ErrorObject::new(
                        ErrorCode::CmsRefused,
                        "the service answered the certificate request without a certificate",
                    ))
                })?;
                if certificate.public_key()? != public {
                    return Err(Failure::Other(ErrorObject::new(
                        ErrorCode::CmsRefused,
                        "the service's certificate is not for the card's new key",
                    )));
                }
                self.run.step(Step::CertificateIssued);
                self.tx
                    .write_certificate(key::AUTHENTICATION, &certificate)?;
                self.run.step(Step::CertificateWritten);
                certificate
            }
        };
        let challenge = op
            .confirm_challenge
            .as_deref()
            .and_then(b64::decode_url)
            .ok_or_else(|| {
                Failure::Other(ErrorObject::new(
                    ErrorCode::CmsRefused,
                    "the service gave no confirmation challenge",
                ))
            })?;
        let algorithm = certificate.public_key()?.algorithm()?;
        let signature = self.tx.sign(
            key::AUTHENTICATION,
            algorithm,
            &confirm_message(&self.run.operation, &challenge),
        )?;
        self.rt
            .block_on(self.client.confirm(&self.run.operation, &signature))?;
        self.run.step(Step::Confirmed);
        Ok(certificate)
    }

    /// Journals that the card is about to change, before the first command that changes it.
    fn changing(&mut self) -> Result<(), Failure> {
        if self.entry.card_changed {
            return Ok(());
        }
        self.entry.card_changed = true;
        // A restore is not journaled: it writes back what the card had.
        if self.entry.kind != OperationKind::Restore {
            save(self.journal, self.entry).map_err(Failure::Other)?;
        }
        Ok(())
    }

    /// Authenticates the card's management key through the service's relay, in the algorithm
    /// the service gave the card, unless cancelled.
    fn unlock(&mut self, op: &OperationView) -> Result<(), Failure> {
        if self.run.cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        let mut relay = RelayResponder::new(self.client.clone(), op, self.rt.clone());
        self.unlocked = Some(op.management_algorithm);
        self.tx.authenticate_management_key(&mut relay)?;
        self.run.step(Step::ManagementKey);
        Ok(())
    }

    /// Logs the PIN and the management key out, whatever the walk's outcome; a card already
    /// gone needs nothing.
    fn sign_off(&self) {
        if let Err(e) = self.tx.logout() {
            tracing::debug!(serial = %self.run.serial, "logging the PIN out: {e}");
        }
        if let Some(algorithm) = self.unlocked {
            if let Err(e) = self.tx.end_management_authentication(algorithm) {
                tracing::debug!(serial = %self.run.serial, "logging the management key out: {e}");
            }
        }
    }

    /// A repair's PIN part: the PIN unblocked to the holder's new one with the PUK the card
    /// holds, then the PUK rotated to the service's next one (journaled around the change, so
    /// an interrupted rotation is tried both ways; a wrong try is restored by the right one).
    fn set_pin(&mut self) -> Result<(), Failure> {
        let release = self
            .rt
            .block_on(self.client.release_puk(&self.run.operation))?;
        let puk = Puk::new(&release.puk).map_err(|_| bad_puk())?;
        let next = Puk::new(&release.next_puk).map_err(|_| bad_puk())?;
        let order: &[(&Puk, bool)] = match self.entry.puk {
            PukRotation::Old => &[(&puk, false)],
            PukRotation::Sent => &[(&next, true), (&puk, false)],
            PukRotation::Done => &[(&next, true)],
        };
        self.changing()?;
        let mut rotated = None;
        let mut last = None;
        for (candidate, is_next) in order {
            match self.tx.unblock_pin(candidate, self.pin) {
                Ok(()) => {
                    rotated = Some(*is_next);
                    break;
                }
                Err(e @ piv::Error::WrongPuk { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        let Some(rotated) = rotated else {
            return Err(last.unwrap_or(piv::Error::NotFound).into());
        };
        self.run.step(Step::PinSet);
        if !rotated {
            self.entry.puk = PukRotation::Sent;
            save(self.journal, self.entry).map_err(Failure::Other)?;
            self.tx.change_puk(&puk, &next)?;
        }
        self.entry.puk = PukRotation::Done;
        save(self.journal, self.entry).map_err(Failure::Other)?;
        self.run.step(Step::PukRotated);
        Ok(())
    }
}

/// The operation's certificate, parsed.
fn issued_certificate(op: &OperationView) -> Result<Option<Certificate>, Failure> {
    let Some(text) = op.certificate.as_deref() else {
        return Ok(None);
    };
    let der = b64::decode(text).ok_or_else(|| {
        Failure::Other(ErrorObject::new(
            ErrorCode::CmsRefused,
            "the service's certificate is not base64",
        ))
    })?;
    Ok(Some(Certificate::from_der(&der)?))
}
