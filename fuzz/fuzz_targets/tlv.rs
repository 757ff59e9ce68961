//! piv's BER-TLV parser: `parse`, `iter` and `find` never panic, and every element they accept
//! re-encodes (shortest form) to bytes that parse back to the same tag and value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use piv::tlv;

fuzz_target!(|data: &[u8]| {
    let mut consumed = 0;
    for element in tlv::iter(data) {
        let Ok(element) = element else { break };
        let encoded = tlv::encode(element.tag, element.value);
        let (back, rest) = tlv::parse(&encoded).expect("a re-encoded element parses");
        assert_eq!(back, element, "re-encoded element differs");
        assert!(rest.is_empty(), "re-encoding left bytes over");
        // The shortest form is never longer than what was read.
        consumed += encoded.len();
        assert!(consumed <= data.len());
    }
    if let Some(&tag) = data.first() {
        let _ = tlv::find(data, u32::from(tag));
    }
    // The encoder against the parser, for a value as long as the whole input.
    if let Some(Ok(first)) = tlv::iter(data).next() {
        let encoded = tlv::encode(first.tag, data);
        let (back, rest) = tlv::parse(&encoded).expect("an encoded element parses");
        assert_eq!((back.tag, back.value, rest.len()), (first.tag, data, 0));
    }
});
