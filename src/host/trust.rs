//! `trust::` — whether the user consented to a file, the same consent
//! `aloop trust` gives repository scripts: pinned by SHA-256 in
//! `$ALOOP_HOME/trust.json`, so an edit makes the file untrusted again.
//! Scripts use it for repository files that name programs to run (a
//! config's commands), which must not run from a fresh clone.

use std::os::fd::AsFd;

use rhai::Module;

use super::{raise, Fallible};
use crate::context::SharedHost;
use crate::files::read;
use crate::paths::Access;

/// The file at `path` (through the sandbox, never through a link): its
/// absolute path and its text.
fn load(host: &SharedHost, path: &str) -> Fallible<(std::path::PathBuf, String)> {
    let target = host.roots.open(path, Access::Read, "reading").map_err(raise)?;
    let name = target.name.as_deref().ok_or_else(|| raise(format!("{path}: is a directory")))?;
    let text = read::read_at(target.dir.as_fd(), name, path).map_err(raise)?;
    Ok((target.path.clone(), text))
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    // trust::status(path) -> "trusted", "untrusted" or "changed since
    // trusted" for the file as it is now.
    primitive!(m, "status", |path: &str| {
        let (full, text) = load(&h, path)?;
        Ok(h.trust.status(&full, &text).map_err(|e| raise(format!("{e:#}")))?.to_string())
    });
    let h = host.clone();
    // trust::trust(path) -> pins the file as it is now (for a file the user
    // just had aloop write, such as `aloop init`'s config).
    primitive!(m, "trust", |path: &str| {
        let (full, text) = load(&h, path)?;
        h.trust.trust(&[(full, text)]).map_err(|e| raise(format!("{e:#}")))
    });
    m
}
