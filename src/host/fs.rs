//! `fs::` — files inside the project or `ALOOP_HOME`, nowhere else.
//!
//! Every path goes through the sandbox (see `paths` and `paths::beneath`):
//! opened from a root's directory handle one name at a time, never through a
//! symbolic link when writing, appending, locking or removing, and through
//! one when reading only if it stays in the same root. Only regular files of
//! bounded size are read. Writes are atomic with mode 0600, `append` is one
//! `O_APPEND` write that is whole or rolled back, JSON that does not parse
//! (or gives a key twice) is reported with line and column, and `lock` is an
//! exclusive advisory lock released when the value is dropped or
//! `release()`d. `open_json` gives a document that writes back only what
//! changed (`json::document`); `read_jsonl`, `append_jsonl` and
//! `write_jsonl` keep files of one JSON value per line.

use std::cell::RefCell;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use rhai::{Array, Dynamic, Module};

use super::{fail, json, raise, Fallible};
use crate::context::SharedHost;
use crate::error::HostError;
use crate::files::atomic;
use crate::files::lock::FileLock;
use crate::files::read;
use crate::host::json::JsonDocument;
use crate::paths::{beneath, Access, Target};

/// A held lock, as the script sees it. Cloning shares the same lock.
#[derive(Clone)]
pub(crate) struct Lock(Rc<RefCell<FileLock>>);

/// Opens the directory holding `path` for `access`, raising the refusal.
fn open(host: &SharedHost, path: &str, access: Access, verb: &str) -> Fallible<Target> {
    host.roots.open(path, access, verb).map_err(raise)
}

/// The name of a file in its directory; a root itself is not a file.
fn file_name<'a>(target: &'a Target, path: &str) -> Fallible<&'a str> {
    target.name.as_deref().ok_or_else(|| raise(format!("{path}: is a directory (a root itself)")))
}

/// Reads a text file.
fn read(host: &SharedHost, path: &str) -> Fallible<String> {
    let target = open(host, path, Access::Read, "reading")?;
    read::read_at(target.dir.as_fd(), file_name(&target, path)?, path).map_err(|e| {
        if e.is_not_found() {
            raise(format!("{path}: no such file"))
        } else {
            raise(e)
        }
    })
}

/// Reads and parses a JSON file; a malformed file is an error naming
/// `path:line:col`, and nothing is changed.
fn read_json(host: &SharedHost, path: &str) -> Fallible<Dynamic> {
    let text = read(host, path)?;
    json::parse_value(path, &text).map_err(raise)
}

fn write_bytes(host: &SharedHost, path: &str, bytes: &[u8]) -> Fallible<()> {
    let target = open(host, path, Access::Write, "writing")?;
    write_in(&target, path, bytes)
}

fn write_in(target: &Target, path: &str, bytes: &[u8]) -> Fallible<()> {
    atomic::write_at(target.dir.as_fd(), file_name(target, path)?, bytes)
        .map_err(|e| raise(format!("writing {path}: {e}")))
}

/// Writes pretty JSON with a final newline, keeping the key order of the file
/// it replaces, and returns the text written (so a caller can tell later
/// whether the file changed without reading it back). The existing file must
/// itself be valid JSON (no key given twice either): a malformed state file
/// is never overwritten. Keys the old file lacks follow `first`, then sort.
fn write_json(host: &SharedHost, path: &str, value: &Dynamic, first: &[String]) -> Fallible<String> {
    let target = open(host, path, Access::Write, "writing")?;
    let old_text = match read::read_at(target.dir.as_fd(), file_name(&target, path)?, path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => String::new(),
        Err(e) => return Err(raise(e)),
    };
    let old_order: Option<json::KeyOrder> = if old_text.trim().is_empty() {
        None
    } else {
        let order = json::parse(path, &old_text)
            .map_err(|e| raise(format!("{e} (refusing to overwrite a malformed file)")))?;
        Some(order)
    };
    let mut text = json::to_pretty_json_in(value, old_order.as_ref(), first, old_text.len())?;
    text.push('\n');
    write_in(&target, path, text.as_bytes())?;
    Ok(text)
}

