//! The advisory lock that keeps two runs from changing the same state at
//! once, and says who holds it.

use std::fs::{File, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use super::{parent_of, require_regular};
use crate::error::HostError;

/// An exclusive advisory lock on a file, released when dropped. The holder
/// writes its pid into the file so that whoever waits can say who holds it.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: Option<File>,
}

impl FileLock {
    /// Takes the lock on a path aloop chose itself, waiting up to `wait`
    /// for a holder to let go (see `acquire_at`).
    pub(crate) fn acquire(path: &Path, wait: Duration) -> Result<Self, HostError> {
        let (dir, name) =
            parent_of(path).map_err(|e| HostError::io(format!("opening lock {}", path.display()), e))?;
        Self::acquire_at(dir.as_fd(), &name, &path.display().to_string(), wait)
    }

    /// Takes the lock on `name` in `dir` (`display` names it in messages).
    /// The lock file is created if missing, never truncated or created
    /// through a link, and must be a regular file.
    pub(crate) fn acquire_at(
        dir: BorrowedFd,
        name: &str,
        display: &str,
        wait: Duration,
    ) -> Result<Self, HostError> {
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
    pub(crate) fn release(&mut self) {
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
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match text.trim() {
        "" => "another process".to_string(),
        pid => format!("pid {pid}"),
    }
}
