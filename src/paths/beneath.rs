//! Opening script paths beneath a root's directory handle, one name at a
//! time with `O_NOFOLLOW`, so that no symbolic link below the root is
//! followed by accident and no swap of a directory for a link between a
//! check and a use can carry a write out of the root: every step is taken
//! from the directory handle the previous step opened.
//!
//! Links are followed in one case only: a read (`Access::Read`) that meets a
//! link resolves the whole path, and if the result lies in the same root,
//! opens that result the same way, again without following anything (a
//! project whose `docs` is a link to `documentation` can be read). Writes,
//! appends, locks and removals refuse a link on the way and name it.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{canonicalize_lenient, Root, Roots};
use crate::error::HostError;

/// What the opened path is for; decides whether links are followed and
/// whether missing directories are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A link whose target stays in the same root is followed; nothing is
    /// created.
    Read,
    /// Missing directories are created (mode 0700); no link is followed and
    /// a link at the path itself is refused.
    Write,
    /// No link is followed on the way; a link at the path itself is what
    /// gets removed (its target is left alone). Nothing is created.
    Remove,
}

/// An opened script path: the directory that holds it and its name there.
#[derive(Debug)]
pub struct Target {
    /// The directory holding the entry, opened without following links.
    pub dir: OwnedFd,
    /// The entry's name in `dir`; `None` when the path is a root itself
    /// (then `dir` is that root).
    pub name: Option<String>,
    /// Where it is, for messages and for callers that need a path.
    pub path: PathBuf,
}

/// Why a walk stopped.
enum Stop {
    /// `names[at]` is a symbolic link.
    Link(usize),
    Io(io::Error),
}

impl Roots {
    /// Opens the directory that holds script path `raw`, as `access` says.
    /// I/O errors say `"{verb} {raw}: ..."`; refusals name the path and the
    /// link.
    pub fn open(&self, raw: &str, access: Access, verb: &str) -> Result<Target, HostError> {
        let located = self.locate(raw)?;
        let root = self.dir(located.root);
        let names: Vec<&str> = located.names.iter().map(String::as_str).collect();
        match walk(root, &names, access) {
            Ok(target) => Ok(target),
            Err(Stop::Io(e)) => Err(HostError::io(format!("{verb} {raw}"), e)),
            Err(Stop::Link(_)) if access == Access::Read => self.follow(raw, located.root, &names, verb),
            Err(Stop::Link(at)) => Err(self.link_error(
                raw,
                root,
                &names,
                at,
                "aloop never writes, appends, locks or removes through a symbolic link",
            )),
        }
    }

    /// A read met a link: resolve the whole path and open the result, which
    /// must lie in the same root, without following anything.
    fn follow(&self, raw: &str, root: Root, names: &[&str], verb: &str) -> Result<Target, HostError> {
        let dir = self.dir(root);
        let joined = names.iter().fold(dir.to_path_buf(), |path, name| path.join(name));
        let resolved = canonicalize_lenient(&joined)
            .map_err(|e| HostError::path(raw, format!("cannot be resolved: {e}")))?;
        let into_home =
            root == Root::Project && self.home.starts_with(&self.project) && resolved.starts_with(&self.home);
        let rest = match resolved.strip_prefix(dir) {
            Ok(rest) if !into_home => rest,
            _ => return Err(self.escape_error(raw, root, &resolved)),
        };
        let rest: Vec<&str> =
            rest.iter().map(|name| name.to_str()).collect::<Option<_>>().ok_or_else(|| {
                HostError::path(raw, format!("resolves to {}, which is not UTF-8", resolved.display()))
            })?;
        match walk(dir, &rest, Access::Read) {
            Ok(target) => Ok(target),
            Err(Stop::Io(e)) => Err(HostError::io(format!("{verb} {raw}"), e)),
            Err(Stop::Link(at)) => {
                Err(self.link_error(raw, dir, &rest, at, "it changed while being opened, so it is not read"))
            }
        }
    }

