//! Crash-safe file writes, whole appends, advisory locks and bounded reads of
//! regular files: what every state file relies on. The `_at` forms work in a
//! directory opened by the sandbox (`paths::beneath`) and never follow a link
//! at the name; the path forms are for paths aloop chooses itself.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::HostError;

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees either the old
/// file or the new one, never a mix (see `write_at`). Missing directories are
/// made; this is for paths aloop chooses itself, script paths go through the
/// sandbox and `write_at`.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
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
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
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

/// Appends `bytes` to `name` in `dir` with a single `write(2)` on an
/// `O_APPEND` descriptor, so concurrent appenders never interleave within one
/// record. The record is whole or not there: when the write stops short (a
/// full disk, a file size limit) the file is cut back to where the record
/// began and the error says so. Appends are for logs and are not fsynced (a
/// power cut may lose the last lines); state files go through `write_at`.
/// The file must be a regular file reached without a link.
pub fn append_at(dir: BorrowedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let flags = OFlags::WRONLY
        | OFlags::APPEND
        | OFlags::CREATE
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::CLOEXEC;
    let mut file = File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?);
    require_regular(&file)?;
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

/// Appends like `append_at`, to a path aloop chose itself.
pub fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = parent_of(path)?;
    append_at(dir.as_fd(), &name, bytes)
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

/// An exclusive advisory lock on a file, released when dropped. The holder
/// writes its pid into the file so that whoever waits can say who holds it.
#[derive(Debug)]
pub struct FileLock {
    file: Option<File>,
}

impl FileLock {
    /// Takes the lock on a path aloop chose itself, waiting up to `wait`
    /// for a holder to let go (see `acquire_at`).
    pub fn acquire(path: &Path, wait: Duration) -> Result<Self, HostError> {
        let (dir, name) =
            parent_of(path).map_err(|e| HostError::io(format!("opening lock {}", path.display()), e))?;
        Self::acquire_at(dir.as_fd(), &name, &path.display().to_string(), wait)
    }

    /// Takes the lock on `name` in `dir` (`display` names it in messages).
    /// The lock file is created if missing, never truncated or created
    /// through a link, and must be a regular file.
    pub fn acquire_at(dir: BorrowedFd, name: &str, display: &str, wait: Duration) -> Result<Self, HostError> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let mut file = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
            .map_err(io::Error::from)
            .map(File::from)
            .and_then(|file| require_regular(&file).map(|()| file))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    HostError::path(display, "is a symbolic link; a lock is never taken through one")
                }
                _ => HostError::io(format!("opening lock {display}"), e),
            })?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    if crate::cancel::is_interrupted() {
                        return Err(HostError::Other("interrupted while waiting for a lock".into()));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(HostError::Locked { path: PathBuf::from(display), holder: holder(&mut file) })
                }
                Err(TryLockError::Error(e)) => return Err(HostError::io(format!("locking {display}"), e)),
            }
        }
        // Record who holds it; failure to do so does not weaken the lock.
        let _ = file.set_len(0).and_then(|()| writeln!(&file, "{}", std::process::id()));
        Ok(Self { file: Some(file) })
    }

    /// Lets go now rather than at drop.
    pub fn release(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        self.release();
    }
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    match text.trim() {
        "" => "another process".to_string(),
        pid => format!("pid {pid}"),
    }
}

/// The largest file `read_text` accepts. Scripts run without Rhai's data
/// size limits (they re-measure a whole document on every change, see
/// engine.rs), so this is where a runaway state file is stopped.
pub const MAX_TEXT_FILE: u64 = 64 * 1024 * 1024;

/// Reads a file as UTF-8, naming the file in the error. Only a regular file
/// is read (a FIFO is opened without blocking and refused, like a device),
/// and at most `MAX_TEXT_FILE` bytes of it.
pub fn read_text(path: &Path) -> Result<String, HostError> {
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
pub fn read_at(dir: BorrowedFd, name: &str, display: &str) -> Result<String, HostError> {
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
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_TEXT_FILE + 1).read_to_end(&mut bytes).map_err(io_error)?;
    String::from_utf8(bytes).map_err(|e| {
        HostError::Other(format!(
            "{display}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}
