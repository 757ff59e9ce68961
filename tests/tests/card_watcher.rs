//! The agent's card watcher over the real stack: a private pcscd, the vpcd readers and virtual
//! cards. Insertions, removals, swaps, two readers, pcscd stopping and coming back, cards that
//! cannot be read, a prompt stop and an idle thread that sleeps.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests --test card_watcher`.

use agent::card::{expiry, CardEvent, CardIdentity, CardWatcher, ReaderSnapshot};
use cardsim::{AtrProfile, CardFile, CardSpec, Faults};
use piv::{CardSerial, Certificate, KeyAlgorithm};
use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testbed::issue::{issue_card, Issuance};
use testbed::pki::TestCa;
use testbed::TestBed;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// How long an event may take: pcscd notices a card within about 400 ms, then the card is read.
const EVENT_TIMEOUT: Duration = Duration::from_secs(6);
/// pcscd back after a restart, with the watcher's pause between reconnects (at most 5 s).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(15);

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x28, n])
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The watcher's events, read with a deadline.
struct Events {
    rx: UnboundedReceiver<CardEvent>,
    rt: tokio::runtime::Runtime,
}

impl Events {
    fn next(&mut self, within: Duration) -> CardEvent {
        let rx = &mut self.rx;
        match self
            .rt
            .block_on(async { tokio::time::timeout(within, rx.recv()).await })
        {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the watcher ended its event stream"),
            Err(_) => panic!("no card event within {within:?}"),
        }
    }

    /// Asserts that nothing happens for `quiet`.
    fn none_for(&mut self, quiet: Duration) {
        let rx = &mut self.rx;
        if let Ok(event) = self
            .rt
            .block_on(async { tokio::time::timeout(quiet, rx.recv()).await })
        {
            panic!("unexpected event {event:?}");
        }
    }

    fn inserted(&mut self) -> CardIdentity {
        match self.next(EVENT_TIMEOUT) {
            CardEvent::Inserted(identity) => identity,
            other => panic!("expected Inserted, got {other:?}"),
        }
    }

    fn removed(&mut self) -> String {
        match self.next(EVENT_TIMEOUT) {
            CardEvent::Removed { reader } => reader,
            other => panic!("expected Removed, got {other:?}"),
        }
    }

    fn available(&mut self, within: Duration) -> Vec<ReaderSnapshot> {
        match self.next(within) {
            CardEvent::Available(readers) => readers,
            other => panic!("expected Available, got {other:?}"),
        }
    }
}

fn start_watcher() -> (CardWatcher, Events) {
    let (tx, rx) = unbounded_channel();
    let watcher = CardWatcher::start(tx).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    (watcher, Events { rx, rt })
}

/// [`start_watcher`], with its first report of the readers taken.
fn start_watcher_past_first_report() -> (CardWatcher, Events) {
    let (watcher, mut events) = start_watcher();
    events.available(EVENT_TIMEOUT);
    (watcher, events)
}

/// A card issued with a 9A key and certificate (valid `days`), then taken out again.
fn issued(
    bed: &TestBed,
    ca: &mut TestCa,
    n: u8,
    profile: AtrProfile,
    days: i64,
) -> (PathBuf, Certificate) {
    let issuance = Issuance {
        profile,
        algorithm: KeyAlgorithm::P256,
        days_valid: days,
        ..Issuance::new(serial(n), &format!("Holder {n}"))
    };
    let card = issue_card(bed, 0, ca, &issuance).unwrap();
    bed.remove(0, card.inserted).unwrap();
    (card.file, card.certificate)
}

/// A blank card (CHUID, no certificate).
fn blank(bed: &TestBed, n: u8, profile: AtrProfile) -> PathBuf {
    let path = bed.dir().join(format!("blank-{n}.json"));
    let spec = CardSpec {
        profile,
        ..CardSpec::new(serial(n))
    };
    CardFile::create(&path, &spec).unwrap();
    path
}

fn assert_identity(identity: &CardIdentity, slot: usize, n: u8, profile: AtrProfile) {
    assert_eq!(identity.reader, testbed::reader_name(slot));
    assert_eq!(identity.serial, Some(serial(n)));
    assert_eq!(identity.atr, profile.atr());
    assert_eq!(
        identity.card_type.to_ascii_lowercase().replace(' ', "-"),
        profile.name()
    );
    assert!(identity.piv);
}

