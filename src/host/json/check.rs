//! `json::check(value, shape)`: a value checked against a declared shape,
//! in Rust, with one readable sentence per problem naming where it is.
//!
//! A shape is a type name or a map. Type names: `"any"`, `"bool"`, `"int"`
//! (a whole number), `"number"`, `"string"`, `"name"` (a non-empty string),
//! `"array"`, `"object"`; a trailing `?` (`"bool?"`) makes a member optional
//! (missing or null). A map says more:
//!
//! - `type`: a type name (`"object"` when `keys` is given, `"array"` when
//!   `items` is);
//! - `optional`: true when the member may be missing or null;
//! - `keys`: an object's members, name → shape (other members are allowed);
//! - `items`: the shape of every element of an array;
//! - `label`: for an array of objects, the member whose text names an
//!   element in messages (`tasks[1] (T-2)`);
//! - `unique`: a member no two elements may share; `item` names an element
//!   in that message (`the id "T-1" is used by more than one task`);
//! - `min`: the smallest number allowed;
//! - `one_of`: the values allowed.
//!
//! Messages: `"title" is missing (a string)`, `tasks[1] (T-2): "done"
//! must be true or false, not the string "no"`, `tasks[0] must be an
//! object, not an array`.

use std::collections::BTreeSet;

use rhai::{Dynamic, Map};

use crate::host::{as_number, fail, Fallible};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Any,
    Bool,
    Int,
    Number,
    Text,
    Name,
    Array,
    Object,
}

struct Shape {
    kind: Kind,
    optional: bool,
    keys: Vec<(String, Shape)>,
    items: Option<Box<Shape>>,
    label: Option<String>,
    unique: Option<String>,
    item: String,
    min: Option<f64>,
    one_of: Vec<Dynamic>,
}

/// The problems of `value` against `shape`, in document order of the
/// shape (an object's members by name); empty when it fits.
pub(crate) fn check(value: &Dynamic, shape: &Dynamic) -> Fallible<Vec<String>> {
    let shape = parse_shape(shape, "the shape")?;
    let mut errors = Vec::new();
    check_value(value, &shape, Place::Top, &mut errors);
    Ok(errors)
}

fn parse_shape(spec: &Dynamic, at: &str) -> Fallible<Shape> {
    let mut shape = Shape {
        kind: Kind::Any,
        optional: false,
        keys: Vec::new(),
        items: None,
        label: None,
        unique: None,
        item: "item".to_string(),
        min: None,
        one_of: Vec::new(),
    };
    if let Ok(name) = spec.clone().into_immutable_string() {
        let (name, optional) = name.strip_suffix('?').map_or((name.as_str(), false), |n| (n, true));
        shape.kind = kind(name, at)?;
        shape.optional = optional;
        return Ok(shape);
    }
    let Some(map) = spec.read_lock::<Map>() else {
        return fail(format!("json::check: {at} must be a type name or a map, not {}", spec.type_name()));
    };
    let text = |key: &str| -> Fallible<Option<String>> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => v
                .clone()
                .into_string()
                .map(Some)
                .or_else(|_| fail(format!("json::check: '{key}' of {at} must be a string"))),
        }
    };
    for key in map.keys() {
        if !["type", "optional", "keys", "items", "label", "unique", "item", "min", "one_of"]
            .contains(&key.as_str())
        {
            return fail(format!(
                "json::check: unknown '{key}' in {at} (a shape has type, optional, keys, items, label, unique, \
                 item, min, one_of)"
            ));
        }
    }
    if let Some(keys) = map.get("keys") {
        let Some(keys) = keys.read_lock::<Map>() else {
            return fail(format!("json::check: 'keys' of {at} must be a map of member shapes"));
        };
        for (name, member) in keys.iter() {
            shape.keys.push((name.to_string(), parse_shape(member, &format!("{at}.keys.{name}"))?));
        }
        shape.kind = Kind::Object;
    }
    if let Some(items) = map.get("items") {
        shape.items = Some(Box::new(parse_shape(items, &format!("{at}.items"))?));
        shape.kind = Kind::Array;
    }
    if let Some(name) = text("type")? {
        shape.kind = kind(&name, at)?;
    }
    shape.optional = map.get("optional").is_some_and(|v| v.as_bool() == Ok(true));
    shape.label = text("label")?;
    shape.unique = text("unique")?;
    if let Some(item) = text("item")? {
        shape.item = item;
    }
    if let Some(min) = map.get("min") {
        shape.min = Some(
            as_number(min)
                .ok_or_else(|| crate::host::raise(format!("json::check: 'min' of {at} must be a number")))?,
        );
    }
    if let Some(values) = map.get("one_of") {
        let Some(values) = values.read_lock::<rhai::Array>() else {
            return fail(format!("json::check: 'one_of' of {at} must be an array of values"));
        };
        shape.one_of.clone_from(&values);
    }
    Ok(shape)
}

