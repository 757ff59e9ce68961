//! What one read of the card gives: whether the PIV applet answers, its serial, its 9A
//! certificate (present, missing or unreadable) and the passcode's tries — read in one
//! transaction, spending no try.

use crate::card::{blocking, with_card};
use agent_ipc::ErrorObject;
use piv::consts::key;
use piv::{CardSerial, Certificate, PinStatus};

/// The 9A certificate as read.
#[derive(Debug, Clone)]
pub(super) enum CertState {
    /// Present and parsable.
    Present(Box<Certificate>),
    /// Not on the card.
    Missing,
    /// On the card but not readable, and why.
    Unreadable(String),
}

/// What one read of the card gives.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    /// Whether the PIV applet answered SELECT.
    pub(super) piv: bool,
    /// The serial from the CHUID, when readable.
    pub(super) serial: Option<CardSerial>,
    /// The 9A certificate.
    pub(super) certificate: CertState,
    /// The passcode's state, when the card says.
    pub(super) pin: Option<PinStatus>,
}

/// The certificate, when present.
pub(super) fn certificate_of(state: &CertState) -> Option<&Certificate> {
    match state {
        CertState::Present(certificate) => Some(certificate),
        _ => None,
    }
}

/// Whether `e` makes the whole card unreadable (gone, or PC/SC gone), rather than one object.
pub(super) fn card_gone(e: &piv::Error) -> bool {
    matches!(
        e,
        piv::Error::CardRemoved
            | piv::Error::NoReader
            | piv::Error::ServiceUnavailable
            | piv::Error::Pcsc(_)
    )
}

/// One read of the card, in one transaction: SELECT, the CHUID, the 9A certificate and the
/// passcode's tries (an empty VERIFY, which spends none).
pub(super) async fn read_facts(reader: &str) -> Result<Facts, ErrorObject> {
    let reader = reader.to_owned();
    let read = blocking(move || {
        let result = with_card(&reader, |tx| {
            let serial = match tx.card_serial() {
                Ok(serial) => Some(serial),
                Err(e) if card_gone(&e) => return Err(e),
                Err(_) => None,
            };
            let certificate = match tx.read_certificate(key::AUTHENTICATION) {
                Ok(certificate) => CertState::Present(Box::new(certificate)),
                Err(piv::Error::NotFound) => CertState::Missing,
                Err(e) if card_gone(&e) => return Err(e),
                Err(e) => CertState::Unreadable(e.to_string()),
            };
            let pin = match tx.pin_status() {
                Ok(status) => Some(status),
                Err(e) if card_gone(&e) => return Err(e),
                Err(_) => None,
            };
            Ok(Facts {
                piv: true,
                serial,
                certificate,
                pin,
            })
        });
        match result {
            Err(piv::Error::NotPiv) => Ok(Facts {
                piv: false,
                serial: None,
                certificate: CertState::Missing,
                pin: None,
            }),
            other => other,
        }
    })
    .await?;
    Ok(read)
}
