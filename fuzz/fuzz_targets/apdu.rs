//! piv's APDU codecs, the client side: a command APDU that parses re-encodes to one that parses
//! to the same command (Le of 256 and "all there is" being one), a response APDU splits and
//! joins back to the same bytes, and no status word makes the helpers panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use piv::apdu::{Command, Response};

/// Le as a number of bytes in a short APDU: 0 and 256 both mean 256.
fn short_le(le: Option<usize>) -> Option<usize> {
    le.map(|n| if n == 256 { 0 } else { n })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = Command::parse(data) {
        let bytes = command.to_bytes();
        let back = Command::parse(&bytes).expect("an encoded command parses");
        assert_eq!(
            (back.cla, back.ins, back.p1, back.p2, &back.data),
            (
                command.cla,
                command.ins,
                command.p1,
                command.p2,
                &command.data
            )
        );
        assert_eq!(
            short_le(back.le),
            short_le(command.le),
            "{command:?} -> {back:?}"
        );
        let _ = format!("{command:?}");
        let _ = command.is_chained();
    }
    match Response::parse(data) {
        Some(response) => {
            assert_eq!(response.to_bytes(), data);
            let sw = response.sw;
            let _ = (sw.sw1(), sw.sw2(), sw.counter(), sw.is_ok(), sw.meaning());
            let _ = (
                sw.is_algorithm_refusal(),
                sw.to_string(),
                format!("{response:?}"),
            );
        }
        None => assert!(data.len() < 2),
    }
});
