//! The PIN and PUK: VERIFY, the tries-left query, logout, CHANGE REFERENCE DATA and
//! RESET RETRY COUNTER.

use crate::apdu::{Command, StatusWord};
use crate::card::Transaction;
use crate::consts::{ins, key};
use crate::error::Error;
use std::fmt;
use zeroize::Zeroizing;

/// A PIN of 4 to 8 digits, held padded with `FF` to the 8 bytes the card compares.
#[derive(Clone)]
pub struct Pin(Zeroizing<[u8; 8]>);

/// A PUK of 4 to 8 characters, held padded with `FF` to 8 bytes.
#[derive(Clone)]
pub struct Puk(Zeroizing<[u8; 8]>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl fmt::Debug for Puk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Puk(<redacted>)")
    }
}

fn padded(value: &[u8]) -> Zeroizing<[u8; 8]> {
    let mut out = Zeroizing::new([0xFF; 8]);
    out[..value.len()].copy_from_slice(value);
    out
}

impl Pin {
    /// A PIN from what the holder typed: 4 to 8 ASCII digits.
    pub fn new(digits: &str) -> Result<Self, Error> {
        let b = digits.as_bytes();
        if !(4..=8).contains(&b.len()) || !b.iter().all(u8::is_ascii_digit) {
            return Err(Error::BadPinFormat);
        }
        Ok(Self(padded(b)))
    }

    /// The 8 padded bytes sent to the card.
    pub fn padded(&self) -> &[u8; 8] {
        &self.0
    }
}

impl Puk {
    /// A PUK: 4 to 8 bytes of printable ASCII (the virtual card's range; SP 800-73-4 PUKs are
    /// 8 bytes).
    pub fn new(value: &str) -> Result<Self, Error> {
        let b = value.as_bytes();
        if !(4..=8).contains(&b.len()) || !b.iter().all(|c| c.is_ascii_graphic()) {
            return Err(Error::BadPukFormat);
        }
        Ok(Self(padded(b)))
    }

    /// The 8 padded bytes sent to the card.
    pub fn padded(&self) -> &[u8; 8] {
        &self.0
    }
}

/// The PIN's state as an empty VERIFY reports it, without spending a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// The PIN has been verified in the card's current session.
    Verified,
    /// Not verified; `tries_left` attempts remain.
    NotVerified {
        /// Attempts left before the PIN is blocked.
        tries_left: u8,
    },
    /// No attempts left.
    Blocked,
}

/// VERIFY of the PIN.
pub(crate) fn verify_command(pin: &Pin) -> Command {
    Command::new(ins::VERIFY, 0x00, key::PIN, pin.padded().to_vec()).without_le()
}

/// CHANGE REFERENCE DATA: the old and the new value, 8 padded bytes each.
pub(crate) fn change_command(key_ref: u8, old: &[u8; 8], new: &[u8; 8]) -> Command {
    let mut data = Vec::with_capacity(16);
    data.extend_from_slice(old);
    data.extend_from_slice(new);
    Command::new(ins::CHANGE_REFERENCE_DATA, 0x00, key_ref, data).without_le()
}

/// RESET RETRY COUNTER: the PUK then the new PIN.
pub(crate) fn unblock_command(puk: &Puk, new_pin: &Pin) -> Command {
    let mut data = Vec::with_capacity(16);
    data.extend_from_slice(puk.padded());
    data.extend_from_slice(new_pin.padded());
    Command::new(ins::RESET_RETRY_COUNTER, 0x00, key::PIN, data).without_le()
}

/// Reads an empty VERIFY's status word.
pub(crate) fn pin_status_from(sw: StatusWord) -> Result<PinStatus, Error> {
    match sw {
        StatusWord::OK => Ok(PinStatus::Verified),
        StatusWord::AUTH_BLOCKED => Ok(PinStatus::Blocked),
        sw => match sw.counter() {
            Some(0) => Ok(PinStatus::Blocked),
            Some(n) => Ok(PinStatus::NotVerified { tries_left: n }),
            None => Err(crate::error::from_status(sw, Some(key::PIN))),
        },
    }
}

