//! `fs::` — files inside the project or `ALOOP_HOME`, nowhere else.
//!
//! Every path goes through the sandbox (see `paths::Roots::resolve`). Writes
//! are atomic with mode 0600, `append` is one `O_APPEND` write, JSON that does
//! not parse is reported with line and column, and `lock` is an exclusive
//! advisory lock released when the value is dropped or `release()`d.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rhai::{Array, Dynamic, Module};

use super::{fail, json, raise, Fallible};
use crate::atomic::{self, FileLock};
use crate::engine::SharedHost;
use crate::error::HostError;

/// A held lock, as the script sees it. Cloning shares the same lock.
#[derive(Clone)]
pub struct Lock(Rc<RefCell<FileLock>>);

/// Reads a text file.
fn read(host: &SharedHost, path: &str) -> Fallible<String> {
    let full = host.roots.resolve(path).map_err(raise)?;
    atomic::read_text(&full).map_err(|e| match e {
        HostError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            raise(format!("{path}: no such file"))
        }
        other => raise(other),
    })
}

/// Reads and parses a JSON file; a malformed file is an error naming
/// `path:line:col`, and nothing is changed.
fn read_json(host: &SharedHost, path: &str) -> Fallible<Dynamic> {
    let text = read(host, path)?;
    json::parse_value(path, &text).map_err(raise)
}

fn write_bytes(host: &SharedHost, path: &str, bytes: &[u8]) -> Fallible<()> {
    let full = host.roots.resolve(path).map_err(raise)?;
    atomic::write(&full, bytes).map_err(|e| raise(format!("writing {path}: {e}")))
}

/// Writes pretty JSON with a final newline, keeping the key order of the file
/// it replaces, and returns the text written (so a caller can tell later
/// whether the file changed without reading it back). The existing file must
/// itself be valid JSON: a malformed state file is never overwritten.
fn write_json(host: &SharedHost, path: &str, value: Dynamic) -> Fallible<String> {
    let full = host.roots.resolve(path).map_err(raise)?;
    let old_text = if full.is_file() { atomic::read_text(&full).map_err(raise)? } else { String::new() };
    let old_order: Option<json::KeyOrder> = if old_text.trim().is_empty() {
        None
    } else {
        let order = json::parse(path, &old_text)
            .map_err(|e| raise(format!("{e} (refusing to overwrite a malformed file)")))?;
        Some(order)
    };
    let mut text = json::to_pretty_json(&value, old_order.as_ref(), old_text.len())?;
    text.push('\n');
    write_bytes(host, path, text.as_bytes())?;
    Ok(text)
}

impl Lock {
    /// lock.release(): lets go before the value is dropped.
    pub fn release(&mut self) {
        self.0.borrow_mut().release();
    }
}

fn lock(host: &SharedHost, path: &str, wait: Duration) -> Fallible<Lock> {
    let full = host.roots.resolve(path).map_err(raise)?;
    host.refill_budget();
    let lock = FileLock::acquire(&full, wait).map_err(raise)?;
    Ok(Lock(Rc::new(RefCell::new(lock))))
}

pub fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    primitive!(m, "read", |path: &str| read(&h, path));
    let h = host.clone();
    primitive!(m, "read_json", |path: &str| read_json(&h, path));
    let h = host.clone();
    primitive!(m, "exists", |path: &str| { Ok(h.roots.resolve(path).map_err(raise)?.exists()) });
    let h = host.clone();
    // fs::list(dir) -> sorted names of the entries in a directory.
    primitive!(m, "list", |path: &str| {
        let full = h.roots.resolve(path).map_err(raise)?;
        let entries = std::fs::read_dir(&full).map_err(|e| raise(format!("listing {path}: {e}")))?;
        let mut names: Vec<String> =
            entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        Ok(names.into_iter().map(Dynamic::from).collect::<Array>())
    });
    let h = host.clone();
    primitive!(m, "write", |path: &str, text: &str| write_bytes(&h, path, text.as_bytes()));
    let h = host.clone();
    primitive!(m, "write_json", |path: &str, value: Dynamic| write_json(&h, path, value));
    let h = host.clone();
    primitive!(m, "append", |path: &str, text: &str| {
        let full = h.roots.resolve(path).map_err(raise)?;
        atomic::append(&full, text.as_bytes()).map_err(|e| raise(format!("appending to {path}: {e}")))
    });
    let h = host.clone();
    // fs::remove(path) -> whether there was a file to remove.
    primitive!(m, "remove", |path: &str| {
        let full = h.roots.resolve(path).map_err(raise)?;
        match std::fs::remove_file(&full) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => fail(format!("removing {path}: {e}")),
        }
    });
    let h = host.clone();
    primitive!(m, "mkdir", |path: &str| {
        let full = h.roots.resolve(path).map_err(raise)?;
        atomic::create_dirs(&full).map_err(|e| raise(format!("creating {path}: {e}")))
    });
    let h = host.clone();
    // fs::remove_all(dir) -> whether there was anything to remove. Refuses
    // the project root and ALOOP_HOME themselves.
    primitive!(m, "remove_all", |path: &str| {
        let full = h.roots.resolve(path).map_err(raise)?;
        if full == h.roots.project || full == h.roots.home {
            return fail(format!("fs::remove_all: refusing to remove {path}, a root itself"));
        }
        match std::fs::remove_dir_all(&full) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => fail(format!("removing {path}: {e}")),
        }
    });
    let h = host.clone();
    // fs::lock(path): take the lock now or fail naming its holder.
    primitive!(m, "lock", |path: &str| lock(&h, path, Duration::ZERO));
    let h = host.clone();
    // fs::lock(path, seconds): wait up to that long for the holder.
    primitive!(m, "lock", |path: &str, wait: Dynamic| {
        let secs = wait
            .as_float()
            .or_else(|_| wait.as_int().map(|i| i as f64))
            .map_err(|_| raise("fs::lock: the wait must be a number of seconds"))?;
        lock(&h, path, Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)))
    });
    m
}