/// Reads a file of one JSON value per line (JSONL) into an array. Blank
/// lines are skipped; a malformed line is an error naming `path:line:col`;
/// a last line without its newline is an append that was cut off (the
/// process killed midway) and is left out, as `append_jsonl` cuts it.
fn read_jsonl(host: &SharedHost, path: &str) -> Fallible<Array> {
    let text = read(host, path)?;
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    let mut values = Array::new();
    for (n, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = json::parse_value(path, line).map_err(|e| match e {
            HostError::MalformedJson { path, column, message, .. } => {
                raise(HostError::MalformedJson { path, line: n + 1, column, message })
            }
            other => raise(other),
        })?;
        values.push(value);
    }
    Ok(values)
}

/// Appends `value` as one JSON line, whole or not at all (see
/// `atomic::append_line_at`, which also cuts off a line an earlier append
/// left unfinished).
fn append_jsonl(host: &SharedHost, path: &str, value: &Dynamic) -> Fallible<()> {
    let mut line = json::to_json(value)?;
    line.push('\n');
    let target = open(host, path, Access::Write, "appending to")?;
    atomic::append_line_at(target.dir.as_fd(), file_name(&target, path)?, line.as_bytes())
        .map_err(|e| raise(format!("appending to {path}: {e}")))
}

/// Writes an array as JSON lines, atomically (a reader, or a crash, sees
/// the old file or the new one).
fn write_jsonl(host: &SharedHost, path: &str, values: &Array) -> Fallible<()> {
    let mut text = String::new();
    for value in values {
        text.push_str(&json::to_json(value)?);
        text.push('\n');
    }
    write_bytes(host, path, text.as_bytes())
}

/// Opens a JSON file as a document that keeps its text (see
/// `json::document`); a malformed file is an error naming `path:line:col`.
fn open_json(host: &SharedHost, path: &str) -> Fallible<JsonDocument> {
    let text = read(host, path)?;
    let doc = json::Document::parse(path, text).map_err(raise)?;
    Ok(JsonDocument(Rc::new(RefCell::new(doc))))
}

/// Writes a document's changes back, atomically, through the sandbox. When
/// the file is no longer what the document last read or wrote (someone
/// else edited it), the file is read again and the changes applied to it
/// anew (see `Document::rebase`), or nothing is written and the error says
/// which value changed. A document without changes is not written.
fn save(host: &SharedHost, doc: &JsonDocument) -> Fallible<()> {
    let mut doc = doc.0.borrow_mut();
    let path = doc.path.clone();
    let target = open(host, &path, Access::Write, "writing")?;
    let disk = match read::read_at(target.dir.as_fd(), file_name(&target, &path)?, &path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => {
            return fail(format!("{path}: the file was removed since it was read; nothing was written"))
        }
        Err(e) => return Err(raise(e)),
    };
    if disk != doc.on_disk() {
        doc.rebase(disk).map_err(raise)?;
    } else if !doc.is_changed() {
        return Ok(());
    }
    write_in(&target, &path, doc.text().as_bytes())?;
    doc.saved();
    Ok(())
}

/// Whether `path` names something; a missing directory on the way is
/// simply "no".
fn exists(host: &SharedHost, path: &str) -> Fallible<bool> {
    let target = match host.roots.open(path, Access::Read, "looking up") {
        Ok(target) => target,
        Err(HostError::Io { source, .. })
            if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(raise(e)),
    };
    let Some(name) = &target.name else { return Ok(true) };
    Ok(beneath::exists(target.dir.as_fd(), name))
}

