//! The Registration Authority's repair of a holder's card in a second reader, in the officer's
//! session: the PIN unblocked to the holder's new one, the PUK rotated, a new key and its
//! certificate. Journaled before the card is touched; it finishes when the card is next in a
//! second reader with an officer signed in.

use super::failure::Failure;
use super::finish::give_up;
use super::journal::Entry;
use super::{
    ask_new_pin, internal, pin_format, save, unless_cancelled, CardJob, Finished, OperationEngine,
};
use crate::card::{whose_card, with_card};
use agent_ipc::{ErrorObject, OperationKind};
use cms_api::client::CmsClient;
use piv::consts::key;
use piv::{KeyAlgorithm, Pin};

impl OperationEngine {
    /// Repairs the holder's card of `job` for the officer signed in with `officer`: starts (or
    /// resumes) the repair, has the holder choose a new PIN, and walks it to the end. The prompt
    /// ends, and the repair is given up, when `job` is cancelled before the card changed.
    pub(crate) async fn repair(
        &self,
        job: CardJob,
        officer: &CmsClient,
    ) -> Result<Finished, ErrorObject> {
        let ops = self;
        let serial = &job.serial.to_string();
        let reader = job.reader.as_str();
        let entry = match ops
            .journal
            .get(serial)
            .filter(|e| e.kind == OperationKind::Repair)
        {
            Some(entry) => entry,
            None => {
                // The new key takes the algorithm of the card's current one, read before the
                // service opens the operation: a card pulled meanwhile leaves nothing open, and
                // the journal never records a guessed algorithm. Only a card without a usable
                // certificate gets P-256.
                let reader_owned = reader.to_owned();
                let current = tokio::task::spawn_blocking(move || {
                    with_card(&reader_owned, current_algorithm)
                })
                .await
                .map_err(internal)?;
                let algorithm = match current {
                    Ok(algorithm) => algorithm,
                    Err(
                        piv::Error::NotFound
                        | piv::Error::BadCertificate(_)
                        | piv::Error::BadPublicKey(_)
                        | piv::Error::UnsupportedAlgorithm(_)
                        | piv::Error::Malformed(_),
                    ) => KeyAlgorithm::P256,
                    Err(e) => return Err(Failure::from(e).into_error(OperationKind::Repair)),
                };
                let op = officer
                    .start_operation(
                        cms_api::OperationKind::Repair,
                        serial,
                        env!("CARGO_PKG_VERSION"),
                    )
                    .await
                    .map_err(|e| Failure::Cms(e).into_error(OperationKind::Repair))?;
                let entry =
                    Entry::started(OperationKind::Repair, &op.operation, algorithm.into(), None);
                save(&ops.journal, &entry)?;
                entry
            }
        };
        // The holder reads their name in the prompt where the service knows it.
        let holder = match officer.card(serial).await {
            Ok(details) => details.holder_name,
            Err(e) => {
                tracing::debug!(%serial, "no holder's name for the prompt: {e}");
                None
            }
        };
        let whose = whose_card(holder.as_deref(), serial);
        let asked = unless_cancelled(
            ask_new_pin(&ops.pinentry, &whose),
            &job.cancel,
            OperationKind::Repair,
        );
        let pin = match asked.await {
            Ok(pin) => pin,
            Err(e) => {
                // Nothing was done to the card yet, so nothing is left to finish.
                if !entry.card_changed {
                    give_up(&ops.journal, &entry, officer, false).await;
                }
                return Err(e);
            }
        };
        let pin = Pin::new(&pin).map_err(|_| pin_format())?;
        self.finish(job, entry, pin, Some(officer.clone()), None)
            .await
    }
}

/// The algorithm of the card's current 9A key, from its certificate.
fn current_algorithm(tx: &piv::Transaction<'_>) -> Result<KeyAlgorithm, piv::Error> {
    tx.read_certificate(key::AUTHENTICATION)?
        .public_key()?
        .algorithm()
}
