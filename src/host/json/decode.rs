//! JSON straight into Rhai values.
//!
//! Rhai's own `Deserialize for Dynamic` collects each object into a map and
//! then rebuilds it entry by entry (`From<BTreeMap>`), and each array too:
//! much of the time an agent adapter spends on a stream-json line.

use std::collections::btree_map::Entry;
use std::fmt;

use rhai::{Array, Dynamic, ImmutableString, Map};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use super::KeySeed;

/// A Rhai value read from JSON: objects become maps, arrays arrays, numbers
/// integers when they fit in an `i64` and floats otherwise. An object that
/// gives a key twice is an error (`serde_json` would keep the last value and
/// lose the first without a word).
pub(crate) struct RhaiValue(pub(crate) Dynamic);

impl<'de> serde::Deserialize<'de> for RhaiValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(RhaiValue)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Dynamic;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Dynamic, E> {
        Ok(Dynamic::from_bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Dynamic, E> {
        Ok(Dynamic::from_int(v))
    }

    // Scripts have i64 and f64 only: a larger whole number becomes the
    // nearest float, as in JavaScript.
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E>(self, v: u64) -> Result<Dynamic, E> {
        Ok(i64::try_from(v).map_or_else(|_| Dynamic::from_float(v as f64), Dynamic::from_int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Dynamic, E> {
        Ok(Dynamic::from_float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Dynamic, E> {
        Ok(Dynamic::from(ImmutableString::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Dynamic, E> {
        Ok(Dynamic::from(ImmutableString::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::UNIT)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        let mut array = Array::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(RhaiValue(item)) = seq.next_element()? {
            array.push(item);
        }
        Ok(Dynamic::from_array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Dynamic, A::Error> {
        let mut map = Map::new();
        while let Some(key) = entries.next_key_seed(KeySeed)? {
            // Short keys are stored inline, without an allocation.
            match map.entry(key.as_ref().into()) {
                Entry::Vacant(slot) => {
                    let RhaiValue(value) = entries.next_value()?;
                    slot.insert(value);
                }
                // Raised before the value is read, so the error's position
                // is right after the repeated key.
                Entry::Occupied(_) => return Err(super::given_twice(&key)),
            }
        }
        Ok(Dynamic::from_map(map))
    }
}