fn kind(name: &str, at: &str) -> Fallible<Kind> {
    Ok(match name {
        "any" => Kind::Any,
        "bool" => Kind::Bool,
        "int" => Kind::Int,
        "number" => Kind::Number,
        "string" => Kind::Text,
        "name" => Kind::Name,
        "array" => Kind::Array,
        "object" => Kind::Object,
        _ => {
            return fail(format!(
                "json::check: unknown type \"{name}\" in {at} (types: any, bool, int, number, string, name, \
                 array, object; a trailing ? makes it optional)"
            ))
        }
    })
}

/// What a value of `shape` is, for messages: "a whole number", "true or
/// false", "an array of strings".
fn describe(shape: &Shape) -> String {
    if !shape.one_of.is_empty() {
        let values: Vec<String> =
            shape.one_of.iter().map(|v| super::to_json(v).unwrap_or_default()).collect();
        return format!("one of {}", values.join(", "));
    }
    let at_least = shape.min.map(|min| format!(" of at least {min}")).unwrap_or_default();
    match shape.kind {
        Kind::Any => "any value".to_string(),
        Kind::Bool => "true or false".to_string(),
        Kind::Int => format!("a whole number{at_least}"),
        Kind::Number => format!("a number{at_least}"),
        Kind::Text => "a string".to_string(),
        Kind::Name => "a non-empty string".to_string(),
        Kind::Object => "an object".to_string(),
        Kind::Array => match shape.items.as_deref().map(|items| items.kind) {
            Some(Kind::Bool) => "an array of true or false".to_string(),
            Some(Kind::Int) => "an array of whole numbers".to_string(),
            Some(Kind::Number) => "an array of numbers".to_string(),
            Some(Kind::Text) => "an array of strings".to_string(),
            Some(Kind::Name) => "an array of non-empty strings".to_string(),
            Some(Kind::Object) => "an array of objects".to_string(),
            Some(Kind::Array) => "an array of arrays".to_string(),
            Some(Kind::Any) | None => "an array".to_string(),
        },
    }
}

/// What a value is, in messages (as lib/common's `json_type` says it):
/// "an object", "an array", `the string "x"`, "the number 3", "true",
/// "null".
pub(crate) fn json_type(value: &Dynamic) -> String {
    if value.is_map() {
        "an object".to_string()
    } else if value.is_array() {
        "an array".to_string()
    } else if value.is_string() {
        format!("the string {}", super::to_json(value).unwrap_or_default())
    } else if value.is_int() || value.is_float() {
        format!("the number {value}")
    } else if value.is_unit() {
        "null".to_string()
    } else {
        value.to_string()
    }
}

fn fits(value: &Dynamic, shape: &Shape) -> bool {
    let kind_fits = match shape.kind {
        Kind::Any => true,
        Kind::Bool => value.is_bool(),
        Kind::Int => value.is_int(),
        Kind::Number => value.is_int() || value.is_float(),
        Kind::Text => value.is_string(),
        Kind::Name => is_name(value),
        Kind::Array => value.is_array(),
        Kind::Object => value.is_map(),
    };
    kind_fits
        && shape.min.is_none_or(|min| as_number(value).is_none_or(|n| n >= min))
        && (shape.one_of.is_empty()
            || shape.one_of.iter().any(|allowed| {
                allowed.type_name() == value.type_name() && allowed.to_string() == value.to_string()
            }))
}

