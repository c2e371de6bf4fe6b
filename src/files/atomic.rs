//! Crash-safe writes (a reader sees the old file or the new one, never a
//! mix) and appends that are whole or not there.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{parent_of, require_regular};

/// Writes `bytes` to `path` so that a reader (or a crash) sees either the old
/// file or the new one, never a mix (see `write_at`). Missing directories are
/// made; this is for paths aloop chooses itself, script paths go through the
/// sandbox and `write_at`.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = parent_of(path)?;
    write_at(dir.as_fd(), &name, bytes)
}

/// Writes `bytes` to `name` in `dir`: a temp file in the same directory
/// (created exclusively, never through a link), fsync, rename over `name`,
/// then fsync of the directory. The file gets mode 0600. A link at `name`
/// would be replaced, not followed.
pub fn write_at(dir: BorrowedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let (temp_name, temp) = create_temp(dir, name)?;
    let result = (|| {
        (&temp).write_all(bytes)?;
        temp.sync_all()?;
        rustix::fs::renameat(dir, &temp_name, dir, name)?;
        rustix::fs::fsync(dir).map_err(io::Error::from)
    })();
    if result.is_err() {
        // Gone already if the rename happened; nothing else has its name.
        let _ = rustix::fs::unlinkat(dir, &temp_name, AtFlags::empty());
    }
    result
}

/// A new temp file next to `name`: `.name.<pid>.<n>.tmp`, made with
/// `O_EXCL` so that nothing already there (a link) is opened.
fn create_temp(dir: BorrowedFd, name: &str) -> io::Result<(String, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Keep the temp name within NAME_MAX for long names.
    let stem: String = name.chars().take(200).collect();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{stem}.{}.{n}.tmp", std::process::id());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(dir, temp_name.as_str(), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok((temp_name, File::from(fd))),
            // Left by an earlier process with our pid.
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Appends `bytes` to `name` in `dir` with a single `write(2)` on an
/// `O_APPEND` descriptor, so concurrent appenders never interleave within one
/// record. The record is whole or not there: when the write stops short (a
/// full disk, a file size limit) the file is cut back to where the record
/// began and the error says so. Appends are for logs and are not fsynced (a
/// power cut may lose the last lines); state files go through `write_at`.
/// The file must be a regular file reached without a link.
pub(crate) fn append_at(dir: BorrowedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let file = open_to_append(dir, name, OFlags::WRONLY)?;
    append_whole(file, bytes)
}

/// Appends one line (`bytes` ends with a newline) like `append_at`, after
/// cutting back an unfinished last line: what an append killed midway
/// leaves (a write can stop short when the process is killed), which the
/// new line would otherwise be glued to. For files of one record per line,
/// written under the caller's lock.
pub(crate) fn append_line_at(dir: BorrowedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let file = open_to_append(dir, name, OFlags::RDWR)?;
    let len = file.metadata()?.len();
    let end = end_of_last_line(&file, len)?;
    if end != len {
        file.set_len(end)?;
    }
    append_whole(file, bytes)
}

fn open_to_append(dir: BorrowedFd, name: &str, mode: OFlags) -> io::Result<File> {
    let flags =
        mode | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?);
    require_regular(&file)?;
    Ok(file)
}

/// Where the file's last complete line ends: just past its last newline
/// (0 when it has none), read backwards in blocks.
fn end_of_last_line(file: &File, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut block = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let part = &mut block[..usize::try_from(end - start).expect("a block")];
        file.read_exact_at(part, start)?;
        if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// One `write(2)` of a record on an `O_APPEND` descriptor, cut back when
/// it stops short (see `append_at`).
fn append_whole(mut file: File, bytes: &[u8]) -> io::Result<()> {
    let written = file.write(bytes)?;
    if written == bytes.len() {
        return Ok(());
    }
    // The offset is now the end of what was written, which began `written`
    // bytes before it.
    let end = file.stream_position()?;
    file.set_len(end - written as u64)?;
    Err(io::Error::new(
        io::ErrorKind::StorageFull,
        format!(
            "the write stopped after {written} of {} bytes (is the disk full, or the file at its size \
             limit?); the partial record was removed",
            bytes.len()
        ),
    ))
}
