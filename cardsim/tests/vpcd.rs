//! The serving loop over the vpcd protocol, with a local listener playing vpcd, and the
//! fault injection.

use cardsim::vpcd::{read_frame, write_frame, GET_ATR, POWER_ON, RESET};
use cardsim::{insert, AtrProfile, CardFile, CardSpec, Faults};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SELECT: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];
const WRONG_PIN: &[u8] = &[
    0x00, 0x20, 0x00, 0x80, 0x08, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0xFF, 0xFF,
];
const GET_CHUID: &[u8] = &[
    0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00,
];

/// A card file in a temporary directory and a listener playing vpcd.
struct Rig {
    _dir: tempfile::TempDir,
    card: PathBuf,
    listener: TcpListener,
}

fn rig(profile: AtrProfile) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    let mut spec = CardSpec::new("4082A001132F2817".parse().unwrap());
    spec.profile = profile;
    CardFile::create(&card, &spec).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Rig {
        _dir: dir,
        card,
        listener,
    }
}

impl Rig {
    fn insert(&self, faults: Faults) -> (cardsim::InsertedCard, TcpStream) {
        let card = insert(&self.card, self.listener.local_addr().unwrap(), faults).unwrap();
        let (vpcd, _) = self.listener.accept().unwrap();
        vpcd.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (card, vpcd)
    }
}

fn exchange(vpcd: &mut TcpStream, apdu: &[u8]) -> Option<Vec<u8>> {
    write_frame(vpcd, apdu).ok()?;
    read_frame(vpcd).unwrap()
}

#[test]
fn answers_atr_and_apdus_and_is_removed_cleanly() {
    let rig = rig(AtrProfile::YubiKey);
    let (card, mut vpcd) = rig.insert(Faults::default());
    assert!(card.is_connected());
    write_frame(&mut vpcd, &[POWER_ON]).unwrap();
    let atr = exchange(&mut vpcd, &[GET_ATR]).unwrap();
    assert_eq!(atr, AtrProfile::YubiKey.atr());
    let r = exchange(&mut vpcd, SELECT).unwrap();
    assert_eq!(&r[r.len() - 2..], [0x90, 0x00]);
    let r = exchange(&mut vpcd, GET_CHUID).unwrap();
    assert_eq!((r[0], &r[r.len() - 2..]), (0x53, &[0x90, 0x00][..]));
    // A reset forgets the selection.
    write_frame(&mut vpcd, &[RESET]).unwrap();
    let r = exchange(&mut vpcd, GET_CHUID).unwrap();
    assert_eq!(r, [0x6D, 0x00]);
    assert_eq!(card.apdus_answered(), 3);
    card.remove().unwrap();
    // vpcd sees the card go.
    assert_eq!(read_frame(&mut vpcd).ok().flatten(), None);
}

#[test]
fn a_pulled_card_has_applied_and_persisted_its_last_apdu() {
    let rig = rig(AtrProfile::NhsCis);
    let faults = Faults::pull_after_apdus(2);
    let (card, mut vpcd) = rig.insert(faults);
    assert!(exchange(&mut vpcd, SELECT).is_some());
    // The connection closes after the second answer.
    wrong_pin_then_gone(&rig, card, &mut vpcd);

    // Inserted again, the card remembers.
    let (card, mut vpcd) = rig.insert(Faults::default());
    exchange(&mut vpcd, SELECT).unwrap();
    assert_eq!(
        exchange(&mut vpcd, &[0, 0x20, 0, 0x80]).unwrap(),
        [0x63, 0xC2]
    );
    drop(card);
    assert_eq!(read_frame(&mut vpcd).ok().flatten(), None);
}

/// Sends a wrong PIN as the card's second APDU and asserts it was answered (a try spent), that
/// the card then left the reader on its own, and that its file keeps the spent try.
fn wrong_pin_then_gone(rig: &Rig, card: cardsim::InsertedCard, vpcd: &mut TcpStream) {
    let r = exchange(vpcd, WRONG_PIN).unwrap();
    assert_eq!(r, [0x63, 0xC2]);
    assert_eq!(exchange(vpcd, SELECT), None);
    wait_gone(&card);
    assert_eq!(card.apdus_answered(), 2);
    card.wait().unwrap();
    assert_eq!(CardFile::open(&rig.card).unwrap().pin_tries_left(), 2);
}

/// Waits until the card has left the reader on its own.
fn wait_gone(card: &cardsim::InsertedCard) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while card.is_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!card.is_connected());
}

