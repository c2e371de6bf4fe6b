//! Every process of a supervised child, including those that left its
//! process group: a new session (`setsid`, Node's `detached: true`) or a
//! double fork (a daemon, `cmd &` in a shell that then exits).
//!
//! aloop is a child subreaper (`init`), so an orphaned descendant is
//! reparented to aloop instead of init and stays findable. A child's
//! processes are then the descendants (by ppid, read from /proc) of its
//! leader, plus the orphans that aloop inherited from it and their
//! descendants. An orphan of aloop belongs to a child when the child's tree
//! was seen to contain it (each look records what it finds), when it is in
//! the child's process group, or when its environment holds the child's
//! marker (`MARKER_VAR`, set at spawn and inherited by everything it starts,
//! which catches a double fork too quick to be seen). That attribution keeps
//! several supervised children apart; an orphan that matches none of them
//! (a process that cleared its environment before it escaped, unseen, or
//! git's own detached `gc --auto`) is reaped when it ends but not stopped.
//!
//! Linux only (/proc, prctl).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cancel;

/// The environment variable that marks a supervised child's processes.
pub(crate) const MARKER_VAR: &str = "ALOOP_SUPERVISED";

/// Makes aloop a child subreaper, so that orphaned descendants are
/// reparented to it rather than to init. Call once at start.
pub fn init() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// A new marker value, unique within this aloop and across aloops.
pub(crate) fn new_marker() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("{}.{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A process as /proc shows it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
    zombie: bool,
    /// Start time in clock ticks since boot: tells a pid apart from a later
    /// process that reused it.
    start: u64,
}

/// A live process of the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) pid: i32,
    pub(crate) pgid: i32,
}

/// The processes of one supervised child.
pub(crate) struct Tree {
    leader: i32,
    /// `MARKER_VAR=value`, as it appears in /proc/PID/environ.
    marker: Vec<u8>,
    /// Every process seen in the tree, by pid, with its start time.
    known: HashMap<i32, u64>,
}

impl Tree {
    pub(crate) fn new(leader: i32, marker: &str) -> Self {
        Self { leader, marker: format!("{MARKER_VAR}={marker}").into_bytes(), known: HashMap::new() }
    }

    /// Looks at /proc: records and returns the child's live processes (the
    /// leader among them until it is reaped), and reaps the zombies among
    /// aloop's orphans.
    pub(crate) fn refresh(&mut self) -> Vec<Member> {
        // With no child at all, aloop has no descendant either (an orphan of
        // the child would be aloop's own), so there is nothing to look for:
        // the usual case at the end of a call, and a /proc scan saved.
        if !has_children() {
            self.known.clear();
            return Vec::new();
        }
        let procs = scan();
        let me = std::process::id().cast_signed();
        // SAFETY: getpgrp(2) has no preconditions.
        let my_pgid = unsafe { libc::getpgrp() };
        let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, p) in procs.iter().enumerate() {
            children.entry(p.ppid).or_default().push(i);
        }
        // Orphans: aloop's children that no `Child` handle owns. Its plain
        // children (git) share aloop's group; supervised leaders are registered.
        let orphans: Vec<&Proc> = procs
            .iter()
            .filter(|p| p.ppid == me && p.pid != self.leader && !cancel::is_child_group(p.pid))
            .filter(|p| p.pgid != my_pgid || self.knows(p))
            .collect();
        let mut stack: Vec<&Proc> = procs.iter().filter(|p| p.pid == self.leader).collect();
        stack.extend(orphans.iter().copied().filter(|p| self.owns_orphan(p)));
        let mut seen = HashSet::new();
        let mut members = Vec::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p.pid) {
                continue;
            }
            self.known.insert(p.pid, p.start);
            if !p.zombie {
                members.push(Member { pid: p.pid, pgid: p.pgid });
            }
            stack.extend(children.get(&p.pid).into_iter().flatten().map(|&i| &procs[i]));
        }
        let alive: HashMap<i32, u64> = procs.iter().map(|p| (p.pid, p.start)).collect();
        self.known.retain(|pid, start| alive.get(pid) == Some(start));
        for zombie in orphans.iter().filter(|p| p.zombie) {
            // SAFETY: waitpid(2) on a zombie child that no `Child` owns: it only
            // frees the process table slot; nobody else waits for it.
            unsafe { libc::waitpid(zombie.pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        members
    }

    fn knows(&self, p: &Proc) -> bool {
        self.known.get(&p.pid) == Some(&p.start)
    }

    /// Whether an orphan of aloop came from this child.
    fn owns_orphan(&self, p: &Proc) -> bool {
        self.knows(p) || p.pgid == self.leader || (!p.zombie && environ_has(p.pid, &self.marker))
    }
}

/// Whether aloop has any child process, running or a zombie.
fn has_children() -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value to be filled in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid(2) with WNOWAIT and WNOHANG only looks: it reaps
    // nothing and does not block; `info` is a valid siginfo_t.
    let found = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &raw mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // ECHILD: there is no child to wait for.
    found == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ECHILD)
}

