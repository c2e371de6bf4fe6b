//! An adapter's event table (`fn events()`): which stdout events map to
//! which aloop events, as data the host evaluates for each line without
//! calling the adapter's `parse`. Lines the table does not map go to `parse`.
//!
//! The table is a map from an event's `type` (or `"type/subtype"`, tried
//! first) to a row. A row is a map of the event's keys, each one of:
//! - `"/a/b"`: the value at that JSON pointer (`()` when absent); any other
//!   string is itself (`kind: "text"`);
//! - a list: the first of its specs that gives a string (a literal string
//!   ends the search);
//! - `#{ is_true: "/p" }`: whether the value there is `true`;
//! - `#{ text: "/p" }`: the text there: a string, or the `text` of the
//!   parts of type "text" of an array, joined;
//! - `#{ count: "/p", suffix: " items" }`: the length of the array there
//!   and the suffix (nothing when it is not an array);
//! - `#{ equals: "/p", value: "error" }`: whether the value there is that
//!   string.
//!
//! A row may instead say `each: "/p"`, `by: "/q"` and `rows: #{...}`: one
//! event per element of the array at `/p`, by the row named by the
//! element's key `q` (elements without a row make none). A row with `by:
//! "/p"` and `rows` but no `each` is the row named by the value at `/p` (a
//! value without a row hands the line to `parse`). `unless: "/p"` hands
//! the line to `parse` when the value there is present; `when: #{ "/p":
//! "text" }` makes the row's event only when each value there is that text.

use rhai::{Array, Dynamic, Map};

use crate::host::{raise, Fallible};

/// A checked event table.
pub(super) struct Table {
    rows: Map,
}

/// A line the table has no row for, or one its row hands to `parse`.
pub(super) struct Unmapped;

impl Table {
    /// Checks the value `events()` returned; `origin` names the adapter.
    pub(super) fn new(value: Dynamic, origin: &str) -> Fallible<Self> {
        let rows =
            value.try_cast::<Map>().ok_or_else(|| raise(format!("{origin}: events() must return a map")))?;
        for (key, row) in &rows {
            check_row(row, &format!("{origin}: events().{key}"))?;
        }
        Ok(Self { rows })
    }

    /// The events of one stdout event (a map), or `Unmapped`.
    pub(super) fn map(&self, event: &Map) -> Result<Vec<Map>, Unmapped> {
        let kind = text_at(event, "type").ok_or(Unmapped)?;
        let row = text_at(event, "subtype")
            .and_then(|subtype| self.rows.get(format!("{kind}/{subtype}").as_str()))
            .or_else(|| self.rows.get(kind.as_str()))
            .ok_or(Unmapped)?;
        let row = row.read_lock::<Map>().ok_or(Unmapped)?;
        if let Some(unless) = row.get("unless") {
            if !pointer(event, &unless.to_string()).is_unit() {
                return Err(Unmapped);
            }
        }
        if let Some(when) = row.get("when").and_then(Dynamic::read_lock::<Map>) {
            if !when.iter().all(|(path, text)| is_text(&pointer(event, path), text)) {
                return Ok(Vec::new());
            }
        }
        let Some(each) = row.get("each") else {
            let chosen = match (row.get("by"), row.get("rows").and_then(Dynamic::read_lock::<Map>)) {
                (Some(by), Some(rows)) => {
                    let name = pointer(event, &by.to_string());
                    let name = name.read_lock::<rhai::ImmutableString>().ok_or(Unmapped)?;
                    rows.get(name.as_str()).cloned().ok_or(Unmapped)?
                }
                _ => return Ok(vec![fill(&row, event)]),
            };
            return Ok(chosen.read_lock::<Map>().map(|row| fill(&row, event)).into_iter().collect());
        };
        let (Some(by), Some(rows)) = (row.get("by"), row.get("rows").and_then(Dynamic::read_lock::<Map>))
        else {
            return Ok(Vec::new());
        };
        let by = by.to_string();
        let mut events = Vec::new();
        // The parts are read in place: a copy of each message would cost more
        // than the rest of the mapping.
        visit(event, &each.to_string(), |parts| {
            let Some(parts) = parts.and_then(Dynamic::read_lock::<Array>) else { return };
            for part in parts.iter() {
                let Some(part) = part.read_lock::<Map>() else { continue };
                let Some(name) = text_at(&part, by.trim_start_matches('/')) else { continue };
                if let Some(row) = rows.get(name.as_str()).and_then(Dynamic::read_lock::<Map>) {
                    events.push(fill(&row, &part));
                }
            }
        });
        Ok(events)
    }
}