fn empty_readers() -> Vec<ReaderSnapshot> {
    (0..2)
        .map(|slot| ReaderSnapshot {
            reader: testbed::reader_name(slot),
            card: None,
        })
        .collect()
}

#[test]
fn insertion_and_removal_identify_the_card_with_its_expiry() {
    let bed = TestBed::start().unwrap();
    let mut ca = TestCa::new("Test CA").unwrap();
    let (path, cert) = issued(&bed, &mut ca, 1, AtrProfile::NhsCis, 30);
    let (watcher, mut events) = start_watcher();
    assert_eq!(events.available(EVENT_TIMEOUT), empty_readers());

    let inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let card = events.inserted();
    assert_identity(&card, 0, 1, AtrProfile::NhsCis);
    assert_eq!(card.card_type, "NHS CIS");
    let certificate = card.certificate.clone().expect("the 9A certificate");
    assert_eq!(certificate.der, cert.der());
    assert_eq!(certificate.holder.as_deref(), Some("Holder 1"));
    assert_eq!(
        certificate.holder_id, None,
        "a test CA's certificate has no UID"
    );
    let not_after = cert
        .not_after()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(certificate.not_after, not_after);

    let now = now_unix();
    let status = card.status(now);
    assert_eq!(status.serial.as_deref(), Some("4082A001132F2801"));
    assert_eq!(status.card_type, "NHS CIS");
    assert_eq!(status.holder.as_deref(), Some("Holder 1"));
    // 30 days from issue, less the time since (none within the same second).
    assert!(
        matches!(status.days_left, Some(29 | 30)),
        "{:?}",
        status.days_left
    );
    assert!(!status.expired);
    assert_eq!(status.expires_on, Some(expiry(not_after, now).expires_on));

    // Our own reading of the card (connect, transaction) is no new card.
    events.none_for(Duration::from_millis(1200));

    bed.remove(0, inserted).unwrap();
    assert_eq!(events.removed(), bed.reader_name(0));
    events.none_for(Duration::from_millis(800));
    watcher.stop();
}

#[test]
fn an_expired_card_and_cards_present_at_start_are_in_the_first_snapshot() {
    let bed = TestBed::start().unwrap();
    let mut ca = TestCa::new("Test CA").unwrap();
    let (expired, _) = issued(&bed, &mut ca, 2, AtrProfile::Oberthur, -3);
    let yubikey = blank(&bed, 3, AtrProfile::YubiKey);
    let _a = bed.insert(0, &expired, Faults::default()).unwrap();
    let _b = bed.insert(1, &yubikey, Faults::default()).unwrap();

    let (watcher, mut events) = start_watcher();
    let readers = events.available(EVENT_TIMEOUT);
    assert_eq!(readers.len(), 2);
    let first = readers[0].card.clone().expect("a card in reader 0");
    assert_identity(&first, 0, 2, AtrProfile::Oberthur);
    let status = first.status(now_unix());
    assert!(status.expired);
    assert_eq!(
        status.days_left,
        Some(-4),
        "expired three days and some seconds ago"
    );
    let second = readers[1].card.clone().expect("a card in reader 1");
    assert_identity(&second, 1, 3, AtrProfile::YubiKey);
    assert_eq!(second.certificate, None);
    assert_eq!(second.status(now_unix()).expires_on, None);
    events.none_for(Duration::from_millis(1000));
    watcher.stop();
}

