//! Lists the PC/SC readers and, for each card in them, its ATR, card type and PIV serial (read
//! from the CHUID): the shortest whole path through the platform's PC/SC stack, one line per
//! reader.
//!
//! ```text
//! cargo run -p piv --example read-cards
//! Virtual PCD 00 00: card 4082A001132F2817, PIV, ATR 3B8880014A434F503332...
//! Virtual PCD 00 01: no card
//! ```
//!
//! Its Windows build runs under Wine in `tests/tests/windows.rs`, and it is the first thing to
//! run on a real Windows machine (`docs/WINDOWS.md`). It exits with status 1 when a card
//! cannot be read, 2 when PC/SC itself fails.

use piv::PivCard;
use std::ffi::CStr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let context = match pcsc::Context::establish(pcsc::Scope::User) {
        Ok(context) => context,
        Err(e) => {
            eprintln!("read-cards: no PC/SC service: {e}");
            return ExitCode::from(2);
        }
    };
    let readers = match context.list_readers_owned() {
        Ok(readers) => readers,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => {
            eprintln!("read-cards: cannot list the readers: {e}");
            return ExitCode::from(2);
        }
    };
    if readers.is_empty() {
        println!("no readers");
    }
    let mut status = ExitCode::SUCCESS;
    for reader in &readers {
        let name = reader.to_string_lossy();
        match read_card(&context, reader) {
            Ok(Some(line)) => println!("{name}: {line}"),
            Ok(None) => println!("{name}: no card"),
            Err(e) => {
                println!("{name}: unreadable card: {e}");
                status = ExitCode::from(1);
            }
        }
    }
    status
}

/// The card in `reader`, described; `None` when the reader is empty.
fn read_card(context: &pcsc::Context, reader: &CStr) -> Result<Option<String>, piv::Error> {
    let mut card = match PivCard::connect(context, reader) {
        Ok(card) => card,
        Err(e) if e.is_card_removed() => return Ok(None),
        Err(e) => return Err(e),
    };
    let serial = card.transaction()?.card_serial()?;
    let atr = hex::encode_upper(card.atr());
    let kind = piv::card_type::card_type(card.atr(), true);
    card.disconnect()?;
    Ok(Some(format!("card {serial}, {kind}, ATR {atr}")))
}
