//! Where things live: the project root, `ALOOP_HOME`, and the sandbox that
//! keeps every script path inside one of those two roots.
//!
//! The rule: a script path is taken apart by its text into a root and the
//! names below it (`locate`), then opened from the root's directory handle
//! one name at a time without following symbolic links (`beneath`). Writes,
//! appends, locks and removals never go through a link; reads may follow one
//! whose target stays inside the same root.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::HostError;

pub(crate) mod beneath;

pub use beneath::{Access, Target};

/// The root a script path lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    Project,
    Home,
}

/// A script path taken apart by its text (see `Roots::locate`).
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub(crate) root: Root,
    /// The plain names below the root: no `.`, `..` or empty ones.
    pub(crate) names: Vec<String>,
}

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
    pub(crate) fn loop_dir(&self) -> PathBuf {
        self.project.join(".loop")
    }

    /// Where a script path leads, as a path (e.g. a child's working
    /// directory): the same walk as every `fs::` primitive under the reading
    /// rules (see `beneath`), so the answer lies inside one of the roots.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, HostError> {
        self.open(raw, Access::Read, "resolving").map(|target| target.path)
    }

    /// Splits a script path by its text into the root it names and the plain
    /// names below it; nothing on disk is looked at. A relative path is the
    /// project's; an absolute one belongs to the root whose canonical path it
    /// starts with (the deeper one when one root holds the other). `.` and
    /// `..` are settled on the text and never climb above the root. A
    /// relative path that lands in `ALOOP_HOME` (a home inside the project)
    /// is refused: scripts reach it only through paths they name there.
    pub(crate) fn locate(&self, raw: &str) -> Result<Located, HostError> {
        if raw.is_empty() {
            return Err(HostError::path(raw, "the path is empty"));
        }
        if raw.contains('\0') {
            return Err(HostError::path(raw, "the path contains a NUL byte"));
        }
        let absolute = raw.starts_with('/');
        let mut names: Vec<&str> = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                // `/..` is `/`, as for the kernel; a relative path may not
                // leave the project this way.
                ".." => {
                    if names.pop().is_none() && !absolute {
                        return Err(self.outside(raw));
                    }
                }
                name => names.push(name),
            }
        }
        let (root, depth) = if absolute {
            let depth_under = |root: &Path| {
                let parts = names_of(root)?;
                names.starts_with(&parts).then_some(parts.len())
            };
            match (depth_under(&self.project), depth_under(&self.home)) {
                (Some(p), Some(h)) if h > p => (Root::Home, h),
                (Some(p), _) => (Root::Project, p),
                (None, Some(h)) => (Root::Home, h),
                (None, None) => return Err(self.outside(raw)),
            }
        } else {
            (Root::Project, 0)
        };
        let names: Vec<String> = names[depth..].iter().map(std::string::ToString::to_string).collect();
        if root == Root::Project && self.home.starts_with(&self.project) {
            let full = names.iter().fold(self.project.clone(), |path, name| path.join(name));
            if full.starts_with(&self.home) {
                return Err(HostError::path(
                    raw,
                    format!(
                        "is inside ALOOP_HOME ({}), which is not part of the project; \
                         name files there by their absolute path",
                        self.home.display()
                    ),
                ));
            }
        }
        Ok(Located { root, names })
    }

    /// The canonical directory of a root.
    pub(crate) fn dir(&self, root: Root) -> &Path {
        match root {
            Root::Project => &self.project,
            Root::Home => &self.home,
        }
    }

    /// Whether a resolved path lies in either root.
    fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.project) || path.starts_with(&self.home)
    }

    fn outside(&self, raw: &str) -> HostError {
        HostError::path(
            raw,
            format!(
                "is outside the project ({}) and ALOOP_HOME ({})",
                self.project.display(),
                self.home.display()
            ),
        )
    }

    /// The path relative to whichever root holds it, for messages.
    pub(crate) fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.project)
            .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
    }
}

/// Resolves `path` like the kernel would, one component at a time: every
/// symlink that exists is followed (dangling ones too), `..` goes up from the
/// resolved directory, and components that do not exist yet are appended as
/// they are. The result is absolute and free of symlinks and `..`, so a
/// containment check on it cannot be fooled by the path's text.
pub(crate) fn canonicalize_lenient(path: &Path) -> io::Result<PathBuf> {
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

/// The names of an absolute path's components, if they are all UTF-8.
fn names_of(path: &Path) -> Option<Vec<&str>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_str()),
            _ => None,
        })
        .collect()
}

/// The project root: the top of the enclosing git work tree (found by
/// walking up to a `.git` entry, no process spawned), else `start` itself.
pub(crate) fn find_project_root(start: &Path) -> PathBuf {
    start.ancestors().find(|dir| dir.join(".git").exists()).unwrap_or(start).to_path_buf()
}

/// `ALOOP_HOME`, or `~/.aloop`.
pub(crate) fn aloop_home() -> PathBuf {
    match std::env::var_os("ALOOP_HOME") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dirs::home_dir().unwrap_or_else(|| PathBuf::from("/tmp")).join(".aloop"),
    }
}