#[test]
fn cards_in_both_readers_and_another_card_swapped_in() {
    let bed = TestBed::start().unwrap();
    let (watcher, mut events) = start_watcher();
    assert_eq!(events.available(EVENT_TIMEOUT), empty_readers());

    let a = blank(&bed, 4, AtrProfile::Gemalto);
    let b = blank(&bed, 5, AtrProfile::Piv);
    let c = blank(&bed, 6, AtrProfile::YubiKey);
    // Both at once: connected together, seen in either order.
    let in_a = cardsim::insert(&a, bed.vpcd_addr(0), Faults::default()).unwrap();
    let _in_b = cardsim::insert(&b, bed.vpcd_addr(1), Faults::default()).unwrap();
    let mut seen = [events.inserted(), events.inserted()];
    seen.sort_by(|x, y| x.reader.cmp(&y.reader));
    assert_identity(&seen[0], 0, 4, AtrProfile::Gemalto);
    assert_identity(&seen[1], 1, 5, AtrProfile::Piv);

    // Out, and another card in: seen as a removal and an insertion.
    bed.remove(0, in_a).unwrap();
    assert_eq!(events.removed(), bed.reader_name(0));
    let in_c = bed.insert(0, &c, Faults::default()).unwrap();
    assert_identity(&events.inserted(), 0, 6, AtrProfile::YubiKey);

    // Swapped at once, maybe between two of pcscd's looks at the reader: a removal and an
    // insertion, or a change of the event counter. Either way the new card is reported.
    in_c.remove().unwrap();
    let _in_a = cardsim::insert(&a, bed.vpcd_addr(0), Faults::default()).unwrap();
    let now_in = match events.next(EVENT_TIMEOUT) {
        CardEvent::Removed { reader } => {
            assert_eq!(reader, bed.reader_name(0));
            events.inserted()
        }
        CardEvent::Changed(identity) => identity,
        other => panic!("expected the swap, got {other:?}"),
    };
    assert_identity(&now_in, 0, 4, AtrProfile::Gemalto);
    events.none_for(Duration::from_millis(800));
    watcher.stop();
}

#[test]
fn a_card_swapped_while_the_watcher_is_busy_shows_in_the_event_counter() {
    let bed = TestBed::start().unwrap();
    let (watcher, mut events) = start_watcher_past_first_report();
    let a = blank(&bed, 15, AtrProfile::NhsCis);
    let c = blank(&bed, 16, AtrProfile::Oberthur);
    let slow = blank(&bed, 17, AtrProfile::Piv);
    let in_a = bed.insert(0, &a, Faults::default()).unwrap();
    assert_identity(&events.inserted(), 0, 15, AtrProfile::NhsCis);

    // A card that takes a second per reply keeps the watcher reading it for seconds, while
    // the card in the other reader is swapped: the watcher never sees that reader empty.
    let sluggish = Faults::reply_delay(Duration::from_millis(1000));
    let _in_slow = bed.insert(1, &slow, sluggish).unwrap();
    bed.remove(0, in_a).unwrap();
    let _in_c = bed.insert(0, &c, Faults::default()).unwrap();

    let slow_card = events.inserted();
    assert_identity(&slow_card, 1, 17, AtrProfile::Piv);
    match events.next(EVENT_TIMEOUT) {
        CardEvent::Changed(identity) => assert_identity(&identity, 0, 16, AtrProfile::Oberthur),
        other => panic!("expected Changed, got {other:?}"),
    }
    events.none_for(Duration::from_millis(800));
    watcher.stop();
}

