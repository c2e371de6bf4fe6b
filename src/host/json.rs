//! `json::` — parse, stringify, pretty; and the conversions between Rhai
//! values and JSON that `fs::`, `tpl::` and `agent::` share.

mod check;
mod decode;
mod document;

use std::borrow::Cow;

use rhai::{Dynamic, Module};
use serde_json::Value;

use super::{raise, Fallible};
pub(crate) use decode::RhaiValue;
pub(crate) use document::{Document, JsonDocument};

/// Parses JSON text into any deserializable type; errors carry
/// `name:line:col`. A byte order mark at the start is skipped (editors write
/// them); positions count from the character after it, as editors show them.
pub(crate) fn parse<'a, T: serde::Deserialize<'a>>(
    name: &str,
    text: &'a str,
) -> Result<T, crate::error::HostError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| crate::error::HostError::MalformedJson {
        path: name.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    })
}

/// Parses JSON text into a Rhai value; errors carry `name:line:col`, and an
/// object that gives a key twice is one.
pub fn parse_value(name: &str, text: &str) -> Result<Dynamic, crate::error::HostError> {
    parse::<RhaiValue>(name, text).map(|RhaiValue(value)| value)
}

/// The error for an object key given twice; `serde_json` places it where the
/// reading stopped, right after the key.
fn given_twice<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!("key {} is given twice", serde_json::Value::from(key)))
}

/// Up to this many keys an object's keys are searched one by one; past it,
/// in a set (state objects have a handful of keys, a big one must not go
/// quadratic).
const LINEAR_SCAN_KEYS: usize = 16;

/// The key order of a JSON document and nothing else: what rewriting a file
/// needs to keep its layout, without building the old document's values.
/// Keys borrow from the document's text where they can.
pub(crate) enum KeyOrder<'a> {
    Object(Vec<(Cow<'a, str>, KeyOrder<'a>)>),
    Array(Vec<KeyOrder<'a>>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for KeyOrder<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeyOrder<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder<'de>, A::Error> {
                let mut keys: Vec<(Cow<'de, str>, KeyOrder<'de>)> = Vec::new();
                // A key given twice makes the document malformed (and the
                // writer counts on each key being listed once); a set past
                // LINEAR_SCAN_KEYS.
                let mut seen: Option<std::collections::HashSet<Cow<'de, str>>> = None;
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    if keys.len() == LINEAR_SCAN_KEYS {
                        seen = Some(keys.iter().map(|(k, _)| k.clone()).collect());
                    }
                    let repeated = match &mut seen {
                        Some(set) => !set.insert(key.clone()),
                        None => keys.iter().any(|(k, _)| *k == key),
                    };
                    if repeated {
                        return Err(given_twice(&key));
                    }
                    let order = map.next_value::<KeyOrder>()?;
                    keys.push((key, order));
                }
                Ok(KeyOrder::Object(keys))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<KeyOrder<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<KeyOrder>()? {
                    items.push(item);
                }
                Ok(KeyOrder::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeyOrder<'de>, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<KeyOrder<'de>, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<KeyOrder<'de>, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeyOrder<'de>, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<KeyOrder<'de>, E> {
                Ok(KeyOrder::Leaf)
            }
            fn visit_unit<E>(self) -> Result<KeyOrder<'de>, E> {
                Ok(KeyOrder::Leaf)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(key))
            }
            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(key.to_string()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

pub(crate) fn from_dynamic(value: &Dynamic) -> Fallible<Value> {
    rhai::serde::from_dynamic(value).map_err(|e| raise(format!("cannot be turned into JSON: {e}")))
}

/// A Rhai value written as JSON straight from the Rhai data, without building
/// a `serde_json::Value` first (that copy was most of the cost of writing a
/// 10,000-story prd.json). Object keys come in this order: with a
/// `KeyOrder`, the keys the file being replaced has, in its order (so a diff
/// of a rewritten state file shows only what changed); then the keys listed
/// in `first`, in that order (at every depth); then the rest sorted.
struct AsJson<'a> {
    value: &'a Dynamic,
    order: Option<&'a KeyOrder<'a>>,
    first: &'a [String],
}

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let first = self.first;
        if let Some(map) = self.value.read_lock::<rhai::Map>() {
            let old_keys: &[(Cow<str>, KeyOrder)] = match self.order {
                Some(KeyOrder::Object(keys)) => keys,
                _ => &[],
            };
            let mut out = serializer.serialize_map(Some(map.len()))?;
            // Old keys are distinct (see KeyOrder), so when as many were
            // written as the map has, there is nothing new to add.
            let mut kept = 0;
            for (key, order) in old_keys {
                if let Some(value) = map.get(key.as_ref()) {
                    out.serialize_entry(key.as_ref(), &AsJson { value, order: Some(order), first })?;
                    kept += 1;
                }
            }
            if kept == map.len() {
                return out.end();
            }
            let old_set: Option<std::collections::HashSet<&str>> = (old_keys.len() > LINEAR_SCAN_KEYS)
                .then(|| old_keys.iter().map(|(k, _)| k.as_ref()).collect());
            let is_old = |key: &str| match &old_set {
                Some(set) => set.contains(key),
                None => old_keys.iter().any(|(old, _)| old.as_ref() == key),
            };
            for (i, key) in first.iter().enumerate() {
                // A key listed twice is written once, where it is first listed.
                if first[..i].contains(key) || is_old(key) {
                    continue;
                }
                if let Some(value) = map.get(key.as_str()) {
                    out.serialize_entry(key, &AsJson { value, order: None, first })?;
                }
            }
            // Rhai maps iterate sorted by key.
            for (key, value) in map.iter() {
                if !is_old(key.as_str()) && !first.iter().any(|k| k == key.as_str()) {
                    out.serialize_entry(key.as_str(), &AsJson { value, order: None, first })?;
                }
            }
            return out.end();
        }
        if let Some(array) = self.value.read_lock::<rhai::Array>() {
            let old_items: &[KeyOrder] = match self.order {
                Some(KeyOrder::Array(items)) => items,
                _ => &[],
            };
            let mut out = serializer.serialize_seq(Some(array.len()))?;
            for (i, value) in array.iter().enumerate() {
                out.serialize_element(&AsJson { value, order: old_items.get(i), first })?;
            }
            return out.end();
        }
        self.value.serialize(serializer)
    }
}

