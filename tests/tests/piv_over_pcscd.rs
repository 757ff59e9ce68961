//! The `piv` client end to end: a private pcscd, the vpcd reader driver and the virtual card
//! (`cardsim`), with every command and every fault the virtual card can inject.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use cardsim::{CardFile, CardSpec, Faults};
use piv::consts::{key, object};
use piv::{
    CardSerial, Certificate, Error, KeyAlgorithm, LocalResponder, ManagementKey, Pin, PinStatus,
    PivCard, PublicKey, Puk, StatusWord,
};
use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::issue::personalise;
use testbed::pki::TestCa;
use testbed::TestBed;

const PIN: &str = "123456";
const PUK: &str = "12345678";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x28, n])
}

/// A new card file in the bed's directory.
fn new_card(bed: &TestBed, n: u8) -> PathBuf {
    let path = bed.dir().join(format!("card-{n}.json"));
    CardFile::create(&path, &CardSpec::new(serial(n))).unwrap();
    path
}

/// A new card inserted into reader `slot` and connected to.
fn insert_new_card(bed: &TestBed, n: u8, slot: usize) -> (cardsim::InsertedCard, PivCard) {
    let inserted = bed
        .insert(slot, &new_card(bed, n), Faults::default())
        .unwrap();
    (inserted, connect(bed, slot).unwrap())
}

/// A new card with a YubiKey's ATR inserted into reader `slot`, for the YubiKey tools.
fn insert_new_yubikey(bed: &TestBed, n: u8, slot: usize) -> cardsim::InsertedCard {
    let path = bed.dir().join("yubikey.json");
    let spec = CardSpec {
        profile: cardsim::AtrProfile::YubiKey,
        ..CardSpec::new(serial(n))
    };
    CardFile::create(&path, &spec).unwrap();
    bed.insert(slot, &path, Faults::default()).unwrap()
}

fn connect(bed: &TestBed, slot: usize) -> Result<PivCard, Error> {
    let ctx = bed.context().unwrap();
    PivCard::connect(&ctx, &CString::new(bed.reader_name(slot)).unwrap())
}

fn pin(s: &str) -> Pin {
    Pin::new(s).unwrap()
}

fn puk(s: &str) -> Puk {
    Puk::new(s).unwrap()
}

fn factory() -> LocalResponder {
    LocalResponder::new(ManagementKey::factory())
}

/// Generates a key in `slot`, has the test CA certify it and writes the certificate.
fn provision(card: &mut PivCard, ca: &mut TestCa, slot: u8, alg: KeyAlgorithm) -> PublicKey {
    personalise(card, ca, slot, alg, "Jane Doe", 365)
        .unwrap()
        .public_key()
        .unwrap()
}

/// Provisions a P-256 key and certificate in 9A of the card at `path` in reader 0, then takes the
/// card out again, ready to be inserted with faults.
fn provision_and_remove(bed: &TestBed, path: &std::path::Path) -> PublicKey {
    let mut ca = TestCa::new("Test CA").unwrap();
    let inserted = bed.insert(0, path, Faults::default()).unwrap();
    let mut card = connect(bed, 0).unwrap();
    let public = provision(&mut card, &mut ca, key::AUTHENTICATION, KeyAlgorithm::P256);
    drop(card);
    bed.remove(0, inserted).unwrap();
    public
}

/// Asserts that `certificate`'s key did not sign `message` with `signature`.
fn assert_not_signed_by(certificate: &Certificate, message: &[u8], signature: &[u8]) {
    assert_err(certificate.verify(message, signature), |e| {
        matches!(e, Error::BadSignature)
    });
}

fn assert_err<T: std::fmt::Debug>(result: Result<T, Error>, pattern: fn(&Error) -> bool) -> Error {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) if pattern(&e) => e,
        Err(e) => panic!("unexpected error: {e:?} ({e})"),
    }
}

