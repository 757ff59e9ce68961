//! PIN and PUK: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER.

use super::{Applet, Outcome};
use crate::state::{valid_secret, MAX_TRIES};
use piv::apdu::{Command, StatusWord};
use piv::consts::key;
use zeroize::Zeroizing;

/// Length of a PIN or PUK block on the wire (padded with FF).
const BLOCK: usize = 8;

/// Which reference a command is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reference {
    Pin,
    Puk,
}

/// The value of an FF-padded 8-byte block, if it is well formed.
/// The two 8-byte blocks of a CHANGE REFERENCE DATA or RESET RETRY COUNTER with P1 00: the
/// secret that allows the change as sent, and the new value unpadded.
fn current_and_new(cmd: &Command) -> Result<(&[u8], Zeroizing<Vec<u8>>), StatusWord> {
    if cmd.p1 != 0 {
        return Err(StatusWord::WRONG_P1P2);
    }
    if cmd.data.len() != 2 * BLOCK {
        return Err(StatusWord::WRONG_DATA);
    }
    let (current, new) = cmd.data.split_at(BLOCK);
    let new = unpad(new).ok_or(StatusWord::WRONG_DATA)?;
    Ok((current, new))
}

fn unpad(block: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let end = block.iter().position(|&b| b == 0xFF).unwrap_or(block.len());
    if block[end..].iter().any(|&b| b != 0xFF) {
        return None;
    }
    let value = Zeroizing::new(block[..end].to_vec());
    valid_secret(&value).then_some(value)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Applet {
    fn tries_left(&self, r: Reference) -> u8 {
        match r {
            Reference::Pin => self.state.pin_tries_left,
            Reference::Puk => self.state.puk_tries_left,
        }
    }

    fn set_tries_left(&mut self, r: Reference, n: u8) {
        let slot = match r {
            Reference::Pin => &mut self.state.pin_tries_left,
            Reference::Puk => &mut self.state.puk_tries_left,
        };
        if *slot != n {
            *slot = n;
            self.changed = true;
        }
    }

    /// Checks `block` against the reference: resets the counter on success, spends a try and
    /// answers `63Cx` on failure, `6983` when blocked.
    fn check(&mut self, r: Reference, block: &[u8]) -> Result<(), StatusWord> {
        let tries = self.tries_left(r);
        if tries == 0 {
            return Err(StatusWord::AUTH_BLOCKED);
        }
        let stored = match r {
            Reference::Pin => self.state.pin.as_bytes(),
            Reference::Puk => self.state.puk.as_bytes(),
        };
        let mut padded = Zeroizing::new([0xFFu8; BLOCK]);
        padded[..stored.len().min(BLOCK)].copy_from_slice(&stored[..stored.len().min(BLOCK)]);
        if same(&padded[..], block) {
            self.set_tries_left(r, MAX_TRIES);
            Ok(())
        } else {
            let left = tries - 1;
            self.set_tries_left(r, left);
            if r == Reference::Pin {
                self.pin_verified = false;
            }
            Err(StatusWord::tries_left(left))
        }
    }

    fn set_secret(&mut self, r: Reference, value: &[u8]) -> Result<(), StatusWord> {
        let text = std::str::from_utf8(value).map_err(|_| StatusWord::WRONG_DATA)?;
        let text = Zeroizing::new(text.to_owned());
        match r {
            Reference::Pin => self.state.pin = text,
            Reference::Puk => self.state.puk = text,
        }
        self.changed = true;
        Ok(())
    }

    /// VERIFY (`00 20 00 80`): check the PIN; empty data asks for the tries left; P1 FF logs
    /// out.
    pub(super) fn verify(&mut self, cmd: &Command) -> Outcome {
        if cmd.p2 != key::PIN {
            return Err(StatusWord::REFERENCE_NOT_FOUND);
        }
        match cmd.p1 {
            0xFF => {
                if !cmd.data.is_empty() {
                    return Err(StatusWord::WRONG_LENGTH);
                }
                self.pin_verified = false;
                Ok(Vec::new())
            }
            0x00 if cmd.data.is_empty() => match self.state.pin_tries_left {
                0 => Err(StatusWord::AUTH_BLOCKED),
                _ if self.pin_verified => Ok(Vec::new()),
                n => Err(StatusWord::tries_left(n)),
            },
            0x00 => {
                if cmd.data.len() != BLOCK {
                    return Err(StatusWord::WRONG_DATA);
                }
                self.check(Reference::Pin, &cmd.data)?;
                self.pin_verified = true;
                Ok(Vec::new())
            }
            _ => Err(StatusWord::WRONG_P1P2),
        }
    }

    /// CHANGE REFERENCE DATA (`00 24 00 80|81`): old value then new value, 8 bytes each.
    pub(super) fn change_reference_data(&mut self, cmd: &Command) -> Outcome {
        let r = match cmd.p2 {
            key::PIN => Reference::Pin,
            key::PUK => Reference::Puk,
            _ => return Err(StatusWord::REFERENCE_NOT_FOUND),
        };
        let (old, new) = current_and_new(cmd)?;
        self.check(r, old)?;
        self.set_secret(r, &new)?;
        Ok(Vec::new())
    }

    /// RESET RETRY COUNTER (`00 2C 00 80`): PUK then new PIN, 8 bytes each.
    pub(super) fn reset_retry_counter(&mut self, cmd: &Command) -> Outcome {
        if cmd.p2 != key::PIN {
            return Err(StatusWord::REFERENCE_NOT_FOUND);
        }
        let (puk, new_pin) = current_and_new(cmd)?;
        self.check(Reference::Puk, puk)?;
        self.set_secret(Reference::Pin, &new_pin)?;
        self.set_tries_left(Reference::Pin, MAX_TRIES);
        Ok(Vec::new())
    }
}
