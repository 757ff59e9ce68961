//! Command and response APDUs (ISO 7816-4), short and extended length, and status words.

use std::fmt;
use thiserror::Error;
use zeroize::Zeroize;

/// A status word (SW1 SW2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// 9000: success.
    pub const OK: Self = Self(0x9000);
    /// 6700: wrong length.
    pub const WRONG_LENGTH: Self = Self(0x6700);
    /// 6882: secure messaging / chaining not supported as sent.
    pub const CHAINING_NOT_SUPPORTED: Self = Self(0x6884);
    /// 6982: security status not satisfied.
    pub const SECURITY_STATUS_NOT_SATISFIED: Self = Self(0x6982);
    /// 6983: authentication method (PIN or PUK) blocked.
    pub const AUTH_BLOCKED: Self = Self(0x6983);
    /// 6985: conditions of use not satisfied.
    pub const CONDITIONS_NOT_SATISFIED: Self = Self(0x6985);
    /// 6A80: incorrect parameters in the data field.
    pub const WRONG_DATA: Self = Self(0x6A80);
    /// 6A81: function not supported.
    pub const FUNCTION_NOT_SUPPORTED: Self = Self(0x6A81);
    /// 6A82: file or application not found.
    pub const NOT_FOUND: Self = Self(0x6A82);
    /// 6A84: not enough memory.
    pub const NOT_ENOUGH_MEMORY: Self = Self(0x6A84);
    /// 6A86: incorrect P1 or P2.
    pub const WRONG_P1P2: Self = Self(0x6A86);
    /// 6A88: referenced data or key not found.
    pub const REFERENCE_NOT_FOUND: Self = Self(0x6A88);
    /// 6D00: instruction not supported.
    pub const INS_NOT_SUPPORTED: Self = Self(0x6D00);
    /// 6E00: class not supported.
    pub const CLA_NOT_SUPPORTED: Self = Self(0x6E00);
    /// 6F00: no precise diagnosis.
    pub const UNKNOWN: Self = Self(0x6F00);

    /// `61xx`: `xx` more bytes wait for GET RESPONSE (0 meaning 256 or more).
    pub fn bytes_remaining(n: usize) -> Self {
        Self(0x6100 | n.min(0xFF) as u16)
    }

    /// `63Cx`: a PIN or PUK check failed, `x` tries left.
    pub fn tries_left(n: u8) -> Self {
        Self(0x63C0 | u16::from(n.min(15)))
    }

    /// The first byte.
    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The second byte.
    pub fn sw2(self) -> u8 {
        self.0 as u8
    }

    /// Whether this is a card's refusal of an algorithm: wrong P1 (the algorithm byte) or wrong
    /// data (a key of a length it does not take).
    pub fn is_algorithm_refusal(self) -> bool {
        matches!(self, Self::WRONG_P1P2 | Self::WRONG_DATA)
    }

    /// Whether this is 9000.
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }

    /// For `63Cx`, the tries left.
    pub fn counter(self) -> Option<u8> {
        (self.0 & 0xFFF0 == 0x63C0).then_some((self.0 & 0x0F) as u8)
    }

    /// What a refusal means, in words (`"the card does not take the data sent"` …).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::OK => "done",
            Self::WRONG_LENGTH => "the command had the wrong length",
            Self::SECURITY_STATUS_NOT_SATISFIED => {
                "the PIN or the management key must be presented first"
            }
            Self::AUTH_BLOCKED => "the PIN or key is blocked",
            Self::CONDITIONS_NOT_SATISFIED => "the card is not in a state to do it",
            Self::WRONG_DATA => "the card does not take the data sent",
            Self::FUNCTION_NOT_SUPPORTED | Self::INS_NOT_SUPPORTED | Self::CLA_NOT_SUPPORTED => {
                "the card does not support the command"
            }
            Self::NOT_FOUND | Self::REFERENCE_NOT_FOUND => "the card has no such object or key",
            Self::NOT_ENOUGH_MEMORY => "the card is full",
            Self::WRONG_P1P2 => "the card does not support the algorithm or key asked for",
            _ => "the card refused",
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}

/// A malformed command APDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApduError {
    /// Fewer than four header bytes.
    #[error("APDU shorter than its header")]
    TooShort,
    /// Lc and the data field disagree, or the length fields are malformed.
    #[error("APDU length fields do not match its size")]
    BadLength,
}

/// A command APDU. Its data is wiped when dropped, as it may carry a PIN or a key.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte (`0x10` marks a chained command that more parts follow).
    pub cla: u8,
    /// Instruction.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Data field.
    pub data: Vec<u8>,
    /// Expected response length; `Some(0)` is "as many as there are" (256 or 65536).
    pub le: Option<usize>,
}