/// The sorted names in a directory, which is opened without following a link.
fn list(host: &SharedHost, path: &str) -> Fallible<Array> {
    let target = open(host, path, Access::Read, "listing")?;
    let failed = |e: std::io::Error| raise(format!("listing {path}: {e}"));
    let dir = match &target.name {
        Some(name) => beneath::open_dir(target.dir.as_fd(), name.as_str()).map_err(|e| failed(e.into()))?,
        None => target.dir,
    };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).map_err(|e| failed(e.into()))? {
        let entry = entry.map_err(|e| failed(e.into()))?;
        let name = entry.file_name().to_string_lossy();
        if name != "." && name != ".." {
            names.push(name.into_owned());
        }
    }
    names.sort();
    Ok(names.into_iter().map(Dynamic::from).collect())
}

fn append(host: &SharedHost, path: &str, text: &str) -> Fallible<()> {
    let target = open(host, path, Access::Write, "appending to")?;
    atomic::append_at(target.dir.as_fd(), file_name(&target, path)?, text.as_bytes())
        .map_err(|e| raise(format!("appending to {path}: {e}")))
}

/// Opens the directory holding `path` for removing it; `None` when a
/// folder on the way is missing (so there is nothing to remove).
fn open_to_remove(host: &SharedHost, path: &str) -> Fallible<Option<Target>> {
    match host.roots.open(path, Access::Remove, "removing") {
        Ok(target) => Ok(Some(target)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(raise(e)),
    }
}

/// Removes a file (a link itself, never its target); whether there was one.
fn remove(host: &SharedHost, path: &str) -> Fallible<bool> {
    let Some(target) = open_to_remove(host, path)? else { return Ok(false) };
    match rustix::fs::unlinkat(&target.dir, file_name(&target, path)?, rustix::fs::AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => fail(format!("removing {path}: {}", std::io::Error::from(e))),
    }
}

/// Removes a directory tree (or a file, or a link) without following any
/// link; refuses the roots themselves.
fn remove_all(host: &SharedHost, path: &str) -> Fallible<bool> {
    let Some(target) = open_to_remove(host, path)? else { return Ok(false) };
    let Some(name) = &target.name else {
        return fail(format!("fs::remove_all: refusing to remove {path}, a root itself"));
    };
    if target.path == host.roots.home {
        return fail(format!("fs::remove_all: refusing to remove {path}, a root itself"));
    }
    beneath::remove_tree(target.dir.as_fd(), name.as_str())
        .map_err(|e| raise(format!("removing {path}: {e}")))
}

fn mkdir(host: &SharedHost, path: &str) -> Fallible<()> {
    let target = open(host, path, Access::Write, "creating")?;
    let Some(name) = &target.name else { return Ok(()) };
    match rustix::fs::mkdirat(&target.dir, name.as_str(), rustix::fs::Mode::from_raw_mode(0o700)) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) if beneath::open_dir(target.dir.as_fd(), name.as_str()).is_ok() => {
            Ok(())
        }
        Err(e) => fail(format!("creating {path}: {}", std::io::Error::from(e))),
    }
}

impl Lock {
    /// `lock.release()`: lets go before the value is dropped.
    pub(crate) fn release(&mut self) {
        self.0.borrow_mut().release();
    }
}

fn lock(host: &SharedHost, path: &str, wait: Duration) -> Fallible<Lock> {
    let target = open(host, path, Access::Write, "locking")?;
    host.budget.refill();
    let lock =
        FileLock::acquire_at(target.dir.as_fd(), file_name(&target, path)?, path, wait).map_err(raise)?;
    Ok(Lock(Rc::new(RefCell::new(lock))))
}

