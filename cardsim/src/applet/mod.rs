//! The PIV applet: the card's logic, with no I/O.
//!
//! [`Applet::process`] takes a command APDU and returns the response APDU (data and status
//! word). It handles the transport-level parts — command chaining (CLA 10), GET RESPONSE for
//! replies longer than Le — and dispatches the PIV commands to the modules by concern.

mod keys;
mod mgmt;
mod objects;
mod pin;

use crate::state::CardState;
use piv::apdu::{Command, Response, StatusWord};
use piv::consts::{self, alg, ins};
use piv::tlv;
use zeroize::Zeroizing;

/// The outcome of one command: data with 9000, or a bare status word.
type Outcome = Result<Vec<u8>, StatusWord>;

/// The length of the registered application provider identifier that starts every AID.
const RID_LEN: usize = 5;
/// The most a chained command may accumulate.
const MAX_CHAIN: usize = 16 * 1024;
/// The version the YubiKey profile reports to GET VERSION.
const YUBIKEY_VERSION: [u8; 3] = [5, 4, 3];

/// A chained command being accumulated.
struct Chain {
    header: (u8, u8, u8),
    data: Zeroizing<Vec<u8>>,
}

/// The card's half of a 9B authentication in progress.
enum MgmtChallenge {
    /// Mutual authentication: the plaintext witness the host must return.
    Witness(Zeroizing<Vec<u8>>),
    /// External authentication: the challenge the host must encrypt.
    Challenge(Zeroizing<Vec<u8>>),
}

/// The PIV applet with its persistent state and the volatile state of one power cycle.
pub struct Applet {
    state: CardState,
    changed: bool,
    selected: bool,
    pin_verified: bool,
    mgmt_authenticated: bool,
    pending_response: Option<Zeroizing<Vec<u8>>>,
    chain: Option<Chain>,
    mgmt_challenge: Option<MgmtChallenge>,
}

impl Applet {
    /// An applet over `state`, freshly powered: nothing selected or verified.
    pub fn new(state: CardState) -> Self {
        Self {
            state,
            changed: false,
            selected: false,
            pin_verified: false,
            mgmt_authenticated: false,
            pending_response: None,
            chain: None,
            mgmt_challenge: None,
        }
    }

    /// Clears the volatile state, as power off, power on or a reset do.
    pub fn reset(&mut self) {
        self.selected = false;
        self.pin_verified = false;
        self.mgmt_authenticated = false;
        self.pending_response = None;
        self.chain = None;
        self.mgmt_challenge = None;
    }

    /// The persistent state.
    pub fn state(&self) -> &CardState {
        &self.state
    }

    /// Whether the persistent state changed since the last call (and clears the flag).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Whether the PIN is verified in this power cycle.
    pub fn is_pin_verified(&self) -> bool {
        self.pin_verified
    }

    /// Whether the management key is authenticated in this power cycle.
    pub fn is_management_authenticated(&self) -> bool {
        self.mgmt_authenticated
    }