/// Waits for the readers' next change and returns whether each now holds a card.
fn watch_until(
    ctx: &pcsc::Context,
    states: &mut [pcsc::ReaderState],
    want: [bool; 2],
) -> [bool; 2] {
    let deadline = Instant::now() + testbed::CARD_TIMEOUT;
    loop {
        let present = |s: &pcsc::ReaderState| s.event_state().contains(pcsc::State::PRESENT);
        let now = [present(&states[0]), present(&states[1])];
        if now == want {
            return now;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "readers stayed {now:?}, waiting for {want:?}"
        );
        for s in states.iter_mut() {
            s.sync_current_state();
        }
        match ctx.get_status_change(left, states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => panic!("SCardGetStatusChange: {e}"),
        }
    }
}

#[test]
fn insertion_and_removal_are_seen_on_both_readers() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 1);
    let ctx = bed.context().unwrap();
    let mut states: Vec<_> = (0..2)
        .map(|slot| {
            pcsc::ReaderState::new(
                CString::new(bed.reader_name(slot)).unwrap(),
                pcsc::State::UNAWARE,
            )
        })
        .collect();
    ctx.get_status_change(Duration::from_secs(2), &mut states)
        .unwrap();
    watch_until(&ctx, &mut states, [false, false]);

    let in_second = cardsim::insert(&path, bed.vpcd_addr(1), Faults::default()).unwrap();
    watch_until(&ctx, &mut states, [false, true]);
    let atr = cardsim::AtrProfile::NhsCis.atr();
    assert_eq!(states[1].atr(), atr);
    in_second.remove().unwrap();
    watch_until(&ctx, &mut states, [false, false]);

    let in_first = cardsim::insert(&path, bed.vpcd_addr(0), Faults::default()).unwrap();
    watch_until(&ctx, &mut states, [true, false]);
    let card = connect(&bed, 0).unwrap();
    assert_eq!(card.atr(), atr);
    assert_eq!(card.reader().to_str().unwrap(), bed.reader_name(0));
    drop(card);
    in_first.remove().unwrap();
    watch_until(&ctx, &mut states, [false, false]);
}

#[test]
fn reads_the_serial_and_reports_missing_objects() {
    let bed = TestBed::start().unwrap();
    let (_inserted, mut card) = insert_new_card(&bed, 2, 1);
    let tx = card.transaction().unwrap();
    assert_eq!(tx.card_serial().unwrap(), serial(2));
    assert_err(tx.read_certificate(key::AUTHENTICATION), |e| {
        matches!(e, Error::NotFound)
    });
    assert_err(tx.get_data(object::KEY_HISTORY), |e| {
        matches!(e, Error::NotFound)
    });
    // Printed information is for a verified PIN only.
    assert_err(tx.get_data(object::PRINTED_INFORMATION), |e| {
        matches!(e, Error::SecurityStatusNotSatisfied)
    });
    // The empty reader has no card; an unknown reader is not there.
    drop(tx);
    assert_err(connect(&bed, 0), |e| matches!(e, Error::CardRemoved));
    let ctx = bed.context().unwrap();
    assert_err(
        PivCard::connect(&ctx, &CString::new("No Such Reader 00 00").unwrap()),
        |e| matches!(e, Error::NoReader),
    );
}

#[test]
fn rsa_signature_verifies_against_the_certificate() {
    let bed = TestBed::start().unwrap();
    let (_inserted, mut card) = insert_new_card(&bed, 3, 0);
    let mut ca = TestCa::new("Test CA").unwrap();
    let public = provision(
        &mut card,
        &mut ca,
        key::AUTHENTICATION,
        KeyAlgorithm::Rsa2048,
    );
    assert_eq!(public.algorithm().unwrap(), KeyAlgorithm::Rsa2048);

    let tx = card.transaction().unwrap();
    let cert = tx.read_certificate(key::AUTHENTICATION).unwrap();
    assert_eq!(cert.public_key().unwrap(), public);
    assert!(cert.subject().contains("CN=Jane Doe"));
    assert!(cert.not_after() > std::time::SystemTime::now());
    // Signing needs the PIN.
    assert_err(
        tx.sign(key::AUTHENTICATION, KeyAlgorithm::Rsa2048, b"challenge"),
        |e| matches!(e, Error::SecurityStatusNotSatisfied),
    );
    tx.verify_pin(&pin(PIN)).unwrap();
    let sig = tx
        .sign(key::AUTHENTICATION, KeyAlgorithm::Rsa2048, b"challenge")
        .unwrap();
    assert_eq!(sig.len(), 256);
    cert.verify(b"challenge", &sig).unwrap();
    assert_not_signed_by(&cert, b"another challenge", &sig);
}