impl fmt::Debug for Command {
    // The data field may be a PIN, a PUK or a key: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Command {{ cla: {:02X}, ins: {:02X}, p1: {:02X}, p2: {:02X}, lc: {}, le: {:?} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl Command {
    /// A command with CLA 00 and `le` of "all there is".
    pub fn new(ins: u8, p1: u8, p2: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            cla: 0,
            ins,
            p1,
            p2,
            data: data.into(),
            le: Some(0),
        }
    }

    /// The same command without an Le field.
    pub fn without_le(mut self) -> Self {
        self.le = None;
        self
    }

    /// Whether the chaining bit of CLA is set.
    pub fn is_chained(&self) -> bool {
        self.cla & 0x10 != 0
    }

    /// Encodes as a short APDU (data up to 255 bytes) or, beyond that, an extended one.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 9);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        let extended = self.data.len() > 255 || self.le.is_some_and(|le| le > 256);
        if extended {
            out.push(0);
            if !self.data.is_empty() {
                out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                out.extend_from_slice(&((le % 65536) as u16).to_be_bytes());
            }
        } else {
            if !self.data.is_empty() {
                out.push(self.data.len() as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                out.push((le % 256) as u8);
            }
        }
        out
    }

    /// Parses a command APDU in any of the ISO 7816-4 cases, short or extended.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let (header, body) = bytes.split_at_checked(4).ok_or(ApduError::TooShort)?;
        let mut cmd = Self {
            cla: header[0],
            ins: header[1],
            p1: header[2],
            p2: header[3],
            data: Vec::new(),
            le: None,
        };
        let le_value = |b: &[u8]| b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        match body {
            [] => {}
            [le] => cmd.le = Some(usize::from(*le)),
            [0, rest @ ..] if rest.len() == 2 => cmd.le = Some(le_value(rest)),
            [0, h, l, rest @ ..] if body.len() > 3 => {
                let lc = (usize::from(*h) << 8) | usize::from(*l);
                match rest.len().checked_sub(lc) {
                    Some(0) if lc > 0 => cmd.data = rest.to_vec(),
                    Some(2) if lc > 0 => {
                        cmd.data = rest[..lc].to_vec();
                        cmd.le = Some(le_value(&rest[lc..]));
                    }
                    _ => return Err(ApduError::BadLength),
                }
            }
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                match rest.len().checked_sub(lc) {
                    Some(0) if lc > 0 => cmd.data = rest.to_vec(),
                    Some(1) if lc > 0 => {
                        cmd.data = rest[..lc].to_vec();
                        cmd.le = Some(usize::from(rest[lc]));
                    }
                    _ => return Err(ApduError::BadLength),
                }
            }
        }
        Ok(cmd)
    }
}

/// A response APDU: data and status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data.
    pub data: Vec<u8>,
    /// Status word.
    pub sw: StatusWord,
}

impl fmt::Debug for Response {
    // Response data may be key material: print its length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Response {{ len: {}, sw: {} }}",
            self.data.len(),
            self.sw
        )
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl Response {
    /// A response with data and a status word.
    pub fn new(data: Vec<u8>, sw: StatusWord) -> Self {
        Self { data, sw }
    }

    /// A bare status word.
    pub fn status(sw: StatusWord) -> Self {
        Self {
            data: Vec::new(),
            sw,
        }
    }

    /// Encodes as data followed by SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.0.to_be_bytes());
        out
    }

    /// Splits a received response into data and status word.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let split = bytes.len().checked_sub(2)?;
        let sw = u16::from_be_bytes([bytes[split], bytes[split + 1]]);
        Some(Self {
            data: bytes[..split].to_vec(),
            sw: StatusWord(sw),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_case() {
        let c = Command::parse(&[0, 0xCB, 0x3F, 0xFF]).unwrap();
        assert_eq!((c.data.len(), c.le), (0, None));
        let c = Command::parse(&[0, 0x20, 0, 0x80, 0]).unwrap();
        assert_eq!(c.le, Some(0));
        let c = Command::parse(&[0, 0x20, 0, 0x80, 2, 1, 2]).unwrap();
        assert_eq!((c.data.clone(), c.le), (vec![1, 2], None));
        let c = Command::parse(&[0, 0xCB, 0x3F, 0xFF, 1, 0x7E, 0]).unwrap();
        assert_eq!((c.data.clone(), c.le), (vec![0x7E], Some(0)));
        let c = Command::parse(&[0, 0xCB, 0x3F, 0xFF, 0, 0, 1, 0x7E, 0, 0]).unwrap();
        assert_eq!((c.data.clone(), c.le), (vec![0x7E], Some(0)));
        assert_eq!(Command::parse(&[0, 1, 2]), Err(ApduError::TooShort));
        assert_eq!(
            Command::parse(&[0, 1, 2, 3, 5, 1]),
            Err(ApduError::BadLength)
        );
    }

    #[test]
    fn debug_never_shows_data() {
        let c = Command::new(0x20, 0, 0x80, b"123456\xff\xff".to_vec());
        assert!(!format!("{c:?}").contains("49"));
    }

    proptest! {
        #[test]
        fn round_trips(cla in any::<u8>(), ins in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..600),
                       le in proptest::option::of(0usize..256)) {
            let c = Command { cla, ins, p1: 1, p2: 2, data, le };
            prop_assert_eq!(Command::parse(&c.to_bytes()).unwrap(), c);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Command::parse(&bytes);
            let _ = Response::parse(&bytes);
        }
    }
}