fn check_row(row: &Dynamic, at: &str) -> Fallible<()> {
    let row = row.read_lock::<Map>().ok_or_else(|| raise(format!("{at} must be a map")))?;
    if let Some(rows) = row.get("rows") {
        let rows = rows.read_lock::<Map>().ok_or_else(|| raise(format!("{at}.rows must be a map")))?;
        for (key, row) in rows.iter() {
            check_row(row, &format!("{at}.rows.{key}"))?;
        }
    }
    Ok(())
}

/// The event a row makes of `source`.
fn fill(row: &Map, source: &Map) -> Map {
    let mut event = Map::new();
    for (key, spec) in row {
        if !matches!(key.as_str(), "unless" | "when" | "each" | "by" | "rows") {
            event.insert(key.clone(), value(spec, source));
        }
    }
    event
}

fn value(spec: &Dynamic, source: &Map) -> Dynamic {
    if let Some(text) = spec.read_lock::<rhai::ImmutableString>() {
        return if text.starts_with('/') { pointer(source, &text) } else { spec.clone() };
    }
    if let Some(list) = spec.read_lock::<Array>() {
        for item in list.iter() {
            let found = value(item, source);
            if found.is_string() {
                return found;
            }
        }
        return Dynamic::UNIT;
    }
    let Some(map) = spec.read_lock::<Map>() else { return spec.clone() };
    let at = |key: &str| map.get(key).map(|p| pointer(source, &p.to_string()));
    if let Some(found) = at("is_true") {
        return Dynamic::from_bool(found.as_bool().unwrap_or(false));
    }
    if let Some(found) = at("text") {
        return text_of(&found).into();
    }
    if let Some(found) = at("equals") {
        return Dynamic::from_bool(map.get("value").is_some_and(|text| is_text(&found, text)));
    }
    if let Some(found) = at("count") {
        return match found.read_lock::<Array>() {
            Some(items) => {
                let suffix = map.get("suffix").map(ToString::to_string).unwrap_or_default();
                format!("{}{suffix}", items.len()).into()
            }
            None => Dynamic::UNIT,
        };
    }
    spec.clone()
}

/// A string as it is; the `text` of an array's parts of type "text", joined.
fn text_of(value: &Dynamic) -> String {
    if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
        return text.to_string();
    }
    let mut text = String::new();
    if let Some(parts) = value.read_lock::<Array>() {
        for part in parts.iter() {
            if let Some(part) = part.read_lock::<Map>() {
                if text_at(&part, "type").as_deref() == Some("text") {
                    text += &text_at(&part, "text").unwrap_or_default();
                }
            }
        }
    }
    text
}

/// Whether `value` is the string `text`.
fn is_text(value: &Dynamic, text: &Dynamic) -> bool {
    match (value.read_lock::<rhai::ImmutableString>(), text.read_lock::<rhai::ImmutableString>()) {
        (Some(value), Some(text)) => *value == *text,
        _ => false,
    }
}

fn text_at(map: &Map, key: &str) -> Option<String> {
    map.get(key)?.read_lock::<rhai::ImmutableString>().map(|s| s.to_string())
}

/// The value at a JSON pointer ("/message/content"), `()` when absent.
fn pointer(map: &Map, path: &str) -> Dynamic {
    visit(map, path, |found| found.cloned().unwrap_or(Dynamic::UNIT))
}

/// Calls `f` with the value at a JSON pointer, read in place.
fn visit<R>(map: &Map, path: &str, f: impl FnOnce(Option<&Dynamic>) -> R) -> R {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (key, rest) = path.split_once('/').map_or((path, None), |(k, r)| (k, Some(r)));
    match (map.get(key), rest) {
        (None, _) => f(None),
        (Some(found), None) => f(Some(found)),
        (Some(found), Some(rest)) => match found.read_lock::<Map>() {
            Some(inner) => visit(&inner, rest, f),
            None => f(None),
        },
    }
}
