//! Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed, the ssh
//! connection dropped). The first signal sets a flag that every blocking
//! primitive and the script engine poll, so the agent's processes are
//! stopped and the workflow records the interruption. A second signal kills
//! the running child groups and exits at once (a handler may only touch
//! atomics, so processes that left those groups are not looked for; the
//! children themselves die with aloop, see `supervise`). Either way the exit
//! code is 128 + the number of the first signal: 130 for Ctrl-C, 129 for
//! SIGHUP, 143 for SIGTERM, as a shell reports a program that the signal
//! ended.
//!
//! Each signal also writes a byte to a self-pipe (`wakeup`), so that a loop
//! waiting in poll(2) for a child's output sees the interrupt at once.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// The first signal that arrived (0 before any).
static FIRST: AtomicI32 = AtomicI32::new(0);
/// Process groups of running children; 0 marks a free slot. A fixed array
/// because the signal handler may only touch atomics.
static CHILD_GROUPS: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];
/// The read end of the self-pipe the handlers write to.
static WAKEUP: OnceLock<UnixStream> = OnceLock::new();

/// Installs the handlers. Safe to call more than once.
pub fn install() {
    // A write past the file-size limit (`ulimit -f`) then fails with EFBIG,
    // reported like a full disk, instead of killing aloop mid-write.
    // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the closure only uses atomics, kill(2) and _exit(2), all
        // async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(signal, move || {
                let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
                    kill_all_groups(libc::SIGKILL);
                    signal_hook::low_level::exit(exit_code());
                }
            })
        };
    }
    if WAKEUP.get().is_none() {
        // Without it, waiting loops look at the count a few times a second.
        if let Some(read) = self_pipe() {
            let _ = WAKEUP.set(read);
        }
    }
}

/// A socket pair whose write end each signal writes a byte to; returns the
/// nonblocking read end.
fn self_pipe() -> Option<UnixStream> {
    let (read, write) = UnixStream::pair().ok()?;
    read.set_nonblocking(true).ok()?;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // Registered after the counting handler, so the count is up when
        // the byte arrives.
        signal_hook::low_level::pipe::register(signal, write.try_clone().ok()?).ok()?;
    }
    Some(read)
}

/// A descriptor that becomes readable when a signal arrives (`None` before
/// `install`); `drain_wakeup` empties it.
pub(crate) fn wakeup() -> Option<BorrowedFd<'static>> {
    WAKEUP.get().map(AsFd::as_fd)
}

/// Reads away the bytes of signals seen so far, so that the next poll waits
/// for a new one. What happened is read from `generation`, not from these.
pub(crate) fn drain_wakeup() {
    if let Some(mut read) = WAKEUP.get() {
        let mut buf = [0u8; 64];
        while matches!(read.read(&mut buf), Ok(n) if n > 0) {}
    }
}

pub(crate) fn is_interrupted() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// The exit code after an interruption: 128 + the first signal (130, as for
/// Ctrl-C, when none arrived).
pub(crate) fn exit_code() -> i32 {
    128 + match FIRST.load(Ordering::SeqCst) {
        0 => libc::SIGINT,
        signal => signal,
    }
}

/// What interrupted aloop, for messages: "Ctrl-C", "SIGTERM" or "SIGHUP".
pub fn cause() -> &'static str {
    match FIRST.load(Ordering::SeqCst) {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "Ctrl-C",
    }
}

/// How many interrupts have arrived. A child remembers the count it was
/// started under and stops only for a newer interrupt, so that a workflow can
/// still run quick commands (such as git, to record what happened) after the
/// first Ctrl-C stopped the agent.
pub(crate) fn generation() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}

/// Sends `signal` to every registered child group.
pub(crate) fn kill_all_groups(signal: i32) {
    for slot in &CHILD_GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group.
            unsafe { libc::kill(-pgid, signal) };
        }
    }
}

/// Whether `pgid` is the group (and so the leader's pid) of a running child.
pub(crate) fn is_child_group(pgid: i32) -> bool {
    pgid > 0 && CHILD_GROUPS.iter().any(|slot| slot.load(Ordering::SeqCst) == pgid)
}

/// Registers a child process group for the lifetime of the guard, so that a
/// second Ctrl-C can kill it before exiting.
pub(crate) struct GroupGuard(Option<usize>);

impl GroupGuard {
    pub(crate) fn new(pgid: i32) -> Self {
        let slot = CHILD_GROUPS
            .iter()
            .position(|s| s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst).is_ok());
        Self(slot)
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            CHILD_GROUPS[i].store(0, Ordering::SeqCst);
        }
    }
}
