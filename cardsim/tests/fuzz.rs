//! Random and malformed input: the applet always answers with a well-formed response and a
//! sensible status word, and the serving loop answers or disconnects cleanly, never panics.

use cardsim::vpcd::{read_frame, write_frame};
use cardsim::{insert, Applet, AtrProfile, CardFile, CardSpec, CardState, Faults, InsertedCard};
use piv::consts::{alg, key};
use proptest::prelude::*;
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// A card with keys in several slots (generated once: RSA is slow).
fn base_state() -> CardState {
    static BASE: OnceLock<CardState> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut spec = CardSpec::new("4082A001132F2817".parse().unwrap());
        spec.profile = AtrProfile::YubiKey;
        let mut state = CardState::new(&spec).unwrap();
        state
            .generate_key(key::AUTHENTICATION, alg::RSA_2048)
            .unwrap();
        state.generate_key(key::SIGNATURE, alg::ECC_P256).unwrap();
        state
            .generate_key(key::CARD_AUTHENTICATION, alg::ECC_P256)
            .unwrap();
        state
            .import_certificate(key::AUTHENTICATION, &[0x30, 0])
            .unwrap();
        state
    })
    .clone()
}

fn sensible(sw: u16) -> bool {
    matches!(sw, 0x9000 | 0x6100..=0x61FF | 0x63C0..=0x63C3 | 0x6700 | 0x6883 | 0x6982 | 0x6983
        | 0x6985 | 0x6A80 | 0x6A82 | 0x6A84 | 0x6A86 | 0x6A88 | 0x6D00 | 0x6E00 | 0x6F00)
}

fn check(response: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(response.len() >= 2);
    let sw = u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
    prop_assert!(sensible(sw), "status word {:04X}", sw);
    if sw != 0x9000 && sw >> 8 != 0x61 {
        prop_assert_eq!(response.len(), 2, "data with an error status");
    }
    Ok(())
}

/// APDUs that look like PIV commands: known instructions and parameters, TLV-ish data.
fn piv_like_apdu() -> impl Strategy<Value = Vec<u8>> {
    let ins = prop::sample::select(vec![
        0xA4u8, 0xCB, 0xDB, 0x20, 0x24, 0x2C, 0x87, 0x47, 0xC0, 0xFF, 0xFD, 0xF8, 0x00,
    ]);
    let p1 = prop::sample::select(vec![0x00u8, 0x03, 0x04, 0x07, 0x08, 0x11, 0x3F, 0xFF]);
    let p2 = prop::sample::select(vec![0x00u8, 0x80, 0x81, 0x9A, 0x9B, 0x9C, 0x9E, 0xFF, 0x0C]);
    let tlv_piece = (
        prop::sample::select(vec![
            0x5Cu8, 0x53, 0x7C, 0x80, 0x81, 0x82, 0x85, 0xAC, 0x7E, 0x5F,
        ]),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(tag, mut value)| {
            let mut out = vec![tag, value.len() as u8];
            out.append(&mut value);
            out
        });
    let data = prop::collection::vec(tlv_piece, 0..4).prop_map(|parts| parts.concat());
    (
        prop::sample::select(vec![0x00u8, 0x10]),
        ins,
        p1,
        p2,
        data,
        prop::option::of(any::<u8>()),
    )
        .prop_map(|(cla, ins, p1, p2, data, le)| {
            let mut apdu = vec![cla, ins, p1, p2];
            if !data.is_empty() {
                apdu.push(data.len().min(255) as u8);
                apdu.extend_from_slice(&data[..data.len().min(255)]);
            }
            apdu.extend(le);
            apdu
        })
}

const SELECT: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00,
];
const AUTH_STEP_1: &[u8] = &[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_get_a_well_formed_answer(apdus in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8)) {
        let mut applet = Applet::new(base_state());
        check(&applet.process(SELECT))?;
        for apdu in apdus {
            check(&applet.process(&apdu))?;
        }
    }

    #[test]
    fn piv_like_commands_get_a_well_formed_answer(apdus in prop::collection::vec(piv_like_apdu(), 1..12),
                                                  pin_first in any::<bool>()) {
        let mut applet = Applet::new(base_state());
        check(&applet.process(SELECT))?;
        if pin_first {
            check(&applet.process(&[0, 0x20, 0, 0x80, 8, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF]))?;
        }
        check(&applet.process(AUTH_STEP_1))?;
        for apdu in apdus {
            check(&applet.process(&apdu))?;
        }
    }
}

/// A new card stored in `dir`, inserted into a reader this test plays vpcd for; the card and
/// the connection to it.
fn served_card(dir: &tempfile::TempDir) -> (InsertedCard, TcpStream) {
    let path = dir.path().join("card.json");
    CardFile::create(&path, &CardSpec::new("4082A001132F2817".parse().unwrap())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let card = insert(&path, listener.local_addr().unwrap(), Faults::default()).unwrap();
    let (vpcd, _) = listener.accept().unwrap();
    (card, vpcd)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_serving_loop_answers_or_disconnects(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let (card, mut vpcd) = served_card(&dir);
        vpcd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for frame in frames {
            write_frame(&mut vpcd, &frame).unwrap();
            match frame.len() {
                0 => {}
                1 if frame[0] == 0x04 => {
                    let atr = read_frame(&mut vpcd).unwrap().unwrap();
                    prop_assert_eq!(&atr[..], AtrProfile::NhsCis.atr());
                }
                1 => {}
                _ => match read_frame(&mut vpcd) {
                    Ok(Some(reply)) => check(&reply)?,
                    // A clean disconnect ends the case.
                    Ok(None) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("vpcd read failed: {e}"))),
                },
            }
        }
        // The card still answers after all that.
        write_frame(&mut vpcd, SELECT).unwrap();
        let reply = read_frame(&mut vpcd).unwrap().unwrap();
        prop_assert_eq!(&reply[reply.len() - 2..], &[0x90, 0x00]);
        prop_assert!(card.is_connected());
        card.remove().unwrap();
    }
}

#[test]
fn a_truncated_frame_ends_the_connection_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (card, mut vpcd) = served_card(&dir);
    use std::io::Write;
    // A length of 300 followed by 3 bytes, then the connection closes.
    vpcd.write_all(&[0x01, 0x2C, 0x00, 0xA4, 0x04]).unwrap();
    drop(vpcd);
    let err = card.wait().unwrap_err();
    assert!(matches!(err, cardsim::CardError::Connection(_)), "{err}");
}
