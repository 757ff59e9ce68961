//! agent-ipc's message decoding, as the agent reads a request line (JSON, an object with an
//! `id` and a `method`, then the typed `Request`) and as clients read the agent's lines
//! (`ServerMessage`, `Event`). What decodes encodes (`encode_line`) to one line that decodes to
//! the same value.
#![no_main]

use agent_ipc::{encode_line, Event, Request, ServerMessage};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Debug;

/// Whether two JSON values are the same, numbers that are not integers within two ULPs: serde_json
/// reads a number such as `1763817638588763858800` (past `u64`) to the nearest `f64` only
/// approximately, so it may come back one ULP off after a write and a read. The protocol has no
/// such numbers of its own; free-form values (a reply's result) can carry them.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 2.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn round_trip<T: Serialize + DeserializeOwned + Debug>(value: &T) {
    let Ok(line) = encode_line(value) else { return };
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let back: T = serde_json::from_slice(&line).expect("an encoded message decodes");
    let (a, b) = (
        serde_json::to_value(value).unwrap(),
        serde_json::to_value(&back).unwrap(),
    );
    assert!(same(&a, &b), "{value:?} came back as {back:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return;
    };
    if let Some(object) = value.as_object() {
        let id = object.get("id").and_then(Value::as_u64);
        let method = object.get("method").and_then(Value::as_str);
        if let Ok(request) = serde_json::from_value::<Request>(value.clone()) {
            assert_eq!(Some(request.id), id);
            assert_eq!(Some(request.call.method()), method);
            assert!(agent_ipc::METHODS.contains(&request.call.method()));
            round_trip(&request);
        }
    }
    if let Ok(message) = serde_json::from_value::<ServerMessage>(value.clone()) {
        round_trip(&message);
    }
    if let Ok(event) = serde_json::from_value::<Event>(value) {
        let _ = event.name();
        round_trip(&event);
    }
});
