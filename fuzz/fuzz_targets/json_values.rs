//! JSON text into Rhai values (agent events, `json::parse`, `fs::read_json`),
//! against serde_json: the same texts are accepted, and the value written
//! back as JSON is the same document (numbers are compared as floats, since
//! integers past i64 become floats). Where they differ on purpose: ours
//! refuses an object that gives a key twice (serde_json keeps the last
//! value), and skips a byte order mark at the start.
#![no_main]

use aloop::error::HostError;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ours = aloop::host::json::parse_value("fuzz", text);
    let reference = serde_json::from_str::<Value>(text.strip_prefix('\u{feff}').unwrap_or(text));
    let repeated_key = matches!(&ours, Err(HostError::MalformedJson { message, .. }) if message.ends_with("is given twice"));
    if repeated_key {
        // Only a key given twice makes the difference: serde_json reads it.
        assert!(reference.is_ok(), "{text:?}: {ours:?} / {reference:?}");
        return;
    }
    assert_eq!(ours.is_ok(), reference.is_ok(), "{text:?}: {ours:?} / {reference:?}");
    let (Ok(value), Ok(expected)) = (ours, reference) else { return };
    let written = aloop::host::json::to_json(&value).unwrap();
    let again: Value = serde_json::from_str(&written).unwrap();
    assert!(same(&again, &expected), "{text:?} came back as {written}");
});
