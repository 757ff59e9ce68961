//! Sample messages for the tests of the agent, `iactl`, the tray and this crate (feature
//! `fixtures`): one card and the status around it, written once.

use crate::{CardStatus, PcscStatus, ReaderStatus, SessionStatus, Status};

/// The reader the sample card sits in.
pub const READER: &str = "Virtual PCD 00 00";

/// Alex Example's NHS CIS card, 40 days before its certificates expire on 2027-01-01.
pub fn card() -> CardStatus {
    CardStatus {
        serial: Some("0123456789ABCDEF".into()),
        card_type: "NHS CIS".into(),
        atr: "3B00".into(),
        piv: true,
        holder: Some("Alex Example".into()),
        holder_id: Some("8c6f4f38-3d0e-4b59-9a52-2b1f0f0c6a11".into()),
        expires_on: Some("2027-01-01".into()),
        days_left: Some(40),
        expired: false,
    }
}

/// An agent `0.1.0` whose smartcard service runs, with these readers and this session.
pub fn status(readers: Vec<ReaderStatus>, session: SessionStatus) -> Status {
    Status {
        agent_version: "0.1.0".into(),
        pcsc: PcscStatus {
            available: true,
            message: None,
        },
        readers,
        session,
    }
}
