//! Where things live: the project root, `ALOOP_HOME`, and the sandbox that
//! keeps every script path inside one of those two roots.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::HostError;

/// The two directory trees a script may touch, both canonical.
#[derive(Debug, Clone)]
pub struct Roots {
    pub project: PathBuf,
    pub home: PathBuf,
}

impl Roots {
    /// `project` must exist; `home` may not exist yet (it is created on the
    /// first write) and is canonicalized through its nearest existing ancestor.
    pub fn new(project: &Path, home: &Path) -> io::Result<Self> {
        Ok(Self { project: project.canonicalize()?, home: canonicalize_lenient(home)? })
    }

    /// The directory of per-repository state and overrides (`.loop/`).
    pub fn loop_dir(&self) -> PathBuf {
        self.project.join(".loop")
    }

    /// Resolves a script-supplied path: relative paths are taken from the
    /// project root, every symlink that exists is followed, and the result
    /// must lie inside the project or `ALOOP_HOME`. The check is done on the
    /// resolved path, never on the text, so a symlink cannot smuggle a path out.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, HostError> {
        if raw.is_empty() {
            return Err(HostError::path(raw, "the path is empty"));
        }
        if raw.contains('\0') {
            return Err(HostError::path(raw, "the path contains a NUL byte"));
        }
        let joined = self.project.join(raw);
        let resolved = canonicalize_lenient(&joined)
            .map_err(|e| HostError::path(raw, format!("cannot be resolved: {e}")))?;
        if resolved.starts_with(&self.project) || resolved.starts_with(&self.home) {
            Ok(resolved)
        } else {
            Err(HostError::path(
                raw,
                format!(
                    "resolves to {} which is outside the project ({}) and ALOOP_HOME ({})",
                    resolved.display(),
                    self.project.display(),
                    self.home.display()
                ),
            ))
        }
    }

    /// The path relative to whichever root holds it, for messages.
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.project)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string())
    }
}

/// Resolves `path` like the kernel would, one component at a time: every
/// symlink that exists is followed (dangling ones too), `..` goes up from the
/// resolved directory, and components that do not exist yet are appended as
/// they are. The result is absolute and free of symlinks and `..`, so a
/// containment check on it cannot be fooled by the path's text.
pub fn canonicalize_lenient(path: &Path) -> io::Result<PathBuf> {
    resolve_with_depth(path, 0)
}

fn resolve_with_depth(path: &Path, depth: usize) -> io::Result<PathBuf> {
    if depth > 40 {
        return Err(io::Error::other("too many levels of symbolic links"));
    }
    let mut resolved = if path.is_absolute() { PathBuf::new() } else { std::env::current_dir()? };
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => resolved.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let next = resolved.join(name);
                match next.symlink_metadata() {
                    Ok(meta) if meta.is_symlink() => {
                        let target = std::fs::read_link(&next)?;
                        resolved = resolve_with_depth(&resolved.join(target), depth + 1)?;
                    }
                    _ => resolved = next,
                }
            }
        }
    }
    Ok(resolved)
}

/// The project root: the top of the enclosing git work tree (found by
/// walking up to a `.git` entry, no process spawned), else `start` itself.
pub fn find_project_root(start: &Path) -> PathBuf {
    start.ancestors().find(|dir| dir.join(".git").exists()).unwrap_or(start).to_path_buf()
}

/// `ALOOP_HOME`, or `~/.aloop`.
pub fn aloop_home() -> PathBuf {
    match std::env::var_os("ALOOP_HOME") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dirs::home_dir().unwrap_or_else(|| PathBuf::from("/tmp")).join(".aloop"),
    }
}