#[test]
fn p256_signature_verifies_against_the_certificate() {
    let bed = TestBed::start().unwrap();
    let (_inserted, mut card) = insert_new_card(&bed, 4, 1);
    let mut ca = TestCa::new("Test CA").unwrap();
    let public = provision(&mut card, &mut ca, key::SIGNATURE, KeyAlgorithm::P256);

    let tx = card.transaction().unwrap();
    tx.verify_pin(&pin(PIN)).unwrap();
    let sig = tx
        .sign(key::SIGNATURE, KeyAlgorithm::P256, b"message")
        .unwrap();
    public.verify(b"message", &sig).unwrap();
    let cert = tx.read_certificate(key::SIGNATURE).unwrap();
    cert.verify(b"message", &sig).unwrap();
    assert_not_signed_by(&cert, b"messagE", &sig);
    // A key generated afresh signs too, and its signature is not the old key's.
    tx.authenticate_management_key(&mut factory()).unwrap();
    let fresh = tx.generate_key(key::SIGNATURE, KeyAlgorithm::P256).unwrap();
    assert_ne!(fresh, public);
    let sig = tx
        .sign(key::SIGNATURE, KeyAlgorithm::P256, b"message")
        .unwrap();
    fresh.verify(b"message", &sig).unwrap();
    assert_not_signed_by(&cert, b"message", &sig);
}