#[test]
fn a_pull_armed_at_run_time_comes_after_the_counted_answer() {
    let rig = rig(AtrProfile::NhsCis);
    let (card, mut vpcd) = rig.insert(Faults::default());
    assert!(exchange(&mut vpcd, SELECT).is_some());
    // Armed for one more APDU than answered so far; the count is since insertion.
    card.pull_after(card.apdus_answered() + 1);
    assert!(card.is_connected());
    wrong_pin_then_gone(&rig, card, &mut vpcd);

    // Disarmed again, the card keeps answering.
    let (card, mut vpcd) = rig.insert(Faults::default());
    card.pull_after(1);
    card.pull_after(u32::MAX);
    for _ in 0..3 {
        assert!(exchange(&mut vpcd, SELECT).is_some());
    }
    assert!(card.is_connected());
    card.remove().unwrap();
}

#[test]
fn a_pull_armed_for_a_count_already_reached_happens_at_once() {
    let rig = rig(AtrProfile::Piv);
    let (card, mut vpcd) = rig.insert(Faults::default());
    assert!(exchange(&mut vpcd, SELECT).is_some());
    assert!(exchange(&mut vpcd, GET_CHUID).is_some());
    // The card waits for the next APDU; it leaves without one.
    card.pull_after(1);
    wait_gone(&card);
    assert_eq!(read_frame(&mut vpcd).ok().flatten(), None);
    assert_eq!(card.apdus_answered(), 2);
    card.wait().unwrap();

    // Armed before insertion's first APDU with zero: gone before answering anything.
    let (card, mut vpcd) = rig.insert(Faults::default());
    card.pull_after(0);
    wait_gone(&card);
    assert_eq!(exchange(&mut vpcd, SELECT), None);
    assert_eq!(card.apdus_answered(), 0);
    card.wait().unwrap();
}

#[test]
fn a_held_card_answers_nothing_until_released() {
    let rig = rig(AtrProfile::NhsCis);
    let (card, mut vpcd) = rig.insert(Faults::default());
    assert!(exchange(&mut vpcd, SELECT).is_some());
    card.hold_after(card.apdus_answered() + 1);
    assert!(!card.is_held());
    assert_eq!(exchange(&mut vpcd, WRONG_PIN).unwrap(), [0x63, 0xC2]);
    // The counted APDU is answered; the next one (and a control message) waits.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !card.is_held() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(card.is_held());
    write_frame(&mut vpcd, GET_CHUID).unwrap();
    vpcd.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(read_frame(&mut vpcd).is_err(), "a held card answered");
    assert_eq!(card.apdus_answered(), 2);
    assert!(card.is_connected());

    // Released, it answers the waiting command.
    vpcd.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    card.release();
    let r = read_frame(&mut vpcd).unwrap().unwrap();
    assert_eq!(&r[r.len() - 2..], [0x90, 0x00]);
    assert!(!card.is_held());
    assert_eq!(card.apdus_answered(), 3);

    // Armed for a count already reached, it holds the next command; removal still ends it.
    card.hold_after(card.apdus_answered());
    write_frame(&mut vpcd, SELECT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !card.is_held() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(card.is_held());
    card.remove().unwrap();
    assert_eq!(read_frame(&mut vpcd).ok().flatten(), None);
}

#[test]
fn forced_status_corruption_and_delay() {
    let rig = rig(AtrProfile::Piv);
    let faults = Faults {
        force_status: Some((0x20, 0x6983)),
        corrupt_replies: true,
        reply_delay: Some(Duration::from_millis(150)),
        ..Faults::default()
    };
    let (card, mut vpcd) = rig.insert(faults);
    let started = Instant::now();
    let r = exchange(&mut vpcd, SELECT).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Data flipped, status word intact.
    assert_eq!(r[0], 0x61 ^ 0xFF);
    assert_eq!(&r[r.len() - 2..], [0x90, 0x00]);
    // The forced status word, and the PIN was not even tried.
    assert_eq!(exchange(&mut vpcd, WRONG_PIN).unwrap(), [0x69, 0x83]);
    card.remove().unwrap();
    assert_eq!(CardFile::open(&rig.card).unwrap().pin_tries_left(), 3);
}

#[test]
fn refusing_power_on_closes_the_connection() {
    let rig = rig(AtrProfile::Oberthur);
    let faults = Faults::refuse_power_on();
    let (card, mut vpcd) = rig.insert(faults);
    assert_eq!(exchange(&mut vpcd, &[GET_ATR]), None);
    card.wait().unwrap();
}

#[test]
fn a_missing_card_or_reader_is_an_error() {
    let rig = rig(AtrProfile::Piv);
    let missing = rig.card.with_file_name("absent.json");
    let err = insert(
        &missing,
        rig.listener.local_addr().unwrap(),
        Faults::default(),
    )
    .unwrap_err();
    assert!(matches!(err, cardsim::CardError::Read { .. }), "{err}");
    let addr = rig.listener.local_addr().unwrap();
    drop(rig.listener);
    let err = insert(&rig.card, addr, Faults::default()).unwrap_err();
    assert!(matches!(err, cardsim::CardError::Connect { .. }), "{err}");
}
