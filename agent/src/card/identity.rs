//! Who a card is: type, serial, authentication certificate and its expiry.

use piv::CardSerial;

/// A card as read at insertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    /// The reader it is in.
    pub reader: String,
    /// Its ATR.
    pub atr: Vec<u8>,
    /// Its type, from the ATR table.
    pub card_type: &'static str,
    /// Its serial, from the CHUID, when readable.
    pub serial: Option<CardSerial>,
    /// Whether the PIV applet answered.
    pub piv: bool,
    /// The 9A authentication certificate, when present and parsable.
    pub certificate: Option<CardCertificate>,
}

/// The card's 9A authentication certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCertificate {
    /// DER.
    pub der: Vec<u8>,
    /// The holder (the subject's common name, else the whole subject).
    pub holder: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, to notice a changed certificate.
    pub fingerprint: [u8; 32],
}

/// Reads the identity of the card in `reader` (connect, one transaction, LeaveCard).
/// A card without the PIV applet is an identity with `piv: false`, not an error.
pub fn identify(ctx: &pcsc::Context, reader: &str) -> Result<CardIdentity, piv::Error> {
    let _ = (ctx, reader);
    unimplemented!("card helper")
}

impl CardIdentity {
    /// The card as the socket API shows it, with expiry counted from `now_unix`.
    pub fn status(&self, now_unix: i64) -> agent_ipc::CardStatus {
        let _ = now_unix;
        unimplemented!("card helper")
    }
}
