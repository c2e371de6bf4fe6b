//! A JSON document that keeps its text. Values are read from it by JSON
//! pointer (RFC 6901: `/tasks/3/done`), and a change replaces only
//! the bytes of the value it changes (or inserts one member into an object),
//! so everything else in the file — key order, spacing, the other values —
//! stays byte for byte as it was. The replaced value keeps its own key
//! order and layout (one line stays one line; an indented value is indented
//! like the rest of the file).
//!
//! The document remembers the file's text as it last read or wrote it and
//! the changes made since. `fs::` saves it (see host/fs.rs): when the file
//! on disk is no longer that text (an agent edited it), the document is read
//! again from disk and the changes are applied to it anew, each only if the
//! value it replaces is still what it was when the change was made; else
//! nothing is written and the error names the value that changed.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use rhai::Dynamic;
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

use super::{AsJson, KeyOrder, RhaiValue};
use crate::error::HostError;

/// A document as the script holds it: copies share one document, so
/// handing it to a function costs nothing.
#[derive(Clone)]
pub(crate) struct JsonDocument(pub(crate) Rc<RefCell<Document>>);

pub(crate) struct Document {
    /// The path the script opened it by, for messages and for saving.
    pub(crate) path: String,
    /// The text with every change applied.
    text: String,
    /// The file's text when last read or written: what saving expects to
    /// find on disk.
    on_disk: String,
    /// The changes since then, oldest first, to apply again to a file that
    /// someone else changed meanwhile.
    pending: Vec<Change>,
    /// The whole document as a Rhai value, kept in step with `text` (so
    /// reading it back after a change costs a copy, not a parse); `None`
    /// until it is needed again.
    value: Option<Dynamic>,
}

struct Change {
    pointer: Vec<String>,
    /// The value the change replaced (`None`: it added a member).
    before: Option<serde_json::Value>,
    value: Dynamic,
}

impl Document {
    /// A document of `text` read from `path`; malformed JSON (a key given
    /// twice included) is an error naming `path:line:col`.
    pub(crate) fn parse(path: &str, text: String) -> Result<Document, HostError> {
        let value = super::parse_value(path, &text)?;
        Ok(Document {
            path: path.to_string(),
            on_disk: text.clone(),
            text,
            pending: Vec::new(),
            value: Some(value),
        })
    }