#[test]
fn pin_blocks_after_three_wrong_tries_and_the_puk_unblocks_it() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 5);
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    assert_eq!(
        tx.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    assert_err(tx.verify_pin(&pin("999999")), |e| {
        matches!(e, Error::WrongPin { tries_left: 2 })
    });
    // The empty VERIFY spends no try.
    assert_eq!(
        tx.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 2 }
    );
    assert_err(tx.verify_pin(&pin("999999")), |e| {
        matches!(e, Error::WrongPin { tries_left: 1 })
    });
    let e = assert_err(tx.verify_pin(&pin("999999")), |e| {
        matches!(e, Error::PinBlocked)
    });
    assert!(e.to_string().contains("blocked"));
    assert_err(tx.verify_pin(&pin(PIN)), |e| matches!(e, Error::PinBlocked));
    assert_eq!(tx.pin_status().unwrap(), PinStatus::Blocked);

    assert_err(tx.unblock_pin(&puk("87654321"), &pin("2468")), |e| {
        matches!(e, Error::WrongPuk { tries_left: 2 })
    });
    tx.unblock_pin(&puk(PUK), &pin("2468")).unwrap();
    assert_eq!(
        tx.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    tx.verify_pin(&pin("2468")).unwrap();
    assert_eq!(tx.pin_status().unwrap(), PinStatus::Verified);
    tx.logout().unwrap();
    assert_eq!(
        tx.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    drop(tx);
    assert_eq!(CardFile::open(&path).unwrap().pin_tries_left(), 3);
    assert_eq!(CardFile::open(&path).unwrap().puk_tries_left(), 3);
}

#[test]
fn pin_and_puk_change() {
    let bed = TestBed::start().unwrap();
    let (_inserted, mut card) = insert_new_card(&bed, 6, 0);
    let tx = card.transaction().unwrap();
    assert_err(tx.change_pin(&pin("000000"), &pin("13579")), |e| {
        matches!(e, Error::WrongPin { tries_left: 2 })
    });
    tx.change_pin(&pin(PIN), &pin("13579")).unwrap();
    assert_err(tx.verify_pin(&pin(PIN)), |e| {
        matches!(e, Error::WrongPin { .. })
    });
    tx.verify_pin(&pin("13579")).unwrap();

    assert_err(tx.change_puk(&puk("00000000"), &puk("11223344")), |e| {
        matches!(e, Error::WrongPuk { tries_left: 2 })
    });
    tx.change_puk(&puk(PUK), &puk("11223344")).unwrap();
    assert_err(tx.unblock_pin(&puk(PUK), &pin("1111")), |e| {
        matches!(e, Error::WrongPuk { .. })
    });
    tx.unblock_pin(&puk("11223344"), &pin("1111")).unwrap();
    tx.verify_pin(&pin("1111")).unwrap();
    // Bad formats never reach the card.
    assert!(matches!(Pin::new("12ab"), Err(Error::BadPinFormat)));
    assert!(matches!(Pin::new("123"), Err(Error::BadPinFormat)));
}

#[test]
fn put_data_needs_the_management_key_and_reads_back() {
    let bed = TestBed::start().unwrap();
    let (_inserted, mut card) = insert_new_card(&bed, 7, 0);
    let tx = card.transaction().unwrap();
    assert_err(tx.put_data(object::PRINTED_INFORMATION, b"Jane"), |e| {
        matches!(e, Error::SecurityStatusNotSatisfied)
    });
    tx.authenticate_management_key(&mut factory()).unwrap();
    // Long enough for command chaining on the way in and GET RESPONSE on the way out.
    let content: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
    tx.put_data(object::PRINTED_INFORMATION, &content).unwrap();
    assert_err(tx.get_data(object::PRINTED_INFORMATION), |e| {
        matches!(e, Error::SecurityStatusNotSatisfied)
    });
    tx.verify_pin(&pin(PIN)).unwrap();
    assert_eq!(
        tx.get_data(object::PRINTED_INFORMATION).unwrap().as_slice(),
        content
    );
    tx.put_data(object::KEY_HISTORY, &[0xC1, 0x01, 0x00])
        .unwrap();
    assert_eq!(
        tx.get_data(object::KEY_HISTORY).unwrap().as_slice(),
        [0xC1, 0x01, 0x00]
    );
    // The discovery object comes in its own 7E wrapper.
    let discovery = tx.get_data(object::DISCOVERY).unwrap();
    assert_eq!(
        piv::tlv::find(&discovery, 0x4F).unwrap(),
        Some(&piv::consts::AID[..])
    );
}

#[test]
fn set_management_key_then_only_the_new_key_authenticates() {
    let bed = TestBed::start().unwrap();
    let (_inserted, mut card) = insert_new_card(&bed, 8, 1);
    let new_tdes = ManagementKey::new(piv::consts::alg::TDES, &[0x5A; 24]).unwrap();
    {
        let tx = card.transaction().unwrap();
        assert_err(tx.set_management_key(&new_tdes), |e| {
            matches!(e, Error::SecurityStatusNotSatisfied)
        });
        tx.authenticate_management_key(&mut factory()).unwrap();
        tx.set_management_key(&new_tdes).unwrap();
    }
    {
        let tx = card.transaction().unwrap();
        assert_err(tx.authenticate_management_key(&mut factory()), |e| {
            matches!(e, Error::ManagementKeyRejected)
        });
        tx.authenticate_management_key(&mut LocalResponder::new(new_tdes.clone()))
            .unwrap();
        // And on to AES-128.
        let aes = ManagementKey::from_hex("00112233445566778899AABBCCDDEEFF").unwrap();
        tx.set_management_key(&aes).unwrap();
        drop(tx);
        let tx = card.transaction().unwrap();
        assert!(tx
            .authenticate_management_key(&mut LocalResponder::new(new_tdes))
            .is_err());
        tx.authenticate_management_key(&mut LocalResponder::new(aes))
            .unwrap();
        tx.put_data(object::PRINTED_INFORMATION, b"ok").unwrap();
    }
}

#[test]
fn card_state_persists_across_reinsertion() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 9);
    let inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let mut ca = TestCa::new("Test CA").unwrap();
    let public = {
        let mut card = connect(&bed, 0).unwrap();
        let public = provision(&mut card, &mut ca, key::AUTHENTICATION, KeyAlgorithm::P256);
        let tx = card.transaction().unwrap();
        tx.change_pin(&pin(PIN), &pin("8642")).unwrap();
        tx.verify_pin(&pin("8642")).unwrap();
        public
    };
    bed.remove(0, inserted).unwrap();

    // Into the other reader this time.
    let _inserted = bed.insert(1, &path, Faults::default()).unwrap();
    let mut card = connect(&bed, 1).unwrap();
    let tx = card.transaction().unwrap();
    assert_eq!(tx.card_serial().unwrap(), serial(9));
    // A new power cycle: the PIN must be presented again, and it is the changed one.
    assert_eq!(
        tx.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    tx.verify_pin(&pin("8642")).unwrap();
    let cert = tx.read_certificate(key::AUTHENTICATION).unwrap();
    assert_eq!(cert.public_key().unwrap(), public);
    let sig = tx
        .sign(key::AUTHENTICATION, KeyAlgorithm::P256, b"after")
        .unwrap();
    cert.verify(b"after", &sig).unwrap();
}

