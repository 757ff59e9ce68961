//! cardsim's applet, the card side of the APDU protocol: a fresh simulated card (in memory, two
//! P-256 keys in 9A and 9E) is fed a sequence of arbitrary command APDUs. Every answer is a
//! response APDU (data and a status word), the data of one answer fits the Le it was given, and
//! the PIN and PUK counters never pass their maximum.
//!
//! Input: a flags byte (bit 0: YubiKey profile; bit 1: select the applet first; bit 2: verify
//! the PIN first; bit 3: authenticate the management key first), then APDUs, each after its
//! length as two big-endian bytes. GENERATE ASYMMETRIC KEY PAIR for RSA-2048 is skipped: one
//! key generation takes seconds and would starve the fuzzer.
#![no_main]

use cardsim::state::MAX_TRIES;
use cardsim::{Applet, AtrProfile, CardSpec, CardState};
use libfuzzer_sys::fuzz_target;
use piv::apdu::{Command, Response};
use piv::consts::{alg, ins, key, AID};
use piv::{tlv, CardSerial, ManagementKey};
use std::sync::OnceLock;

fn template(yubikey: bool) -> &'static CardState {
    static CARDS: OnceLock<[CardState; 2]> = OnceLock::new();
    let cards = CARDS.get_or_init(|| {
        [AtrProfile::NhsCis, AtrProfile::YubiKey].map(|profile| {
            let mut spec =
                CardSpec::new(CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x28, 0x17]));
            spec.profile = profile;
            let mut state = CardState::new(&spec).expect("a card");
            for slot in [key::AUTHENTICATION, key::CARD_AUTHENTICATION] {
                state
                    .generate_key(slot, alg::ECC_P256)
                    .expect("a P-256 key");
            }
            state
        })
    });
    &cards[usize::from(yubikey)]
}

/// Sends `apdu` and checks the answer's shape; returns it.
fn send(card: &mut Applet, apdu: &[u8]) -> Response {
    let answer = card.process(apdu);
    let response = Response::parse(&answer).expect("an answer has a status word");
    if let Ok(command) = Command::parse(apdu) {
        let extended = apdu.len() > 5 && apdu[4] == 0;
        let max = match command.le {
            Some(0) | None if extended => 65536,
            Some(0) | None => 256,
            Some(n) => n,
        };
        assert!(
            response.data.len() <= max,
            "{} bytes for Le {max}",
            response.data.len()
        );
    } else {
        assert!(response.data.is_empty());
    }
    let state = card.state();
    assert!(state.pin_tries_left() <= MAX_TRIES && state.puk_tries_left() <= MAX_TRIES);
    response
}

/// Authenticates the factory 3DES management key (external authentication).
fn authenticate(card: &mut Applet) {
    let mk = ManagementKey::factory();
    let step1 = Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg::TDES,
        key::MANAGEMENT,
        tlv::encode(0x7C, &[0x81, 0x00]),
    );
    let reply = send(card, &step1.to_bytes());
    let Ok((outer, _)) = tlv::parse(&reply.data) else {
        return;
    };
    let Ok(Some(challenge)) = tlv::find(outer.value, 0x81) else {
        return;
    };
    let Some(answer) = mk.encrypt_block(challenge) else {
        return;
    };
    let step2 = Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg::TDES,
        key::MANAGEMENT,
        tlv::encode(0x7C, &tlv::encode(0x82, &answer)),
    );
    send(card, &step2.to_bytes());
    assert!(card.is_management_authenticated());
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut card = Applet::new(template(flags & 1 != 0).clone());
    if flags & 0b1110 != 0 {
        send(
            &mut card,
            &Command::new(ins::SELECT, 0x04, 0x00, AID.to_vec()).to_bytes(),
        );
    }
    if flags & 0b0100 != 0 {
        let pin = *b"123456\xff\xff";
        send(
            &mut card,
            &Command::new(ins::VERIFY, 0x00, key::PIN, pin.to_vec())
                .without_le()
                .to_bytes(),
        );
        assert!(card.is_pin_verified());
    }
    if flags & 0b1000 != 0 {
        authenticate(&mut card);
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let apdu = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let generates_rsa = apdu.len() > 4
            && apdu[1] == ins::GENERATE_ASYMMETRIC_KEY_PAIR
            && (apdu[0] & 0x10 != 0 || apdu[4..].contains(&alg::RSA_2048));
        if generates_rsa {
            continue;
        }
        send(&mut card, apdu);
    }
});
