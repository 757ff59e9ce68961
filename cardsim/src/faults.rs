//! Fault injection for an inserted card: the ways a real card or reader misbehaves.

use std::time::Duration;

/// Faults one inserted card shows. The default is a well-behaved card.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Pull the card after it has answered this many APDUs: the last one is fully applied,
    /// persisted and answered, then the connection to the reader closes.
    pub pull_after_apdus: Option<u32>,
    /// Wait this long before sending each APDU reply.
    pub reply_delay: Option<Duration>,
    /// Answer every APDU with this INS with just this status word, without executing it.
    pub force_status: Option<(u8, u16)>,
    /// Flip every byte of reply data (XOR FF), keeping the status word.
    pub corrupt_replies: bool,
    /// Refuse to power on: close the connection instead of powering up or giving the ATR.
    pub refuse_power_on: bool,
}

impl Faults {
    /// A card pulled once it has answered `apdus` APDUs, the last one fully applied.
    pub fn pull_after_apdus(apdus: u32) -> Self {
        Self {
            pull_after_apdus: Some(apdus),
            ..Self::default()
        }
    }

    /// A card that waits `delay` before each reply.
    pub fn reply_delay(delay: Duration) -> Self {
        Self {
            reply_delay: Some(delay),
            ..Self::default()
        }
    }

    /// A card that answers every APDU with INS `ins` with just `sw`.
    pub fn force_status(ins: u8, sw: u16) -> Self {
        Self {
            force_status: Some((ins, sw)),
            ..Self::default()
        }
    }

    /// A card whose reply data is flipped (XOR FF), its status words kept.
    pub fn corrupt_replies() -> Self {
        Self {
            corrupt_replies: true,
            ..Self::default()
        }
    }

    /// A card that refuses to power on.
    pub fn refuse_power_on() -> Self {
        Self {
            refuse_power_on: true,
            ..Self::default()
        }
    }

    /// The forced reply for `apdu`, if its INS is the one to force.
    pub fn forced_reply(&self, apdu: &[u8]) -> Option<Vec<u8>> {
        let (ins, sw) = self.force_status?;
        (apdu.get(1) == Some(&ins)).then(|| sw.to_be_bytes().to_vec())
    }

    /// Whether the card should leave the reader now, having answered `answered` APDUs.
    pub fn should_pull(&self, answered: u32) -> bool {
        self.pull_after_apdus.is_some_and(|n| answered >= n)
    }

    /// Applies the reply corruption to a response APDU (data then SW1 SW2).
    pub fn corrupt(&self, reply: &mut [u8]) {
        if !self.corrupt_replies {
            return;
        }
        let data_len = reply.len().saturating_sub(2);
        for b in &mut reply[..data_len] {
            *b ^= 0xFF;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupts_data_but_keeps_the_status_word() {
        let f = Faults::corrupt_replies();
        let mut reply = vec![0x53, 0x01, 0x00, 0x90, 0x00];
        f.corrupt(&mut reply);
        assert_eq!(reply, [0xAC, 0xFE, 0xFF, 0x90, 0x00]);
        let mut sw_only = vec![0x6A, 0x82];
        f.corrupt(&mut sw_only);
        assert_eq!(sw_only, [0x6A, 0x82]);
    }

    #[test]
    fn forces_only_the_chosen_instruction() {
        let f = Faults::force_status(0x20, 0x6983);
        assert_eq!(f.forced_reply(&[0, 0x20, 0, 0x80]), Some(vec![0x69, 0x83]));
        assert_eq!(f.forced_reply(&[0, 0xCB, 0x3F, 0xFF]), None);
        assert!(!Faults::default().should_pull(1000));
        let pull = Faults::pull_after_apdus(2);
        assert!(!pull.should_pull(1));
        assert!(pull.should_pull(2));
    }
}