/// Every process in /proc (those that vanish while it is read are skipped).
/// One open and one read per process, into a reused buffer: this runs a few
/// times a second while a child runs.
fn scan() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut path = String::new();
    let mut buf = [0u8; 1024];
    let mut procs = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        path.clear();
        let _ = write!(path, "/proc/{pid}/stat");
        let Ok(mut file) = File::open(&path) else { continue };
        if let Some(p) = file.read(&mut buf).ok().and_then(|n| parse_stat(pid, &buf[..n])) {
            procs.push(p);
        }
    }
    procs
}

/// Reads `pid (comm) state ppid pgrp ... starttime ...` (proc(5)); the
/// command name may hold spaces and parentheses, so fields count from the
/// last `)`.
fn parse_stat(pid: i32, stat: &[u8]) -> Option<Proc> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = std::str::from_utf8(&stat[close + 1..]).ok()?.split_ascii_whitespace();
    // Fields 3 (state), 4 (ppid), 5 (pgrp) and 22 (starttime), counted from 1.
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let start = fields.nth(22 - 6)?.parse().ok()?;
    Some(Proc { pid, ppid, pgid, zombie: matches!(state, "Z" | "X"), start })
}

/// Whether the process's initial environment holds `var` (`NAME=value`).
fn environ_has(pid: i32, var: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == var))
}

/// Sets up the child, between fork and exec, to get SIGKILL when aloop
/// dies, and ends it if aloop already died (then it was reparented before
/// prctl could take effect). The signal comes when the *thread* that forked
/// exits, so children are spawned from the thread that runs the script,
/// which lives as long as aloop. It covers the child itself: what the child
/// starts does not inherit it.
pub(crate) fn die_with_parent(parent: i32) -> io::Result<()> {
    // SAFETY: prctl(2), getppid(2) and _exit(2) are async-signal-safe, as
    // code between fork and exec must be; nothing is allocated.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            libc::_exit(127);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_with_a_command_name_holding_spaces_and_parentheses() {
        let stat = b"42 (a) b (c)) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0\n";
        let p = parse_stat(42, stat).unwrap();
        assert_eq!((p.ppid, p.pgid, p.zombie, p.start), (7, 42, false, 12345));
        let zombie = b"9 (sh) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0\n";
        assert!(parse_stat(9, zombie).unwrap().zombie);
    }

    #[test]
    fn finds_this_process_and_its_parent() {
        let me = std::process::id().cast_signed();
        let procs = scan();
        let mine = procs.iter().find(|p| p.pid == me).expect("this process is listed");
        // SAFETY: getppid(2) has no preconditions.
        assert_eq!(mine.ppid, unsafe { libc::getppid() });
    }
}