    fn escape_error(&self, raw: &str, root: Root, resolved: &Path) -> HostError {
        if !self.contains(resolved) {
            return HostError::path(
                raw,
                format!(
                    "resolves to {} which is outside the project ({}) and ALOOP_HOME ({})",
                    resolved.display(),
                    self.project.display(),
                    self.home.display()
                ),
            );
        }
        let (from, into) = match root {
            Root::Project => ("the project", "ALOOP_HOME"),
            Root::Home => ("ALOOP_HOME", "the project"),
        };
        HostError::path(
            raw,
            format!(
                "resolves to {}, in {into}: a symbolic link is followed only within the root it \
                 starts in ({from}); name the file by its own path",
                resolved.display()
            ),
        )
    }

    /// The refusal of the link at `names[at]`, saying where it points.
    fn link_error(&self, raw: &str, root: &Path, names: &[&str], at: usize, why: &str) -> HostError {
        let link = names[..=at].iter().fold(root.to_path_buf(), |path, name| path.join(name));
        let target = std::fs::read_link(&link).map_or_else(|_| "?".to_string(), |t| t.display().to_string());
        let leaves = canonicalize_lenient(&link).is_ok_and(|resolved| !self.contains(&resolved));
        let to = if leaves {
            format!("to {target}, outside the project and ALOOP_HOME")
        } else {
            format!("to {target}")
        };
        let what = if at + 1 == names.len() {
            format!("is a symbolic link ({to})")
        } else {
            format!("goes through {}, a symbolic link ({to})", self.display(&link))
        };
        HostError::path(raw, format!("{what}; {why}"))
    }
}

/// Opens `names` below `root` one at a time without following links; the
/// last name is not opened, only checked (see `Access`).
fn walk(root: &Path, names: &[&str], access: Access) -> Result<Target, Stop> {
    let create = access == Access::Write;
    let open_root = || rustix::fs::open(root, dir_flags(), Mode::empty());
    let mut dir = match open_root() {
        // ALOOP_HOME is made on the first write into it.
        Err(Errno::NOENT) if create => {
            crate::files::create_dirs(root).map_err(Stop::Io)?;
            open_root()
        }
        other => other,
    }
    .map_err(|e| Stop::Io(e.into()))?;
    let mut path = root.to_path_buf();
    let Some((last, parents)) = names.split_last() else {
        return Ok(Target { dir, name: None, path });
    };
    for (at, &name) in parents.iter().enumerate() {
        dir = match open_dir(dir.as_fd(), name) {
            Ok(next) => next,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                    // EEXIST: made at the same moment by someone else.
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Stop::Io(e.into())),
                }
                open_dir(dir.as_fd(), name).map_err(|e| stop(dir.as_fd(), name, at, e))?
            }
            Err(e) => return Err(stop(dir.as_fd(), name, at, e)),
        };
        path.push(name);
    }
    if access != Access::Remove && is_link(dir.as_fd(), last) {
        return Err(Stop::Link(names.len() - 1));
    }
    path.push(last);
    Ok(Target { dir, name: Some(last.to_string()), path })
}

/// Flags for a directory opened on the way: never through a link.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Opens directory `name` in `dir`; a link there is an error (ELOOP or
/// ENOTDIR), never followed.
pub(crate) fn open_dir<P: rustix::path::Arg>(dir: BorrowedFd, name: P) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())
}

fn stop(dir: BorrowedFd, name: &str, at: usize, e: Errno) -> Stop {
    if (e == Errno::LOOP || e == Errno::NOTDIR) && is_link(dir, name) {
        Stop::Link(at)
    } else {
        Stop::Io(e.into())
    }
}

/// Whether there is an entry `name` in `dir` (a link counts, followed or not).
pub(crate) fn exists(dir: BorrowedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Whether `name` in `dir` is a symbolic link (false if it is missing).
pub(crate) fn is_link(dir: BorrowedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it,
/// without following any link (a link is removed itself). Returns whether
/// there was anything to remove.
pub(crate) fn remove_tree<P: rustix::path::Arg + Copy>(dir: BorrowedFd, name: P) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            return Ok(true);
        }
        Ok(_) => {}
    }
    let sub = open_dir(dir, name)?;
    let entries: Vec<std::ffi::CString> = rustix::fs::Dir::read_from(&sub)?
        .map(|entry| entry.map(|e| e.file_name().to_owned()))
        .collect::<Result<_, _>>()?;
    for entry in &entries {
        let entry: &CStr = entry;
        if entry.to_bytes() != b"." && entry.to_bytes() != b".." {
            remove_tree(sub.as_fd(), entry)?;
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(true)
}