/// One-line JSON for a Rhai value.
pub fn to_json(value: &Dynamic) -> Fallible<String> {
    serde_json::to_string(&AsJson { value, order: None, first: &[] }).map_err(|e| not_json(&e))
}

/// Indented JSON for a Rhai value, keys sorted.
pub(crate) fn to_pretty_json(
    value: &Dynamic,
    order: Option<&KeyOrder>,
    size_hint: usize,
) -> Fallible<String> {
    to_pretty_json_in(value, order, &[], size_hint)
}

/// Indented JSON for a Rhai value; with `order`, keys keep the order of the
/// document it replaces, and keys named in `first` come before the others
/// (see `AsJson`). `size_hint` (e.g. the old file's length) saves regrowing
/// the buffer for a big document; there is room for a newline.
pub(crate) fn to_pretty_json_in(
    value: &Dynamic,
    order: Option<&KeyOrder>,
    first: &[String],
    size_hint: usize,
) -> Fallible<String> {
    let mut out = Vec::with_capacity(size_hint + 1);
    serde_json::to_writer_pretty(&mut out, &AsJson { value, order, first }).map_err(|e| not_json(&e))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// The options of `json::pretty` and `fs::write_json`: `key_order`, a list of
/// key names to write first; an unknown option or a wrong type is an error
/// naming it (`caller` says whose).
pub(crate) fn key_order_option(opts: &rhai::Map, caller: &str) -> Fallible<Vec<String>> {
    if let Some(unknown) = opts.keys().find(|key| key.as_str() != "key_order") {
        return Err(raise(format!("{caller}: unknown option '{unknown}' (the option is key_order)")));
    }
    let Some(list) = opts.get("key_order").filter(|v| !v.is_unit()) else {
        return Ok(Vec::new());
    };
    let wrong = || raise(format!("{caller}: option 'key_order' must be an array of key names"));
    let list = list.read_lock::<rhai::Array>().ok_or_else(wrong)?;
    list.iter().map(|key| key.clone().into_string().map_err(|_| wrong())).collect()
}

fn not_json(e: &serde_json::Error) -> Box<rhai::EvalAltResult> {
    raise(format!("cannot be turned into JSON: {e}"))
}

pub(crate) fn module() -> Module {
    let mut m = Module::new();
    // json::parse(text) -> value; errors name line and column.
    primitive!(m, "parse", |text: &str| parse_value("json text", text).map_err(raise));
    // json::parse(text, name) -> value; errors say `name:line:col` (e.g. the
    // file the text was read from).
    primitive!(m, "parse", |text: &str, name: &str| parse_value(name, text).map_err(raise));
    // json::stringify(value) -> one-line JSON.
    primitive!(m, "stringify", |value: Dynamic| to_json(&value));
    // json::pretty(value) -> indented JSON.
    primitive!(m, "pretty", |value: Dynamic| to_pretty_json(&value, None, 0));
    // json::pretty(value, #{key_order: [...]}) -> indented JSON whose objects
    // list those keys first, in that order, and the rest sorted.
    primitive!(m, "pretty", |value: Dynamic, opts: rhai::Map| {
        to_pretty_json_in(&value, None, &key_order_option(&opts, "json::pretty")?, 0)
    });
    // json::check(value, shape) -> the problems of value against a declared
    // shape, one sentence each naming where (empty when it fits); see check.rs.
    // (`&mut`: a variable given as the first argument is not copied.)
    primitive!(m, "check", |value: &mut Dynamic, shape: Dynamic| {
        check::check(value, &shape)
            .map(|errors| errors.into_iter().map(Dynamic::from).collect::<rhai::Array>())
    });
    // json::check(document, shape): the same for an open document.
    primitive!(m, "check", |doc: &mut JsonDocument, shape: Dynamic| {
        let value = doc.0.borrow_mut().get("").map_err(raise)?;
        check::check(&value, &shape)
            .map(|errors| errors.into_iter().map(Dynamic::from).collect::<rhai::Array>())
    });
    m
}
