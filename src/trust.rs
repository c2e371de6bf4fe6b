//! Consent for repository scripts. A cloned repository can carry
//! `.loop/scripts/`; those files run only after the user trusts them, pinned
//! by SHA-256 so that an edit makes a file untrusted again. The store is
//! `$ALOOP_HOME/trust.json`: `{"version": 1, "files": {"/abs/path": "sha256"}}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::atomic;
use crate::files::lock::FileLock;
use crate::files::read;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    version: u32,
    files: BTreeMap<String, String>,
}

/// The trust store of one `ALOOP_HOME`.
#[derive(Debug)]
pub(crate) struct Trust {
    path: PathBuf,
}

/// Whether a file may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Trusted,
    Untrusted,
    /// Trusted once, edited since.
    Changed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Trusted => "trusted",
            Status::Untrusted => "untrusted",
            Status::Changed => "changed since trusted",
        })
    }
}

pub(crate) fn hash(text: &str) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(text.as_bytes()) {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl Trust {
    pub(crate) fn new(home: &Path) -> Self {
        Self { path: home.join("trust.json") }
    }

    fn load(&self) -> Result<Store> {
        if !self.path.exists() {
            return Ok(Store { version: 1, files: BTreeMap::new() });
        }
        let text = read::read_text(&self.path)?;
        // json::parse: a byte order mark is skipped, errors say path:line:col.
        Ok(crate::host::json::parse(&self.path.display().to_string(), &text)?)
    }

    /// The trust status of a file with this content.
    pub(crate) fn status(&self, path: &Path, text: &str) -> Result<Status> {
        let store = self.load()?;
        Ok(match store.files.get(&path.display().to_string()) {
            Some(h) if *h == hash(text) => Status::Trusted,
            Some(_) => Status::Changed,
            None => Status::Untrusted,
        })
    }

    /// Applies `change` to the store under its lock and writes it atomically.
    fn update(&self, change: impl FnOnce(&mut Store)) -> Result<()> {
        let _lock = FileLock::acquire(&self.path.with_extension("json.lock"), Duration::from_secs(10))?;
        let mut store = self.load()?;
        store.version = 1;
        change(&mut store);
        let text = serde_json::to_string_pretty(&store)? + "\n";
        atomic::write(&self.path, text.as_bytes()).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Pins each (path, content) pair as trusted.
    pub(crate) fn trust(&self, files: &[(PathBuf, String)]) -> Result<()> {
        self.update(|store| {
            for (path, text) in files {
                store.files.insert(path.display().to_string(), hash(text));
            }
        })
    }

    /// Forgets a path; returns whether it was there.
    pub(crate) fn revoke(&self, path: &Path) -> Result<bool> {
        let key = path.display().to_string();
        let mut removed = false;
        self.update(|store| removed = store.files.remove(&key).is_some())?;
        Ok(removed)
    }

    /// Every trusted path with its pinned hash.
    pub(crate) fn entries(&self) -> Result<BTreeMap<String, String>> {
        Ok(self.load()?.files)
    }
}