#[test]
fn leaving_the_card_keeps_the_pin_verified_and_reset_clears_it() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 10);
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    {
        let mut card = connect(&bed, 0).unwrap();
        card.transaction().unwrap().verify_pin(&pin(PIN)).unwrap();
        // Dropped here: disconnects leaving the card.
    }
    let mut card = connect(&bed, 0).unwrap();
    assert_eq!(
        card.transaction().unwrap().pin_status().unwrap(),
        PinStatus::Verified
    );
    card.disconnect().unwrap();
    let card = connect(&bed, 0).unwrap();
    card.reset().unwrap();
    let mut card = connect(&bed, 0).unwrap();
    assert_eq!(
        card.transaction().unwrap().pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
}

#[test]
fn pulled_card_gives_card_removed_and_keeps_its_state() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 11);
    let public = provision_and_remove(&bed, &path);

    let faults = Faults::pull_after_apdus(3);
    let _inserted = bed.insert(0, &path, faults).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let outcome = (|| -> Result<(), Error> {
        let tx = card.transaction()?;
        for _ in 0..10 {
            tx.verify_pin(&pin(PIN))?;
            tx.sign(key::AUTHENTICATION, KeyAlgorithm::P256, b"x")?;
        }
        Ok(())
    })();
    assert_err(outcome, |e| matches!(e, Error::CardRemoved));
    bed.wait_card(0, false).unwrap();
    assert_err(card.transaction().map(drop), |e| {
        matches!(e, Error::CardRemoved)
    });
    drop(card);

    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    assert_eq!(
        tx.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    tx.verify_pin(&pin(PIN)).unwrap();
    let sig = tx
        .sign(key::AUTHENTICATION, KeyAlgorithm::P256, b"x")
        .unwrap();
    public.verify(b"x", &sig).unwrap();
    tx.read_certificate(key::AUTHENTICATION)
        .unwrap()
        .verify(b"x", &sig)
        .unwrap();
}

#[test]
fn slow_card_still_answers() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 12);
    let delay = Duration::from_millis(300);
    let faults = Faults::reply_delay(delay);
    let _inserted = bed.insert(0, &path, faults).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let started = Instant::now();
    let tx = card.transaction().unwrap();
    assert_eq!(tx.card_serial().unwrap(), serial(12));
    tx.verify_pin(&pin(PIN)).unwrap();
    // SELECT, GET DATA and VERIFY: each waited for.
    assert!(started.elapsed() >= delay * 3, "{:?}", started.elapsed());
}