impl Transaction<'_> {
    /// Verifies the PIN. A wrong PIN gives [`Error::WrongPin`] with the tries left, a blocked
    /// one [`Error::PinBlocked`]. Never retried here.
    pub fn verify_pin(&self, pin: &Pin) -> Result<(), Error> {
        self.transmit_ok(&verify_command(pin), Some(key::PIN))
            .map(drop)
    }

    /// The PIN's state, read with an empty VERIFY, which spends no try.
    pub fn pin_status(&self) -> Result<PinStatus, Error> {
        let cmd = Command::new(ins::VERIFY, 0x00, key::PIN, Vec::new()).without_le();
        pin_status_from(self.transmit(&cmd)?.sw)
    }

    /// Clears the PIN's verified state (VERIFY with P1 = FF).
    pub fn logout(&self) -> Result<(), Error> {
        let cmd = Command::new(ins::VERIFY, 0xFF, key::PIN, Vec::new()).without_le();
        self.transmit_ok(&cmd, Some(key::PIN)).map(drop)
    }

    /// Changes the PIN, given the current one.
    pub fn change_pin(&self, old: &Pin, new: &Pin) -> Result<(), Error> {
        let cmd = change_command(key::PIN, old.padded(), new.padded());
        self.transmit_ok(&cmd, Some(key::PIN)).map(drop)
    }

    /// Changes the PUK, given the current one.
    pub fn change_puk(&self, old: &Puk, new: &Puk) -> Result<(), Error> {
        let cmd = change_command(key::PUK, old.padded(), new.padded());
        self.transmit_ok(&cmd, Some(key::PUK)).map(drop)
    }

    /// Unblocks the PIN (RESET RETRY COUNTER) with the PUK and sets `new_pin`.
    /// A wrong PUK gives [`Error::WrongPuk`], a blocked one [`Error::PukBlocked`].
    pub fn unblock_pin(&self, puk: &Puk, new_pin: &Pin) -> Result<(), Error> {
        self.transmit_ok(&unblock_command(puk, new_pin), Some(key::PUK))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_checked_and_padded() {
        assert_eq!(Pin::new("123456").unwrap().padded(), b"123456\xff\xff");
        assert_eq!(Pin::new("12345678").unwrap().padded(), b"12345678");
        for bad in ["123", "123456789", "12a4", "", "1234 "] {
            assert!(matches!(Pin::new(bad), Err(Error::BadPinFormat)), "{bad}");
        }
        assert!(Puk::new("12345678").is_ok());
        assert!(matches!(Puk::new("123"), Err(Error::BadPukFormat)));
        assert!(matches!(Puk::new("12 45678"), Err(Error::BadPukFormat)));
        assert!(!format!("{:?}", Pin::new("123456").unwrap()).contains("123456"));
    }

    #[test]
    fn requests_are_built_as_sp_800_73_says() {
        let pin = Pin::new("1234").unwrap();
        assert_eq!(
            verify_command(&pin).to_bytes(),
            [0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', 0xFF, 0xFF, 0xFF, 0xFF]
        );
        let puk = Puk::new("12345678").unwrap();
        let c = unblock_command(&puk, &pin);
        assert_eq!((c.ins, c.p2, c.data.len()), (0x2C, 0x80, 16));
        assert_eq!(&c.data[..8], b"12345678");
        let c = change_command(key::PUK, puk.padded(), puk.padded());
        assert_eq!(&c.to_bytes()[..5], &[0x00, 0x24, 0x00, 0x81, 16]);
    }

    #[test]
    fn empty_verify_reports_tries_left() {
        assert_eq!(
            pin_status_from(StatusWord::OK).unwrap(),
            PinStatus::Verified
        );
        assert_eq!(
            pin_status_from(StatusWord(0x63C2)).unwrap(),
            PinStatus::NotVerified { tries_left: 2 }
        );
        assert_eq!(
            pin_status_from(StatusWord::AUTH_BLOCKED).unwrap(),
            PinStatus::Blocked
        );
        assert!(matches!(
            pin_status_from(StatusWord(0x6D00)),
            Err(Error::Status(_))
        ));
    }
}