    /// The current text, changes included.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether there are changes not yet saved.
    pub(crate) fn is_changed(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The file's text as it was last read or written.
    pub(crate) fn on_disk(&self) -> &str {
        &self.on_disk
    }

    /// The value at `pointer` as a Rhai value, or `()` when there is none.
    pub(crate) fn get(&mut self, pointer: &str) -> Result<Dynamic, String> {
        let tokens = parse_pointer(pointer)?;
        if tokens.is_empty() {
            if self.value.is_none() {
                self.value = Some(super::parse_value(&self.path, &self.text).map_err(|e| e.to_string())?);
            }
            return Ok(self.value.clone().expect("just parsed"));
        }
        if let Some(value) = &self.value {
            return Ok(value_at(value, &tokens).unwrap_or(Dynamic::UNIT));
        }
        match locate(&self.text, &tokens)? {
            Spot::Value(span) => {
                let RhaiValue(value) =
                    serde_json::from_str(&self.text[span]).map_err(|e| format!("{}: {e}", self.path))?;
                Ok(value)
            }
            Spot::Missing | Spot::NewKey { .. } => Ok(Dynamic::UNIT),
        }
    }

    /// Replaces the value at `pointer` with `value`, or adds it as a new
    /// member when the pointer names a missing key of an existing object.
    pub(crate) fn set(&mut self, pointer: &str, value: Dynamic) -> Result<(), String> {
        let tokens = parse_pointer(pointer)?;
        let before = apply(&mut self.text, &tokens, &value).map_err(|e| format!("{}: {e}", self.path))?;
        if let Some(whole) = &mut self.value {
            if !set_at(whole, &tokens, value.clone()) {
                self.value = None;
            }
        }
        self.pending.push(Change { pointer: tokens, before, value });
        Ok(())
    }

    /// Takes `disk` (the file as someone else left it) as the document and
    /// applies this document's unsaved changes to it anew. Each change
    /// needs the value it replaced to be unchanged on disk; otherwise the
    /// document is left as it was and the error names the value.
    pub(crate) fn rebase(&mut self, disk: String) -> Result<(), HostError> {
        let mut whole = super::parse_value(&self.path, &disk)
            .map_err(|e| HostError::Other(format!("{e} (refusing to overwrite a malformed file)")))?;
        let mut text = disk.clone();
        for change in &self.pending {
            let now = match locate(&text, &change.pointer).map_err(HostError::Other)? {
                Spot::Value(span) => Some(
                    serde_json::from_str::<serde_json::Value>(&text[span])
                        .map_err(|e| HostError::Other(format!("{}: {e}", self.path)))?,
                ),
                Spot::NewKey { .. } => None,
                Spot::Missing => {
                    return Err(changed_meanwhile(&self.path, &change.pointer, "is no longer there"));
                }
            };
            if now != change.before {
                return Err(changed_meanwhile(&self.path, &change.pointer, "was changed"));
            }
            apply(&mut text, &change.pointer, &change.value)
                .map_err(|e| HostError::Other(format!("{}: {e}", self.path)))?;
            set_at(&mut whole, &change.pointer, change.value.clone());
        }
        self.value = Some(whole);
        self.text = text;
        self.on_disk = disk;
        Ok(())
    }

    /// Notes that the current text is now the file's.
    pub(crate) fn saved(&mut self) {
        self.on_disk.clone_from(&self.text);
        self.pending.clear();
    }
}

fn changed_meanwhile(path: &str, pointer: &[String], what: &str) -> HostError {
    HostError::Other(format!(
        "{path}: {} {what} by someone else since it was read; nothing was written (open the file again)",
        show_pointer(pointer)
    ))
}

/// The part of a Rhai value that `tokens` lead to.
fn value_at(value: &Dynamic, tokens: &[String]) -> Option<Dynamic> {
    let Some((first, rest)) = tokens.split_first() else { return Some(value.clone()) };
    if let Some(map) = value.read_lock::<rhai::Map>() {
        return value_at(map.get(first.as_str())?, rest);
    }
    let array = value.read_lock::<rhai::Array>()?;
    value_at(array.get(first.parse::<usize>().ok()?)?, rest)
}

/// Puts `new` where `tokens` lead in a Rhai value (a missing last key of
/// an object is added); false when there is no such place.
fn set_at(value: &mut Dynamic, tokens: &[String], new: Dynamic) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        *value = new;
        return true;
    };
    if let Some(mut map) = value.write_lock::<rhai::Map>() {
        if rest.is_empty() {
            map.insert(first.as_str().into(), new);
            return true;
        }
        return map.get_mut(first.as_str()).is_some_and(|inner| set_at(inner, rest, new));
    }
    let Some(mut array) = value.write_lock::<rhai::Array>() else { return false };
    first.parse::<usize>().ok().and_then(|i| array.get_mut(i)).is_some_and(|inner| set_at(inner, rest, new))
}

/// A JSON pointer's reference tokens: `""` is the whole document,
/// `/a/0/b~1c` is `a`, `0`, `b/c`.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("a JSON pointer starts with \"/\" (like \"/tasks/0\"), not {pointer:?}"));
    };
    Ok(rest.split('/').map(|token| token.replace("~1", "/").replace("~0", "~")).collect())
}

fn show_pointer(tokens: &[String]) -> String {
    if tokens.is_empty() {
        return "the document".to_string();
    }
    let mut shown = String::new();
    for token in tokens {
        shown.push('/');
        shown.push_str(&token.replace('~', "~0").replace('/', "~1"));
    }
    shown
}

/// Where a pointer leads in a text.
enum Spot {
    /// The bytes of the value.
    Value(Range<usize>),
    /// A key the object at `object` lacks; `last` is the end of its last
    /// member's value and `member_line` where that member's line starts
    /// (`None` for an empty object).
    NewKey { object: Range<usize>, last: Option<(usize, usize)> },
    /// Nothing there, and nowhere to add it.
    Missing,
}

