//! `json::` — parse, stringify, pretty; and the conversions between Rhai
//! values and JSON that `fs::`, `tpl::` and `agent::` share.

use rhai::{Dynamic, Module};
use serde_json::Value;

use super::{raise, Fallible};

/// Parses JSON text; errors carry `name:line:col`.
pub fn parse(name: &str, text: &str) -> Result<Value, crate::error::HostError> {
    serde_json::from_str(text).map_err(|e| crate::error::HostError::MalformedJson {
        path: name.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    })
}

pub fn to_dynamic(value: &Value) -> Fallible<Dynamic> {
    rhai::serde::to_dynamic(value)
}

pub fn from_dynamic(value: &Dynamic) -> Fallible<Value> {
    rhai::serde::from_dynamic(value).map_err(|e| raise(format!("cannot be turned into JSON: {e}")))
}

/// Puts the keys of `new` in the order they have in `old` (new keys after),
/// recursively, so that rewriting a state file keeps its layout and a diff of
/// it shows only what changed.
pub fn keep_key_order(new: Value, old: &Value) -> Value {
    match (new, old) {
        (Value::Object(mut new), Value::Object(old)) => {
            let mut ordered = serde_json::Map::with_capacity(new.len());
            for (key, old_value) in old {
                if let Some(value) = new.remove(key) {
                    ordered.insert(key.clone(), keep_key_order(value, old_value));
                }
            }
            ordered.extend(new);
            Value::Object(ordered)
        }
        (Value::Array(new), Value::Array(old)) => Value::Array(
            new.into_iter()
                .enumerate()
                .map(|(i, v)| match old.get(i) {
                    Some(o) => keep_key_order(v, o),
                    None => v,
                })
                .collect(),
        ),
        (new, _) => new,
    }
}

pub fn module() -> Module {
    let mut m = Module::new();
    // json::parse(text) -> value; errors name line and column.
    primitive!(m, "parse", |text: &str| { to_dynamic(&parse("json text", text).map_err(raise)?) });
    // json::stringify(value) -> one-line JSON.
    primitive!(m, "stringify", |value: Dynamic| { Ok(from_dynamic(&value)?.to_string()) });
    // json::pretty(value) -> indented JSON.
    primitive!(m, "pretty", |value: Dynamic| {
        serde_json::to_string_pretty(&from_dynamic(&value)?).map_err(raise)
    });
    m
}