    /// Processes one command APDU and returns the response APDU, status word included.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let (data, sw) = match self.process_inner(apdu) {
            Ok((data, sw)) => (data, sw),
            Err(sw) => (Vec::new(), sw),
        };
        Response::new(data, sw).to_bytes()
    }

    fn process_inner(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, StatusWord), StatusWord> {
        let cmd = Command::parse(apdu).map_err(|_| {
            self.pending_response = None;
            self.chain = None;
            StatusWord::WRONG_LENGTH
        })?;
        // Extended length: a zero byte where a short Lc or Le would be, with more after it.
        let extended = apdu.len() > 5 && apdu[4] == 0;
        let max_reply = match cmd.le {
            Some(0) | None if extended => 65536,
            Some(0) | None => 256,
            Some(n) => n,
        };
        if cmd.cla & !0x10 != 0 {
            self.pending_response = None;
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        if cmd.ins == ins::GET_RESPONSE && !cmd.is_chained() {
            return self.get_response(&cmd, max_reply);
        }
        self.pending_response = None;
        // A 9B challenge only stands for the very next command.
        let mgmt_challenge = self.mgmt_challenge.take();

        let header = (cmd.ins, cmd.p1, cmd.p2);
        let cmd = match self.chain.take() {
            Some(mut chain) if chain.header == header => {
                if chain.data.len() + cmd.data.len() > MAX_CHAIN {
                    return Err(StatusWord::NOT_ENOUGH_MEMORY);
                }
                chain.data.extend_from_slice(&cmd.data);
                if cmd.is_chained() {
                    self.chain = Some(chain);
                    return Ok((Vec::new(), StatusWord::OK));
                }
                Command {
                    cla: 0,
                    ins: cmd.ins,
                    p1: cmd.p1,
                    p2: cmd.p2,
                    data: chain.data.to_vec(),
                    le: cmd.le,
                }
            }
            // No chain, or a different command abandons it.
            _ => {
                if cmd.is_chained() {
                    if cmd.data.len() > MAX_CHAIN {
                        return Err(StatusWord::NOT_ENOUGH_MEMORY);
                    }
                    self.chain = Some(Chain {
                        header,
                        data: Zeroizing::new(cmd.data.clone()),
                    });
                    return Ok((Vec::new(), StatusWord::OK));
                }
                cmd
            }
        };

        let data = self.dispatch(&cmd, mgmt_challenge)?;
        Ok(self.fit_reply(data, max_reply))
    }

    /// Sends what fits in `max_reply` and keeps the rest for GET RESPONSE.
    fn fit_reply(&mut self, mut data: Vec<u8>, max_reply: usize) -> (Vec<u8>, StatusWord) {
        if data.len() <= max_reply {
            return (data, StatusWord::OK);
        }
        let rest = Zeroizing::new(data.split_off(max_reply));
        let sw = remaining_sw(rest.len());
        self.pending_response = Some(rest);
        (data, sw)
    }

    fn get_response(
        &mut self,
        cmd: &Command,
        max_reply: usize,
    ) -> Result<(Vec<u8>, StatusWord), StatusWord> {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Err(StatusWord::WRONG_P1P2);
        }
        let pending = self
            .pending_response
            .take()
            .ok_or(StatusWord::CONDITIONS_NOT_SATISFIED)?;
        Ok(self.fit_reply(pending.to_vec(), max_reply))
    }

    fn dispatch(&mut self, cmd: &Command, mgmt_challenge: Option<MgmtChallenge>) -> Outcome {
        if cmd.ins == ins::SELECT {
            return self.select(cmd);
        }
        if !self.selected {
            return Err(StatusWord::INS_NOT_SUPPORTED);
        }
        match cmd.ins {
            ins::GET_DATA => self.get_data(cmd),
            ins::PUT_DATA => self.put_data(cmd),
            ins::VERIFY => self.verify(cmd),
            ins::CHANGE_REFERENCE_DATA => self.change_reference_data(cmd),
            ins::RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            ins::GENERAL_AUTHENTICATE => self.general_authenticate(cmd, mgmt_challenge),
            ins::GENERATE_ASYMMETRIC_KEY_PAIR => self.generate(cmd),
            ins::SET_MANAGEMENT_KEY => self.set_management_key(cmd),
            ins::GET_METADATA if self.state.answers_metadata() => self.metadata(cmd),
            ins::GET_VERSION if self.state.profile().is_yubikey() => {
                no_data(cmd)?;
                Ok(YUBIKEY_VERSION.to_vec())
            }
            ins::GET_SERIAL if self.state.profile().is_yubikey() => {
                no_data(cmd)?;
                Ok(self.state.serial().0[4..].to_vec())
            }
            _ => Err(StatusWord::INS_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, cmd: &Command) -> Outcome {
        if cmd.p1 != 0x04 || (cmd.p2 != 0x00 && cmd.p2 != 0x0C) {
            return Err(StatusWord::WRONG_P1P2);
        }
        // Any right-truncated AID from the RID on selects the application (ISO 7816-4
        // partial selection); tools select with the 9-byte prefix or just the 5-byte RID.
        if cmd.data.len() < RID_LEN || !consts::AID.starts_with(&cmd.data) {
            // Another application: not here. What was selected stays selected.
            return Err(StatusWord::NOT_FOUND);
        }
        self.selected = true;
        if cmd.p2 == 0x0C {
            return Ok(Vec::new());
        }
        Ok(self.application_property_template())
    }

    /// The SELECT answer: `61 { 4F PIX, 79 { 4F AID }, 50 label, AC { 80 alg …, 06 00 } }`,
    /// naming the management-key algorithms the card takes and its key algorithms.
    fn application_property_template(&self) -> Vec<u8> {
        let mut inner = Vec::new();
        tlv::push(&mut inner, 0x4F, &consts::AID[5..]);
        tlv::push(&mut inner, 0x79, &tlv::encode(0x4F, &consts::AID));
        tlv::push(&mut inner, 0x50, b"cardsim virtual PIV");
        let mut algs = Vec::new();
        let management = [alg::TDES, alg::AES_128, alg::AES_192, alg::AES_256]
            .into_iter()
            .filter(|a| self.state.takes_management_algorithm(*a));
        for a in management.chain([alg::RSA_2048, alg::ECC_P256]) {
            tlv::push(&mut algs, 0x80, &[a]);
        }
        tlv::push(&mut algs, 0x06, &[0x00]);
        tlv::push(&mut inner, 0xAC, &algs);
        tlv::encode(0x61, &inner)
    }

    /// Whether the 9B key was authenticated, else 6982.
    fn require_management(&self) -> Result<(), StatusWord> {
        if self.mgmt_authenticated {
            Ok(())
        } else {
            Err(StatusWord::SECURITY_STATUS_NOT_SATISFIED)
        }
    }
}

/// `61xx` with the bytes still waiting (00 for 256 or more).
fn remaining_sw(n: usize) -> StatusWord {
    if n > 0xFF {
        StatusWord(0x6100)
    } else {
        StatusWord::bytes_remaining(n)
    }
}

/// 6700 when a command that takes no data carries some.
fn no_data(cmd: &Command) -> Result<(), StatusWord> {
    if cmd.data.is_empty() {
        Ok(())
    } else {
        Err(StatusWord::WRONG_LENGTH)
    }
}

/// The value of the single top-level element `tag` that makes up `data`, else 6A80.
fn single_template(data: &[u8], tag: u32) -> Result<&[u8], StatusWord> {
    match tlv::parse(data) {
        Ok((t, rest)) if t.tag == tag && rest.is_empty() => Ok(t.value),
        _ => Err(StatusWord::WRONG_DATA),
    }
}

/// The elements of `value` as (tag, value) pairs, else 6A80 if malformed.
fn elements(value: &[u8]) -> Result<Vec<(u32, &[u8])>, StatusWord> {
    tlv::iter(value)
        .map(|t| {
            t.map(|t| (t.tag, t.value))
                .map_err(|_| StatusWord::WRONG_DATA)
        })
        .collect()
}
