//! piv's CHUID reader and the GET DATA response it comes in: `parse_get_data` then
//! `chuid::serial`. A serial read from any CHUID is the serial of the CHUID built for it, and
//! its text form parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use piv::chuid::{self, CardSerial};
use piv::consts::object;
use piv::objects::parse_get_data;

fuzz_target!(|data: &[u8]| {
    let content = match parse_get_data(object::CHUID, data) {
        Ok(content) => content,
        Err(_) => data.to_vec(),
    };
    if let Ok(serial) = chuid::serial(&content) {
        assert_eq!(
            chuid::serial(&chuid::build(serial, b"20301231")),
            Ok(serial)
        );
        assert_eq!(serial.to_string().parse::<CardSerial>(), Ok(serial));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(serial) = text.parse::<CardSerial>() {
            assert!(text.eq_ignore_ascii_case(&serial.to_string()));
        }
    }
    let _ = parse_get_data(object::DISCOVERY, data);
});
