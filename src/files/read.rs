//! Reads of regular files as UTF-8 text, bounded in size, with errors that
//! name the file.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::require_regular;
use crate::error::HostError;

/// The largest file `read_text` accepts. Scripts run without Rhai's data
/// size limits (they re-measure a whole document on every change, see
/// engine.rs), so this is where a runaway state file is stopped.
pub(crate) const MAX_TEXT_FILE: u64 = 64 * 1024 * 1024;

/// Reads a file as UTF-8, naming the file in the error. Only a regular file
/// is read (a FIFO is opened without blocking and refused, like a device),
/// and at most `MAX_TEXT_FILE` bytes of it.
pub(crate) fn read_text(path: &Path) -> Result<String, HostError> {
    let display = path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| HostError::io(format!("reading {display}"), e))?;
    read_file(file, &display)
}

/// Reads `name` in `dir` like `read_text`, never through a link (a link
/// there is an `ELOOP` error).
pub(crate) fn read_at(dir: BorrowedFd, name: &str, display: &str) -> Result<String, HostError> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
        .map_err(|e| HostError::io(format!("reading {display}"), e.into()))?;
    read_file(File::from(fd), display)
}

fn read_file(file: File, display: &str) -> Result<String, HostError> {
    let io_error = |e| HostError::io(format!("reading {display}"), e);
    require_regular(&file).map_err(|e| HostError::Other(format!("{display}: {e}")))?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > MAX_TEXT_FILE {
        return Err(HostError::Other(format!(
            "{display}: too large to read ({} MiB; the limit is {} MiB)",
            size / (1024 * 1024),
            MAX_TEXT_FILE / (1024 * 1024)
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
    file.take(MAX_TEXT_FILE + 1).read_to_end(&mut bytes).map_err(io_error)?;
    String::from_utf8(bytes).map_err(|e| {
        HostError::Other(format!(
            "{display}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}
