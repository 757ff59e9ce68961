//! The Windows build under Wine (`docs/WINDOWS.md`): a Windows program of this workspace reads
//! the virtual card through Wine's winscard and the test bed's private pcscd — the same
//! readers, card and serial a Linux client sees.
//!
//! Skipped, saying why, only when the Windows toolchain is not installed (`scripts/setup`
//! installs it). One pcscd per test process: run with `cargo nextest run -p tests --test windows`.

use cardsim::{CardFile, CardSpec, Faults};
use piv::CardSerial;
use testbed::{wine, TestBed};

#[test]
fn a_windows_program_reads_the_card_serial_through_wine_and_the_test_beds_pcscd() {
    if let Some(why) = wine::missing_toolchain() {
        eprintln!("skipped: {why}");
        return;
    }
    let exe = wine::build_example("piv", "read-cards").unwrap();
    let bed = TestBed::start().unwrap();
    let serial: CardSerial = "4082A001132F2817".parse().unwrap();
    let card_file = bed.dir().join("card.json");
    CardFile::create(&card_file, &CardSpec::new(serial)).unwrap();
    let _card = bed.insert(0, &card_file, Faults::default()).unwrap();
    // What a Linux client of the same pcscd reads.
    let atr = bed.connect(0).unwrap().atr().to_vec();
    let kind = piv::card_type::card_type(&atr, true);
    let atr = hex::encode_upper(atr);

    let run = wine::run(&bed, &exe, &[]).unwrap();

    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{}: card {serial}, {kind}, ATR {atr}", bed.reader_name(0)),
            format!("{}: no card", bed.reader_name(1)),
        ],
        "the Windows program sees the readers and the card the test bed made"
    );
}
