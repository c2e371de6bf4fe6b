//! Ctrl-C and SIGTERM. The first signal sets a flag that every blocking
//! primitive and the script engine poll, so the agent's process group is
//! stopped and the workflow records the interruption. A second signal kills
//! the running child groups and exits at once with 130.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// Process groups of running children; 0 marks a free slot. A fixed array
/// because the signal handler may only touch atomics.
static CHILD_GROUPS: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

/// Installs the handlers. Safe to call more than once.
pub fn install() {
    // A write past the file-size limit (`ulimit -f`) then fails with EFBIG,
    // reported like a full disk, instead of killing aloop mid-write.
    // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the closure only uses atomics, kill(2) and _exit(2), all
        // async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(signal, || {
                if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
                    kill_all_groups(libc::SIGKILL);
                    signal_hook::low_level::exit(130);
                }
            })
        };
    }
}

pub fn is_interrupted() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// How many interrupts have arrived. A child remembers the count it was
/// started under and stops only for a newer interrupt, so that a workflow can
/// still run quick commands (such as git, to record what happened) after the
/// first Ctrl-C stopped the agent.
pub fn generation() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}

/// Sends `signal` to every registered child group.
pub fn kill_all_groups(signal: i32) {
    for slot in &CHILD_GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group.
            unsafe { libc::kill(-pgid, signal) };
        }
    }
}

/// Registers a child process group for the lifetime of the guard, so that a
/// second Ctrl-C can kill it before exiting.
pub struct GroupGuard(Option<usize>);

impl GroupGuard {
    pub fn new(pgid: i32) -> Self {
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
