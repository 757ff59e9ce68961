//! A host side for driving the applet in tests: chaining, GET RESPONSE, 9B authentication.
#![allow(dead_code)]

use cardsim::{Applet, AtrProfile, CardSpec, CardState};
use piv::apdu::{Command, Response, StatusWord};
use piv::consts::{ins, key};
use piv::{tlv, ManagementKey};

pub const SERIAL: &str = "4082A001132F2817";

pub fn state(profile: AtrProfile) -> CardState {
    let mut spec = CardSpec::new(SERIAL.parse().unwrap());
    spec.profile = profile;
    CardState::new(&spec).unwrap()
}

/// The applet and a host that speaks to it.
pub struct Host {
    pub applet: Applet,
}

impl Host {
    pub fn new(state: CardState) -> Self {
        let mut host = Self {
            applet: Applet::new(state),
        };
        host.select();
        host
    }

    /// One raw exchange.
    pub fn raw(&mut self, cmd: &Command) -> Response {
        Response::parse(&self.applet.process(&cmd.to_bytes())).unwrap()
    }

    /// A command with chaining in 255-byte parts and GET RESPONSE until done.
    pub fn transmit(&mut self, cmd: Command) -> Response {
        let mut parts: Vec<&[u8]> = cmd.data.chunks(255).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        let last = parts.len() - 1;
        let mut response = None;
        for (i, part) in parts.iter().enumerate() {
            let c = Command {
                cla: if i < last { 0x10 } else { 0 },
                ins: cmd.ins,
                p1: cmd.p1,
                p2: cmd.p2,
                data: part.to_vec(),
                le: if part.is_empty() { cmd.le } else { Some(0) },
            };
            let r = self.raw(&c);
            if i < last {
                assert_eq!(r.sw, StatusWord::OK, "chained part {i}");
            }
            response = Some(r);
        }
        let mut response = response.unwrap();
        let mut data = response.data.clone();
        while response.sw.sw1() == 0x61 {
            response = self.raw(&Command::new(ins::GET_RESPONSE, 0, 0, vec![]));
            data.extend_from_slice(&response.data);
        }
        Response::new(data, response.sw)
    }

    pub fn select(&mut self) {
        let r = self.transmit(Command::new(ins::SELECT, 4, 0, piv::consts::AID.to_vec()));
        assert_eq!(r.sw, StatusWord::OK);
    }

    pub fn verify_pin(&mut self, pin: &str) -> StatusWord {
        let mut block = pin.as_bytes().to_vec();
        block.resize(8, 0xFF);
        self.transmit(Command::new(ins::VERIFY, 0, key::PIN, block).without_le())
            .sw
    }

    /// Mutual authentication with `mk`; returns the final status word.
    pub fn authenticate(&mut self, mk: &ManagementKey) -> StatusWord {
        let r = self.transmit(Command::new(
            ins::GENERAL_AUTHENTICATE,
            mk.algorithm(),
            key::MANAGEMENT,
            vec![0x7C, 0x02, 0x80, 0x00],
        ));
        if !r.sw.is_ok() {
            return r.sw;
        }
        let inner = tlv::find(&r.data, 0x7C).unwrap().unwrap();
        let encrypted = tlv::find(inner, 0x80).unwrap().unwrap();
        assert_eq!(encrypted.len(), mk.block_len());
        let witness = mk.decrypt_block(encrypted).unwrap();
        let challenge: Vec<u8> = (0..mk.block_len() as u8).map(|i| i * 7 + 1).collect();
        let mut body = Vec::new();
        tlv::push(&mut body, 0x80, &witness);
        tlv::push(&mut body, 0x81, &challenge);
        let r = self.transmit(Command::new(
            ins::GENERAL_AUTHENTICATE,
            mk.algorithm(),
            key::MANAGEMENT,
            tlv::encode(0x7C, &body),
        ));
        if !r.sw.is_ok() {
            return r.sw;
        }
        let inner = tlv::find(&r.data, 0x7C).unwrap().unwrap();
        let answer = tlv::find(inner, 0x82).unwrap().unwrap();
        assert_eq!(
            answer,
            mk.encrypt_block(&challenge).unwrap(),
            "card proved the wrong key"
        );
        r.sw
    }

    /// GENERATE in `slot`; returns the `7F49` template's value.
    pub fn generate(&mut self, slot: u8, alg: u8) -> Response {
        self.transmit(Command::new(
            ins::GENERATE_ASYMMETRIC_KEY_PAIR,
            0,
            slot,
            vec![0xAC, 0x03, 0x80, 0x01, alg],
        ))
    }

    /// GENERAL AUTHENTICATE with `82` empty and `tag` carrying `input`.
    pub fn private_op(&mut self, alg: u8, slot: u8, tag: u32, input: &[u8]) -> Response {
        let mut body = Vec::new();
        tlv::push(&mut body, 0x82, &[]);
        tlv::push(&mut body, tag, input);
        self.transmit(Command::new(
            ins::GENERAL_AUTHENTICATE,
            alg,
            slot,
            tlv::encode(0x7C, &body),
        ))
    }

    pub fn get_data(&mut self, tag: u32) -> Response {
        let mut t = Vec::new();
        tlv::push_tag(&mut t, tag);
        self.transmit(Command::new(
            ins::GET_DATA,
            0x3F,
            0xFF,
            tlv::encode(0x5C, &t),
        ))
    }

    pub fn put_data(&mut self, tag: u32, content: &[u8]) -> Response {
        let mut t = Vec::new();
        tlv::push_tag(&mut t, tag);
        let mut body = tlv::encode(0x5C, &t);
        tlv::push(&mut body, 0x53, content);
        self.transmit(Command::new(ins::PUT_DATA, 0x3F, 0xFF, body).without_le())
    }
}

/// The value of `tag` inside the single template `outer` of `data`.
pub fn inner(data: &[u8], outer: u32, tag: u32) -> Vec<u8> {
    let value = tlv::find(data, outer).unwrap().unwrap();
    tlv::find(value, tag).unwrap().unwrap().to_vec()
}