/// Where a value is, built into a message only when there is a problem.
#[derive(Clone, Copy)]
enum Place<'a> {
    Top,
    /// Member `key` of the object at the place.
    Key(&'a Place<'a>, &'a str),
    /// Element `index` of the array at the place, with its label.
    Item(&'a Place<'a>, usize, Option<&'a str>),
}

impl Place<'_> {
    /// The place as the subject of a sentence: `the top level`,
    /// `tasks[1] (T-2): "title"`, `tasks[0]`.
    fn subject(&self) -> String {
        match self {
            Place::Top => "the top level".to_string(),
            Place::Key(Place::Top, key) => format!("\"{key}\""),
            Place::Key(parent, key) => format!("{}: \"{key}\"", parent.path()),
            Place::Item(parent, index, _) => format!("{}[{index}]", parent.name()),
        }
    }

    /// What the members of the value here are named under:
    /// `tasks[1] (T-2)`, `config.timeouts`; empty at the top.
    fn path(&self) -> String {
        match self {
            Place::Top => String::new(),
            Place::Key(Place::Top, key) => (*key).to_string(),
            Place::Key(parent, key) => format!("{}.{key}", parent.path()),
            Place::Item(parent, index, None) => format!("{}[{index}]", parent.name()),
            Place::Item(parent, index, Some(label)) => format!("{}[{index}] ({label})", parent.name()),
        }
    }

    /// The path, or "the top level" for the top.
    fn name(&self) -> String {
        match self {
            Place::Top => "the top level".to_string(),
            _ => self.path(),
        }
    }
}

/// Checks the value at `place`.
fn check_value(value: &Dynamic, shape: &Shape, place: Place, errors: &mut Vec<String>) {
    if !fits(value, shape) {
        errors.push(format!("{} must be {}, not {}", place.subject(), describe(shape), json_type(value)));
        return;
    }
    if !shape.keys.is_empty() {
        let map = value.read_lock::<Map>().expect("an object");
        for (key, member) in &shape.keys {
            match map.get(key.as_str()) {
                Some(v) if !(v.is_unit() && member.optional) => {
                    check_value(v, member, Place::Key(&place, key), errors);
                }
                None if !member.optional => {
                    let at = Place::Key(&place, key).subject();
                    errors.push(format!("{at} is missing ({})", describe(member)));
                }
                _ => {}
            }
        }
    }
    if let Some(items) = &shape.items {
        let array = value.read_lock::<rhai::Array>().expect("an array");
        let mut seen = BTreeSet::new();
        let mut repeated = BTreeSet::new();
        for (i, item) in array.iter().enumerate() {
            let member = |field: &str| item.read_lock::<Map>().and_then(|map| map.get(field).cloned());
            let label = shape.label.as_deref().and_then(member).filter(is_name);
            let label =
                label.as_ref().and_then(|l| l.read_lock::<rhai::ImmutableString>().map(|s| s.to_string()));
            check_value(item, items, Place::Item(&place, i, label.as_deref()), errors);
            if let Some(value) = shape.unique.as_deref().and_then(member).filter(is_name) {
                let value = value.cast::<rhai::ImmutableString>();
                if !seen.insert(value.clone()) {
                    repeated.insert(value);
                }
            }
        }
        for value in repeated {
            let field = shape.unique.as_deref().unwrap_or_default();
            errors.push(format!("the {field} \"{value}\" is used by more than one {}", shape.item));
        }
    }
}

/// Whether a value is a non-empty string.
fn is_name(value: &Dynamic) -> bool {
    value.read_lock::<rhai::ImmutableString>().is_some_and(|s| !s.is_empty())
}
