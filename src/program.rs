//! Finding a program by name. aloop runs inside repositories it did not
//! write, so a bare program name (`git`, `claude`) is looked up only in the
//! absolute folders of `PATH`: an entry such as `.` or an empty one (both
//! mean the working directory) would let a cloned repository's own `git`
//! run in place of the real one.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The full path of `program`: a path (it has a `/`) as given, relative to
/// `cwd`, when it is a file; a bare name from the absolute folders of
/// aloop's `PATH`.
pub(crate) fn find(program: &str, cwd: &Path) -> Option<PathBuf> {
    find_on(program, cwd, &std::env::var_os("PATH").unwrap_or_default())
}

/// `find` with another `PATH` (the one a child is given).
pub(crate) fn find_on(program: &str, cwd: &Path, path: &OsStr) -> Option<PathBuf> {
    if program.contains('/') {
        let file = cwd.join(program);
        return file.is_file().then_some(file);
    }
    let absolute = std::env::split_paths(path).filter(|dir| dir.is_absolute());
    which::which_in(program, std::env::join_paths(absolute).ok(), cwd).ok()
}