/// Follows `tokens` through valid JSON `text` without building any value.
fn locate(text: &str, tokens: &[String]) -> Result<Spot, String> {
    let mut scan = Scan { b: text.as_bytes(), i: 0 };
    if text.starts_with('\u{feff}') {
        scan.i = '\u{feff}'.len_utf8();
    }
    let mut span = scan.value();
    for (n, token) in tokens.iter().enumerate() {
        let last_token = n + 1 == tokens.len();
        scan.i = span.start;
        match scan.b[span.start] {
            b'{' => match scan.member(text, token) {
                Member::Found(value) => span = value,
                Member::Absent { last } if last_token => {
                    return Ok(Spot::NewKey { object: span, last });
                }
                Member::Absent { .. } => return Ok(Spot::Missing),
            },
            b'[' => {
                let index = token.parse::<usize>().ok().filter(|_| token == "0" || !token.starts_with('0'));
                match index.and_then(|i| scan.element(i)) {
                    Some(value) => span = value,
                    None => return Ok(Spot::Missing),
                }
            }
            _ if last_token => return Ok(Spot::Missing),
            _ => return Err(format!("{} is not an object or an array", show_pointer(&tokens[..=n]))),
        }
    }
    Ok(Spot::Value(span))
}

enum Member {
    Found(Range<usize>),
    Absent { last: Option<(usize, usize)> },
}

/// A cursor over valid JSON bytes.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn space(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// The span of the value that starts at the cursor (after spaces).
    fn value(&mut self) -> Range<usize> {
        self.space();
        let start = self.i;
        match self.b[self.i] {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.b[self.i] {
                        b'"' => {
                            self.string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while !matches!(
                    self.b.get(self.i),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
            }
        }
        start..self.i
    }

    /// Moves past the string at the cursor.
    fn string(&mut self) {
        self.i += 1;
        loop {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return;
                }
                _ => self.i += 1,
            }
        }
    }

    /// In the object at the cursor, the value of member `key`.
    fn member(&mut self, text: &str, key: &str) -> Member {
        self.i += 1;
        let mut last = None;
        loop {
            self.space();
            if self.b[self.i] == b'}' {
                return Member::Absent { last: last.map(|(end, name)| (end, line_start(text, name))) };
            }
            let name_start = self.i;
            self.string();
            let raw = &text[name_start..self.i];
            self.space();
            self.i += 1; // the colon
            let value = self.value();
            if key_is(raw, key) {
                return Member::Found(value);
            }
            last = Some((value.end, name_start));
            self.space();
            if self.b[self.i] == b',' {
                self.i += 1;
            }
        }
    }

    /// In the array at the cursor, element `index`.
    fn element(&mut self, index: usize) -> Option<Range<usize>> {
        self.i += 1;
        let mut n = 0;
        loop {
            self.space();
            if self.b[self.i] == b']' {
                return None;
            }
            let value = self.value();
            if n == index {
                return Some(value);
            }
            n += 1;
            self.space();
            if self.b[self.i] == b',' {
                self.i += 1;
            }
        }
    }
}

/// Whether the quoted key `raw` (as written in the text) is `key`.
fn key_is(raw: &str, key: &str) -> bool {
    let inner = &raw[1..raw.len() - 1];
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).is_ok_and(|decoded| decoded == key)
    } else {
        inner == key
    }
}