#[test]
fn forced_status_words_give_typed_errors() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 13);
    let with = |ins: u8, sw: u16| Faults::force_status(ins, sw);
    use piv::consts::ins;

    let inserted = bed.insert(0, &path, with(ins::SELECT, 0x6A82)).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    assert_err(card.transaction().map(drop), |e| matches!(e, Error::NotPiv));
    drop(card);
    bed.remove(0, inserted).unwrap();

    let inserted = bed.insert(0, &path, with(ins::VERIFY, 0x6983)).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    assert_err(tx.verify_pin(&pin(PIN)), |e| matches!(e, Error::PinBlocked));
    assert_eq!(tx.pin_status().unwrap(), PinStatus::Blocked);
    drop(tx);
    drop(card);
    bed.remove(0, inserted).unwrap();

    let inserted = bed.insert(0, &path, with(ins::GET_DATA, 0x6A82)).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    assert_err(tx.card_serial(), |e| matches!(e, Error::NotFound));
    drop(tx);
    drop(card);
    bed.remove(0, inserted).unwrap();

    let inserted = bed
        .insert(0, &path, with(ins::GENERAL_AUTHENTICATE, 0x6982))
        .unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    assert_err(tx.authenticate_management_key(&mut factory()), |e| {
        matches!(e, Error::ManagementKeyRejected)
    });
    assert_err(
        tx.sign(key::AUTHENTICATION, KeyAlgorithm::P256, b"x"),
        |e| matches!(e, Error::SecurityStatusNotSatisfied),
    );
    drop(tx);
    drop(card);
    bed.remove(0, inserted).unwrap();

    let _inserted = bed.insert(0, &path, with(ins::PUT_DATA, 0x6A84)).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    tx.authenticate_management_key(&mut factory()).unwrap();
    let e = assert_err(tx.put_data(object::PRINTED_INFORMATION, b"x"), |e| {
        matches!(e, Error::Status(StatusWord::NOT_ENOUGH_MEMORY))
    });
    assert!(e.to_string().contains("6A84"));
    // The faults end with the card: nothing of it was written.
    drop(tx);
    drop(card);
    assert_eq!(CardFile::open(&path).unwrap().pin_tries_left(), 3);
}

#[test]
fn corrupted_replies_give_errors_not_panics() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 14);
    let public = provision_and_remove(&bed, &path);
    let faults = Faults::corrupt_replies();
    let _inserted = bed.insert(0, &path, faults).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    // The card flips every data byte of its replies and keeps the status words: each reply
    // that carries data must come out as a typed error, never a panic or a wrong answer taken
    // for a right one.
    let tx = card.transaction().unwrap();
    assert_err(tx.card_serial(), |e| matches!(e, Error::Malformed(_)));
    assert_err(tx.read_certificate(key::AUTHENTICATION), |e| {
        matches!(e, Error::Malformed(_))
    });
    assert_err(tx.get_data(object::DISCOVERY), |e| {
        matches!(e, Error::Malformed(_))
    });
    assert_err(tx.generate_key(key::SIGNATURE, KeyAlgorithm::P256), |e| {
        // Without the management key the card refuses before any data is sent.
        matches!(e, Error::SecurityStatusNotSatisfied)
    });
    // The witness comes back flipped, so the exchange stops at it.
    assert_err(tx.authenticate_management_key(&mut factory()), |e| {
        matches!(e, Error::Malformed(_))
    });
    // A reply without data is untouched: the PIN still verifies.
    tx.verify_pin(&pin(PIN)).unwrap();
    assert_err(
        tx.sign(key::AUTHENTICATION, KeyAlgorithm::P256, b"x"),
        |e| matches!(e, Error::Malformed(_)),
    );
    drop(tx);
    drop(card);
    // The key on the card is still the one provisioned.
    let file = CardFile::open(&path).unwrap();
    let cert =
        Certificate::from_der(&file.state().certificate(key::AUTHENTICATION).unwrap()).unwrap();
    assert_eq!(cert.public_key().unwrap(), public);
}

