//! The card file: state survives drop and reopen, and every write is atomic.

use cardsim::state::write_atomically;
use cardsim::{Applet, AtrProfile, CardError, CardFile, CardSpec};
use piv::consts::{alg, key};
use piv::ManagementKey;

fn spec() -> CardSpec {
    let mut spec = CardSpec::new("0102030405060708".parse().unwrap());
    spec.profile = AtrProfile::Gemalto;
    spec.pin = "2468".into();
    spec.management_key = ManagementKey::new(alg::AES_128, &[7; 16]).unwrap();
    spec
}

#[test]
fn state_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let mut card = CardFile::create(&path, &spec()).unwrap();
    let spki = card.generate_key(key::SIGNATURE, alg::ECC_P256).unwrap();
    card.import_certificate(key::SIGNATURE, &[0x30, 0x03, 0x02, 0x01, 0x05])
        .unwrap();
    drop(card);

    let mut card = CardFile::open(&path).unwrap();
    assert_eq!(card.serial().to_string(), "0102030405060708");
    assert_eq!(card.profile(), AtrProfile::Gemalto);
    assert_eq!(
        card.state().key_algorithm(key::SIGNATURE),
        Some(alg::ECC_P256)
    );
    assert_eq!(
        card.state().certificate(key::SIGNATURE).unwrap(),
        [0x30, 0x03, 0x02, 0x01, 0x05]
    );
    assert_eq!(
        card.state().management_key().unwrap(),
        ManagementKey::new(alg::AES_128, &[7; 16]).unwrap()
    );
    // A second key is a different key.
    let again = card
        .generate_key(key::AUTHENTICATION, alg::ECC_P256)
        .unwrap();
    assert_ne!(again, spki);

    // What the applet changes, the file keeps.
    let mut applet = Applet::new(card.state().clone());
    applet.process(&[0, 0xA4, 4, 0, 9, 0xA0, 0, 0, 3, 8, 0, 0, 0x10, 0]);
    let r = applet.process(&[
        0, 0x20, 0, 0x80, 8, b'1', b'1', b'1', b'1', 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    assert_eq!(r, [0x63, 0xC2]);
    assert!(applet.take_changed());
    card.replace_state(applet.state().clone()).unwrap();
    drop(card);
    let card = CardFile::open(&path).unwrap();
    assert_eq!(card.pin_tries_left(), 2);
    assert_eq!(
        card.state().key_slots(),
        vec![key::AUTHENTICATION, key::SIGNATURE]
    );

    // Nothing but the card file is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("card.json")]);
}

#[test]
fn create_refuses_to_overwrite_and_bad_input_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    CardFile::create(&path, &spec()).unwrap();
    assert!(matches!(
        CardFile::create(&path, &spec()),
        Err(CardError::Exists(_))
    ));
    let mut bad = spec();
    bad.pin = "12".into();
    let other = dir.path().join("other.json");
    assert!(matches!(
        CardFile::create(&other, &bad),
        Err(CardError::BadSecret { what: "PIN" })
    ));
    assert!(!other.exists());
    let mut card = CardFile::open(&path).unwrap();
    assert!(matches!(
        card.generate_key(0x9B, alg::ECC_P256),
        Err(CardError::BadSlot(0x9B))
    ));
    assert!(matches!(
        card.import_certificate(0x9A, b"not der"),
        Err(CardError::BadCertificate(0x9A))
    ));
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(
        CardFile::open(&path),
        Err(CardError::Corrupt { .. })
    ));
}

#[test]
fn the_card_file_never_shows_the_secrets_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let card = CardFile::create(&path, &spec()).unwrap();
    let shown = format!("{card:?}");
    assert!(shown.contains("0102030405060708"));
    assert!(!shown.contains("2468"), "{shown}");
    assert!(!shown.contains("07070707"), "{shown}");
}

#[test]
fn a_reader_sees_the_old_or_the_new_file_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let a = vec![b'a'; 256 * 1024];
    let b = vec![b'b'; 192 * 1024];
    write_atomically(&path, &a).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, a, b, stop) = (path.clone(), a.clone(), b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let got = std::fs::read(&path).unwrap();
                assert!(got == a || got == b, "torn read of {} bytes", got.len());
                reads += 1;
            }
            reads
        })
    };
    for i in 0..100 {
        write_atomically(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temporary files left"
    );
    // A failed write leaves the old content and no temporary file behind.
    let blocked = dir.path().join("sub");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("x"), b"x").unwrap();
    assert!(write_atomically(&blocked, b"new").is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    assert_eq!(std::fs::read(&path).unwrap(), a);
}