#[test]
fn pcscd_stopping_and_coming_back_is_reported_once_each() {
    let mut bed = TestBed::start().unwrap();
    let path = blank(&bed, 7, AtrProfile::NhsCis);
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let (watcher, mut events) = start_watcher();
    let readers = events.available(EVENT_TIMEOUT);
    assert_identity(
        readers[0].card.as_ref().expect("the card"),
        0,
        7,
        AtrProfile::NhsCis,
    );

    bed.stop_pcscd();
    match events.next(EVENT_TIMEOUT) {
        CardEvent::Unavailable(message) => assert!(message.contains("pcscd"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Said once, however many reconnects fail meanwhile.
    events.none_for(Duration::from_millis(1600));

    bed.restart_pcscd().unwrap();
    // The card's link went with the old vpcd: insert it again.
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    let readers = events.available(RECONNECT_TIMEOUT);
    assert_eq!(readers.len(), 2);
    // The watcher may have come back before the card did.
    let card = match readers[0].card.clone() {
        Some(card) => card,
        None => events.inserted(),
    };
    assert_identity(&card, 0, 7, AtrProfile::NhsCis);
    events.none_for(Duration::from_millis(800));
    watcher.stop();
}

#[test]
fn a_card_that_refuses_select_is_reported_as_not_piv() {
    let bed = TestBed::start().unwrap();
    let path = blank(&bed, 8, AtrProfile::NhsCis);
    let (watcher, mut events) = start_watcher_past_first_report();
    let faults = Faults::force_status(0xA4, 0x6A82);
    let inserted = bed.insert(0, &path, faults).unwrap();
    let card = events.inserted();
    assert_eq!(card.reader, bed.reader_name(0));
    assert!(!card.piv);
    assert_eq!((card.serial, card.certificate), (None, None));
    assert_eq!(card.card_type, "NHS CIS");
    assert_eq!(card.atr, AtrProfile::NhsCis.atr());
    events.none_for(Duration::from_millis(1200));
    bed.remove(0, inserted).unwrap();
    events.removed();
    watcher.stop();
}

#[test]
fn cards_that_cannot_be_read_are_reported_once_with_what_is_known() {
    let bed = TestBed::start().unwrap();
    let path = blank(&bed, 9, AtrProfile::Gemalto);
    let (watcher, mut events) = start_watcher_past_first_report();

    // Garbled replies: the applet answers, nothing it sends can be read.
    let garbled = Faults::corrupt_replies();
    let inserted = bed.insert(0, &path, garbled).unwrap();
    let card = events.inserted();
    assert_eq!(card.card_type, "Gemalto");
    assert_eq!((card.serial, card.certificate), (None, None));
    events.none_for(Duration::from_millis(1200));
    bed.remove(0, inserted).unwrap();
    events.removed();

    // Pulled after the SELECT: what the ATR says, not PIV, then the removal.
    let pulled = Faults::pull_after_apdus(1);
    let _inserted = cardsim::insert(&path, bed.vpcd_addr(0), pulled).unwrap();
    let card = events.inserted();
    assert_eq!((card.card_type, card.piv), ("Gemalto", false));
    assert_eq!(card.serial, None);
    assert_eq!(events.removed(), bed.reader_name(0));
    events.none_for(Duration::from_millis(1200));
    watcher.stop();
}

#[test]
fn a_card_refusing_power_on_sets_off_no_retries() {
    let bed = TestBed::start().unwrap();
    let (watcher, mut events) = start_watcher_past_first_report();
    let mute = Faults::refuse_power_on();
    // vpcd asks for the ATR before it calls the card present, so pcscd never shows this card;
    // the watcher stays asleep rather than trying again and again.
    let refusing =
        cardsim::insert(&blank(&bed, 10, AtrProfile::Piv), bed.vpcd_addr(0), mute).unwrap();
    events.none_for(Duration::from_millis(2000));
    assert!(!refusing.is_connected(), "the card hung up on power-on");
    assert!(watcher.is_running());

    // The reader still works for the next card.
    let _good = bed
        .insert(0, &blank(&bed, 11, AtrProfile::Piv), Faults::default())
        .unwrap();
    assert_identity(&events.inserted(), 0, 11, AtrProfile::Piv);
    watcher.stop();
}

/// The kernel's thread id of the watcher thread, found by its name.
fn watcher_tid() -> u32 {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == agent::card::watcher::THREAD_NAME {
            found.push(task.file_name().to_string_lossy().parse::<u32>().unwrap());
        }
    }
    assert_eq!(found.len(), 1, "one watcher thread, found {found:?}");
    found[0]
}

/// Voluntary and involuntary context switches of thread `tid` so far.
fn context_switches(tid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in the thread's status"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

#[test]
fn an_idle_watcher_sleeps() {
    let bed = TestBed::start().unwrap();
    let _card = bed
        .insert(1, &blank(&bed, 12, AtrProfile::NhsCis), Faults::default())
        .unwrap();
    let (watcher, mut events) = start_watcher_past_first_report();
    // Let the reading of the card settle.
    events.none_for(Duration::from_millis(500));
    let tid = watcher_tid();
    let before = context_switches(tid);
    std::thread::sleep(Duration::from_secs(2));
    let after = context_switches(tid);
    let woke = after.0 - before.0;
    println!(
        "idle watcher over 2 s: {woke} voluntary, {} involuntary context switches",
        after.1 - before.1
    );
    assert!(woke <= 4, "the idle watcher woke {woke} times in 2 s");
    watcher.stop();
}

#[test]
fn stop_returns_promptly_when_idle_and_while_pcscd_is_away() {
    let mut bed = TestBed::start().unwrap();
    let (watcher, _events) = start_watcher_past_first_report();
    let started = Instant::now();
    watcher.stop();
    let idle_stop = started.elapsed();
    println!("stop while waiting: {idle_stop:?}");
    assert!(idle_stop < Duration::from_secs(1), "{idle_stop:?}");

    // Pausing between reconnects, with the pause grown to seconds.
    let (watcher, mut events) = start_watcher_past_first_report();
    bed.stop_pcscd();
    assert!(matches!(
        events.next(EVENT_TIMEOUT),
        CardEvent::Unavailable(_)
    ));
    std::thread::sleep(Duration::from_millis(3500));
    let started = Instant::now();
    watcher.stop();
    let backoff_stop = started.elapsed();
    println!("stop while pcscd is away: {backoff_stop:?}");
    assert!(backoff_stop < Duration::from_secs(1), "{backoff_stop:?}");

    // Started while pcscd is away: the first word is that it is unavailable.
    let (watcher, mut events) = start_watcher();
    assert!(matches!(
        events.next(EVENT_TIMEOUT),
        CardEvent::Unavailable(_)
    ));
    bed.restart_pcscd().unwrap();
    assert_eq!(events.available(RECONNECT_TIMEOUT), empty_readers());
    watcher.stop();
}

#[test]
fn the_thread_ends_when_nobody_listens() {
    let bed = TestBed::start().unwrap();
    let (watcher, events) = start_watcher_past_first_report();
    drop(events);
    assert!(watcher.is_running());
    // The next thing it has to say finds nobody to say it to.
    let _card = bed
        .insert(0, &blank(&bed, 13, AtrProfile::NhsCis), Faults::default())
        .unwrap();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while watcher.is_running() {
        assert!(Instant::now() < deadline, "the watcher kept running");
        std::thread::sleep(Duration::from_millis(20));
    }
    watcher.stop();
}

/// When a bare `SCardGetStatusChange` watcher on its own context sees reader `slot` become
/// present.
fn bare_watcher(slot: usize) -> std::thread::JoinHandle<Instant> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let mut states = [pcsc::ReaderState::new(
        CString::new(testbed::reader_name(slot)).unwrap(),
        pcsc::State::UNAWARE,
    )];
    ctx.get_status_change(Duration::from_secs(2), &mut states)
        .unwrap();
    assert!(!states[0].event_state().contains(pcsc::State::PRESENT));
    std::thread::spawn(move || loop {
        states[0].sync_current_state();
        ctx.get_status_change(EVENT_TIMEOUT, &mut states).unwrap();
        if states[0].event_state().contains(pcsc::State::PRESENT) {
            return Instant::now();
        }
    })
}

#[test]
fn insertion_to_identified_against_a_bare_watcher() {
    let bed = TestBed::start().unwrap();
    let mut ca = TestCa::new("Test CA").unwrap();
    // The default issuance: RSA-2048, as the cards in the field.
    let issuance = Issuance::new(serial(14), "Jane Doe");
    let card = issue_card(&bed, 0, &mut ca, &issuance).unwrap();
    bed.remove(0, card.inserted).unwrap();
    let (watcher, mut events) = start_watcher_past_first_report();

    let mut lags = Vec::new();
    for _ in 0..5 {
        let bare = bare_watcher(0);
        let inserted = cardsim::insert(&card.file, bed.vpcd_addr(0), Faults::default()).unwrap();
        let identity = events.inserted();
        let identified_at = Instant::now();
        let seen_at = bare.join().unwrap();
        assert_eq!(identity.serial, Some(serial(14)));
        assert!(identity.certificate.is_some());
        lags.push(identified_at.saturating_duration_since(seen_at));
        bed.remove(0, inserted).unwrap();
        events.removed();
    }
    lags.sort();
    println!(
        "insertion -> Inserted (identified, RSA-2048 certificate) after a bare watcher saw it: \
         min {:?}, median {:?}, max {:?}",
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    watcher.stop();
}