/// Applies one change to `text`, returning the value it replaced.
fn apply(text: &mut String, tokens: &[String], value: &Dynamic) -> Result<Option<serde_json::Value>, String> {
    match locate(text, tokens)? {
        Spot::Value(span) => {
            let old = &text[span.clone()];
            let before = serde_json::from_str(old).map_err(|e| e.to_string())?;
            let order =
                if old.starts_with(['{', '[']) { serde_json::from_str::<KeyOrder>(old).ok() } else { None };
            let layout = Layout::of(text, &span);
            let new = render(value, order.as_ref(), &layout)?;
            text.replace_range(span, &new);
            Ok(Some(before))
        }
        Spot::NewKey { object, last } => {
            let key = serde_json::to_string(tokens.last().expect("a new key has a name")).expect("a string");
            let (at, insert) = match last {
                None => {
                    let new = render(value, None, &Layout::Line { spaced: true })?;
                    (object.start + 1..object.end - 1, format!("{key}: {new}"))
                }
                Some((end, line)) if text[object.clone()].contains('\n') => {
                    let indent = indent_at(text, line);
                    let unit =
                        indent.strip_prefix(indent_at(text, line_start(text, object.start))).unwrap_or("");
                    let layout = Layout::Pretty { base: indent.to_string(), unit: non_empty(unit) };
                    let new = render(value, None, &layout)?;
                    (end..end, format!(",\n{indent}{key}: {new}"))
                }
                Some((end, _)) => {
                    let spaced = text[object.clone()].contains(": ");
                    let new = render(value, None, &Layout::Line { spaced })?;
                    (
                        end..end,
                        format!(
                            "{}{key}{}{new}",
                            if spaced { ", " } else { "," },
                            if spaced { ": " } else { ":" }
                        ),
                    )
                }
            };
            text.replace_range(at, &insert);
            Ok(None)
        }
        Spot::Missing => Err(format!(
            "{} is not there (only a missing key of an existing object can be added)",
            show_pointer(tokens)
        )),
    }
}

/// How a value is written where it goes.
enum Layout {
    /// Indented: `base` is the indentation of the line it starts on, `unit`
    /// one level more.
    Pretty { base: String, unit: String },
    /// On one line, with or without a space after `:` and `,`.
    Line { spaced: bool },
}

impl Layout {
    /// The layout of the value at `span`.
    fn of(text: &str, span: &Range<usize>) -> Layout {
        let old = &text[span.clone()];
        let Some(newline) = old.find('\n') else {
            // A one-line value is spaced like the line it is on.
            let end = text[span.end..].find('\n').map_or(text.len(), |at| span.end + at);
            let line = &text[line_start(text, span.start)..end];
            return Layout::Line { spaced: line.contains(": ") || line.contains(", ") };
        };
        let base = indent_at(text, line_start(text, span.start));
        let inner = indent_at(old, newline + 1);
        Layout::Pretty { base: base.to_string(), unit: non_empty(inner.strip_prefix(base).unwrap_or(inner)) }
    }
}

fn non_empty(unit: &str) -> String {
    if unit.is_empty() {
        "  ".to_string()
    } else {
        unit.to_string()
    }
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// The spaces and tabs that start the line beginning at `line`.
fn indent_at(text: &str, line: usize) -> &str {
    let rest = &text[line..];
    &rest[..rest.len() - rest.trim_start_matches([' ', '\t']).len()]
}

fn render(value: &Dynamic, order: Option<&KeyOrder>, layout: &Layout) -> Result<String, String> {
    let json = AsJson { value, order, first: &[] };
    let mut out = Vec::new();
    let result = match layout {
        Layout::Pretty { unit, .. } => json.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PrettyFormatter::with_indent(unit.as_bytes()),
        )),
        Layout::Line { spaced: true } => {
            json.serialize(&mut serde_json::Serializer::with_formatter(&mut out, Spaced))
        }
        Layout::Line { spaced: false } => {
            json.serialize(&mut serde_json::Serializer::with_formatter(&mut out, CompactFormatter))
        }
    };
    result.map_err(|e| format!("cannot be turned into JSON: {e}"))?;
    let text = String::from_utf8(out).expect("serde_json writes UTF-8");
    Ok(match layout {
        // JSON strings hold no raw newline, so every newline is layout.
        Layout::Pretty { base, .. } if !base.is_empty() => text.replace('\n', &format!("\n{base}")),
        _ => text,
    })
}

/// One-line JSON with a space after each `:` and `,` (`{"a": 1, "b": 2}`).
struct Spaced;

impl Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}
