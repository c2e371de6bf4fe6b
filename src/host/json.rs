//! `json::` — parse, stringify, pretty; and the conversions between Rhai
//! values and JSON that `fs::`, `tpl::` and `agent::` share.

use rhai::{Dynamic, Module};
use serde_json::Value;

use super::{raise, Fallible};

/// Parses JSON text into any deserializable type; errors carry
/// `name:line:col`.
pub fn parse<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, crate::error::HostError> {
    serde_json::from_str(text).map_err(|e| crate::error::HostError::MalformedJson {
        path: name.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    })
}

/// The key order of a JSON document and nothing else: what rewriting a file
/// needs to keep its layout, without building the old document's values.
pub enum KeyOrder {
    Object(Vec<(String, KeyOrder)>),
    Array(Vec<KeyOrder>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, KeyOrder>()? {
                    keys.push((key, value));
                }
                Ok(KeyOrder::Object(keys))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<KeyOrder, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<KeyOrder>()? {
                    items.push(item);
                }
                Ok(KeyOrder::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeyOrder, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<KeyOrder, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<KeyOrder, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeyOrder, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<KeyOrder, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_unit<E>(self) -> Result<KeyOrder, E> {
                Ok(KeyOrder::Leaf)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

pub fn from_dynamic(value: &Dynamic) -> Fallible<Value> {
    rhai::serde::from_dynamic(value).map_err(|e| raise(format!("cannot be turned into JSON: {e}")))
}

/// Puts the keys of `new` in the order they have in `old` (new keys after),
/// recursively, so that rewriting a state file keeps its layout and a diff of
/// it shows only what changed.
pub fn keep_key_order(new: Value, old: &KeyOrder) -> Value {
    match (new, old) {
        (Value::Object(mut new), KeyOrder::Object(old)) => {
            let mut ordered = serde_json::Map::with_capacity(new.len());
            for (key, old_value) in old {
                if let Some(value) = new.remove(key) {
                    ordered.insert(key.clone(), keep_key_order(value, old_value));
                }
            }
            ordered.extend(new);
            Value::Object(ordered)
        }
        (Value::Array(new), KeyOrder::Array(old)) => Value::Array(
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
    primitive!(m, "parse", |text: &str| parse::<Dynamic>("json text", text).map_err(raise));
    // json::stringify(value) -> one-line JSON.
    primitive!(m, "stringify", |value: Dynamic| { Ok(from_dynamic(&value)?.to_string()) });
    // json::pretty(value) -> indented JSON.
    primitive!(m, "pretty", |value: Dynamic| {
        serde_json::to_string_pretty(&from_dynamic(&value)?).map_err(raise)
    });
    m
}