#[test]
fn refused_power_on_is_an_error_not_a_hang() {
    let bed = TestBed::start().unwrap();
    let path = new_card(&bed, 15);
    let faults = Faults::refuse_power_on();
    let _inserted = cardsim::insert(&path, bed.vpcd_addr(0), faults).unwrap();
    // pcscd may show the reader empty or holding a mute card; either way every connection
    // attempt fails, and fails promptly.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let started = Instant::now();
        let e = connect(&bed, 0).unwrap_err();
        assert!(
            matches!(e, Error::CardRemoved | Error::Pcsc(_)),
            "unexpected {e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stopped_or_restarted_pcscd_gives_service_unavailable() {
    let mut bed = TestBed::start().unwrap();
    let path = new_card(&bed, 16);
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let ctx = bed.context().unwrap();
    let reader = CString::new(bed.reader_name(0)).unwrap();
    let mut card = PivCard::connect(&ctx, &reader).unwrap();
    bed.stop_pcscd();
    let e = assert_err(card.transaction().map(drop), |e| {
        matches!(e, Error::ServiceUnavailable)
    });
    assert!(e.to_string().contains("pcscd"));
    assert_err(PivCard::connect(&ctx, &reader), |e| {
        matches!(e, Error::ServiceUnavailable)
    });

    // After a restart the old context stays dead; a new one works.
    bed.restart_pcscd().unwrap();
    assert_err(card.transaction().map(drop), |e| {
        matches!(e, Error::ServiceUnavailable)
    });
    assert_err(PivCard::connect(&ctx, &reader), |e| {
        matches!(e, Error::ServiceUnavailable)
    });
    // The card's link went with the old vpcd: insert it again.
    drop(card);
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let mut card = connect(&bed, 0).unwrap();
    assert_eq!(
        card.transaction().unwrap().card_serial().unwrap(),
        serial(16)
    );
}

#[test]
fn a_certificate_written_by_the_client_reads_back_with_yubico_piv_tool() {
    let bed = TestBed::start().unwrap();
    let _inserted = insert_new_yubikey(&bed, 17, 0);
    let mut ca = TestCa::new("Test CA").unwrap();
    {
        let mut card = connect(&bed, 0).unwrap();
        provision(
            &mut card,
            &mut ca,
            key::AUTHENTICATION,
            KeyAlgorithm::Rsa2048,
        );
    }
    let (var, socket) = bed.client_env();
    let out = std::process::Command::new("yubico-piv-tool")
        .env(var, socket)
        .args([
            "-r",
            &bed.reader_name(0),
            "-a",
            "read-certificate",
            "-s",
            "9a",
            "-K",
            "DER",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = Certificate::from_der(&out.stdout).unwrap();
    assert!(cert.subject().contains("CN=Jane Doe"));
    let mut card = connect(&bed, 0).unwrap();
    let tx = card.transaction().unwrap();
    assert_eq!(tx.read_certificate(key::AUTHENTICATION).unwrap(), cert);
}

#[test]
fn yubico_piv_tool_uses_the_management_key_the_client_set() {
    let bed = TestBed::start().unwrap();
    let _inserted = insert_new_yubikey(&bed, 18, 1);
    let new_key_hex = "0F1E2D3C4B5A69780F1E2D3C4B5A69780F1E2D3C4B5A6978";
    {
        let mut card = connect(&bed, 1).unwrap();
        let tx = card.transaction().unwrap();
        tx.authenticate_management_key(&mut factory()).unwrap();
        tx.set_management_key(&ManagementKey::from_hex(new_key_hex).unwrap())
            .unwrap();
    }
    let (var, socket) = bed.client_env();
    let tool = |key: &str| {
        std::process::Command::new("yubico-piv-tool")
            .env(var, &socket)
            .args(["-r", &bed.reader_name(1), &format!("--key={key}")])
            .args(["-a", "generate", "-s", "9d", "-A", "ECCP256"])
            .output()
            .unwrap()
    };
    // The factory key no longer works for the tool; the one the client set does.
    let refused = tool(&hex::encode(piv::management_key::FACTORY_3DES));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Failed authentication"));
    let out = tool(new_key_hex);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    let (label, spki) = der::pem::decode_vec(pem.trim().as_bytes()).unwrap();
    assert_eq!(label, "PUBLIC KEY");
    let public = PublicKey::from_spki_der(&spki).unwrap();

    // And the client signs with the key the tool generated.
    let mut card = connect(&bed, 1).unwrap();
    let tx = card.transaction().unwrap();
    tx.verify_pin(&pin(PIN)).unwrap();
    let sig = tx
        .sign(key::KEY_MANAGEMENT, KeyAlgorithm::P256, b"interop")
        .unwrap();
    public.verify(b"interop", &sig).unwrap();
}