/// The methods of a document from `fs::open_json` (global, so that
/// `doc.get(...)` finds them): `doc.get(pointer)` → the value there or `()`;
/// `doc.value()` → the whole document; `doc.set(pointer, value)` replaces
/// one value (or adds a missing key to an existing object) in the text;
/// `doc.save()` writes the changes back (see `save`); `doc.text()` → the
/// text with the changes.
fn document_methods(m: &mut Module, host: &SharedHost) {
    // A primitive registered as a method: global, so `doc.save()` finds it.
    macro_rules! method {
        ($name:expr, |$($arg:ident : $ty:ty),*| $body:expr) => {
            rhai::FuncRegistration::new($name).with_namespace(rhai::FnNamespace::Global).set_into_module(
                m,
                move |ctx: rhai::NativeCallContext, $($arg: $ty),*| {
                    #[allow(clippy::redundant_closure_call)]
                    let result: Fallible<_> = (|| $body)();
                    result.map_err(|e| super::at(&ctx, e))
                },
            )
        };
    }
    method!("get", |doc: &mut JsonDocument, pointer: &str| doc.0.borrow_mut().get(pointer).map_err(raise));
    method!("value", |doc: &mut JsonDocument| doc.0.borrow_mut().get("").map_err(raise));
    method!("set", |doc: &mut JsonDocument, pointer: &str, value: Dynamic| {
        doc.0.borrow_mut().set(pointer, value).map_err(raise)
    });
    method!("text", |doc: &mut JsonDocument| Ok(doc.0.borrow().text().to_string()));
    let h = host.clone();
    method!("save", |doc: &mut JsonDocument| save(&h, doc));
    m.set_custom_type::<JsonDocument>("JsonDocument");
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    primitive!(m, "read", |path: &str| read(&h, path));
    let h = host.clone();
    primitive!(m, "read_json", |path: &str| read_json(&h, path));
    let h = host.clone();
    primitive!(m, "exists", |path: &str| exists(&h, path));
    let h = host.clone();
    // fs::list(dir) -> sorted names of the entries in a directory.
    primitive!(m, "list", |path: &str| list(&h, path));
    let h = host.clone();
    primitive!(m, "write", |path: &str, text: &str| write_bytes(&h, path, text.as_bytes()));
    let h = host.clone();
    primitive!(m, "write_json", |path: &str, value: Dynamic| write_json(&h, path, &value, &[]));
    let h = host.clone();
    // fs::write_json(path, value, #{key_order: [...]}): keys the file does
    // not have yet come in that order, before the others.
    primitive!(m, "write_json", |path: &str, value: Dynamic, opts: rhai::Map| {
        write_json(&h, path, &value, &json::key_order_option(&opts, "fs::write_json")?)
    });
    let h = host.clone();
    // fs::read_jsonl(path) -> the values of a file of JSON lines.
    primitive!(m, "read_jsonl", |path: &str| read_jsonl(&h, path));
    let h = host.clone();
    // fs::append_jsonl(path, value): one JSON line, whole or not at all.
    primitive!(m, "append_jsonl", |path: &str, value: Dynamic| append_jsonl(&h, path, &value));
    let h = host.clone();
    // fs::write_jsonl(path, values): the whole file, atomically.
    primitive!(m, "write_jsonl", |path: &str, values: Array| write_jsonl(&h, path, &values));
    let h = host.clone();
    // fs::open_json(path) -> a document that keeps the file's text; see
    // `document_methods`.
    primitive!(m, "open_json", |path: &str| open_json(&h, path));
    document_methods(&mut m, host);
    let h = host.clone();
    primitive!(m, "append", |path: &str, text: &str| append(&h, path, text));
    let h = host.clone();
    // fs::remove(path) -> whether there was a file to remove.
    primitive!(m, "remove", |path: &str| remove(&h, path));
    let h = host.clone();
    primitive!(m, "mkdir", |path: &str| mkdir(&h, path));
    let h = host.clone();
    // fs::remove_all(dir) -> whether there was anything to remove. Refuses
    // the project root and ALOOP_HOME themselves.
    primitive!(m, "remove_all", |path: &str| remove_all(&h, path));
    let h = host.clone();
    // fs::lock(path): take the lock now or fail naming its holder.
    primitive!(m, "lock", |path: &str| lock(&h, path, Duration::ZERO));
    let h = host.clone();
    // fs::lock(path, seconds): wait up to that long for the holder.
    primitive!(m, "lock", |path: &str, wait: Dynamic| {
        let secs =
            super::as_number(&wait).ok_or_else(|| raise("fs::lock: the wait must be a number of seconds"))?;
        lock(&h, path, Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)))
    });
    m
}
