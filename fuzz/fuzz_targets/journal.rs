//! The agent's journal reader (`agent::operation::journal::decode_file`, what `Journal::get`
//! runs on a file's text): never panics, and what it reads writes back (`encode_file`) to a
//! file that reads to the same entry and keyring reference.
#![no_main]

use agent::operation::journal::{decode_file, encode_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((entry, reference)) = decode_file(data) else {
        return;
    };
    let text = encode_file(&entry, reference.as_deref()).expect("an entry encodes");
    let (again, again_reference) = decode_file(&text).expect("an encoded entry decodes");
    assert_eq!(again_reference, reference);
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&entry).unwrap()
    );
});
