//! The files aloop writes and reads for itself and for scripts: crash-safe
//! writes and whole appends (`atomic`), the advisory lock (`lock`), and
//! bounded reads of regular files (`read`). The `_at` forms work in a
//! directory opened by the sandbox (`paths::beneath`) and never follow a link
//! at the name; the path forms are for paths aloop chooses itself.

pub mod atomic;
pub(crate) mod lock;
pub(crate) mod read;

use std::fs::{DirBuilder, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

/// Creates `dir` and its missing parents with mode 0700.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The parent directory of a path aloop chose itself, opened (and made if
/// missing), with the file name.
fn parent_of(path: &Path) -> io::Result<(OwnedFd, String)> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dirs(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no UTF-8 file name"))?;
    let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    Ok((fd, name.to_string()))
}

/// Refuses anything but a regular file (a FIFO would block, a device never end).
fn require_regular(file: &File) -> io::Result<()> {
    let mode = rustix::fs::fstat(file)?.st_mode;
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => Ok(()),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind(other)),
        )),
    }
}

/// "a FIFO", "a directory", ... for messages.
fn kind(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "not a file",
    }
}
