//! Crash-safe file writes and advisory locks, the two things every state file
//! relies on.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::HostError;

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees either the old
/// file or the new one, never a mix: a temp file in the same directory, fsync,
/// rename, then fsync of the directory. The file gets mode 0600.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dirs(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().unwrap_or_default().to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Appends `bytes` with a single `write(2)` on an `O_APPEND` descriptor, so
/// concurrent appenders never interleave within one record and a crash of
/// aloop never leaves half a record. Appends are for logs and are not
/// fsynced (a power cut may lose the last lines); state files go through
/// `write`, which is.
pub fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        create_dirs(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let written = file.write(bytes)?;
    if written != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short append"));
    }
    Ok(())
}

/// An exclusive advisory lock on a file, released when dropped. The holder
/// writes its pid into the file so that whoever waits can say who holds it.
#[derive(Debug)]
pub struct FileLock {
    file: Option<File>,
}

impl FileLock {
    /// Takes the lock, waiting up to `wait` for a holder to let go.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Self, HostError> {
        if let Some(dir) = path.parent() {
            create_dirs(dir).map_err(|e| HostError::io(format!("creating {}", dir.display()), e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| HostError::io(format!("opening lock {}", path.display()), e))?;
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
                    return Err(HostError::Locked { path: path.to_path_buf(), holder: holder(&mut file) })
                }
                Err(TryLockError::Error(e)) => {
                    return Err(HostError::io(format!("locking {}", path.display()), e))
                }
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

/// Reads a file as UTF-8, naming the file in the error.
pub fn read_text(path: &Path) -> Result<String, HostError> {
    let io_error = |e| HostError::io(format!("reading {}", path.display()), e);
    let file = File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > MAX_TEXT_FILE {
        return Err(HostError::Other(format!(
            "{}: too large to read ({} MiB; the limit is {} MiB)",
            path.display(),
            size / (1024 * 1024),
            MAX_TEXT_FILE / (1024 * 1024)
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_TEXT_FILE + 1).read_to_end(&mut bytes).map_err(io_error)?;
    String::from_utf8(bytes).map_err(|e| {
        HostError::Other(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}
