//! Supervised child processes: argv only (never a shell), their own process
//! group, limits on total and idle time (any output byte counts as
//! activity), and termination of every process of the child, also those
//! that left its group (`tree`): SIGTERM, a grace period until all are gone,
//! then SIGKILL, so that nothing outlives the call. The child itself gets
//! SIGKILL if aloop dies. Used by `proc::run` and `agent::run`.
//!
//! One poll(2) loop on the calling thread does all the waiting: the child's
//! stdout and stderr (nonblocking, read as they fill), its stdin (the input
//! written as the pipe takes it), a pidfd for its exit, the signal self-pipe
//! of `cancel`, and the timers. No thread is started.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::cancel;

mod lines;
mod tree;

pub use lines::read_lines;
use lines::Lines;
pub use tree::init;
use tree::Tree;

/// Which output stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// How output is delivered: whole lines (cut at `max_line` bytes, the rest of
/// an overlong line dropped), raw chunks as they arrive, or not at all (the
/// child writes straight to our own stdout and stderr).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    Lines { max_line: usize },
    Chunks,
    Inherit,
}

/// Bounds on a run. `None` means no bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) total: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub(crate) grace: Duration,
}

/// How a supervised run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited(Option<i32>),
    TimedOut,
    IdleTimedOut,
    Interrupted,
}

/// How often the child's processes are looked up while it runs (to record
/// them before they leave its tree), and while it is being stopped (to see
/// at once that they are all gone).
const LOOK_RUNNING: Duration = Duration::from_millis(250);
const LOOK_STOPPING: Duration = Duration::from_millis(20);
/// How long output may still arrive once every process is gone (a pipe held
/// by a process that could not be found).
const DRAIN: Duration = Duration::from_secs(2);

/// Bytes read from a pipe at once (a pipe holds 64 KiB by default).
const READ_SIZE: usize = 64 * 1024;
/// Longest wait in poll(2) when a wake-up source is missing: no pidfd (the
/// child's exit is then looked for after each wake) or no signal self-pipe.
const FALLBACK_WAKE: Duration = Duration::from_millis(50);

/// A running child in its own process group.
pub(crate) struct Supervised {
    child: Child,
    pgid: i32,
    /// The interrupt count when it started; only a newer interrupt stops it.
    generation: usize,
    /// Output is delivered as read, not as lines.
    chunks: bool,
    /// Readable when the leader has exited (`None` once it is reaped, or if
    /// the kernel has no pidfd).
    pidfd: Option<OwnedFd>,
    stdout: Option<Output<ChildStdout>>,
    stderr: Option<Output<ChildStderr>>,
    stdin: Option<Input>,
    tree: Tree,
    _guard: cancel::GroupGuard,
}

/// An output pipe still open, and its unfinished line.
struct Output<P> {
    pipe: P,
    lines: Lines,
}

impl<P: AsFd> Output<P> {
    fn new(pipe: P, max_line: usize) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&pipe, true)?;
        Ok(Self { pipe, lines: Lines::new(max_line) })
    }
}

/// The input still to be written, and where the writing is.
struct Input {
    pipe: ChildStdin,
    bytes: Vec<u8>,
    written: usize,
}

impl Supervised {
    /// Spawns `command` in a new process group with piped stdio; `stdin` is
    /// written and then closed (programs that read to EOF would otherwise wait
    /// forever), or stdin is /dev/null when there is none. The child is
    /// killed if aloop dies, so call this from a thread that lives as long as
    /// aloop (see `tree::die_with_parent`).
    pub(crate) fn spawn(mut command: Command, stdin: Option<Vec<u8>>, framing: Framing) -> io::Result<Self> {
        let captured = !matches!(framing, Framing::Inherit);
        let output = || if captured { Stdio::piped() } else { Stdio::inherit() };
        let marker = tree::new_marker();
        let parent = std::process::id().cast_signed();
        command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(output())
            .stderr(output())
            .env(tree::MARKER_VAR, &marker)
            .process_group(0);
        // SAFETY: the hook only makes async-signal-safe calls (see die_with_parent).
        unsafe { command.pre_exec(move || tree::die_with_parent(parent)) };
        let mut child = command.spawn()?;
        let pgid = child.id().cast_signed();
        let guard = cancel::GroupGuard::new(pgid);
        let max_line = match framing {
            Framing::Lines { max_line } => max_line,
            Framing::Chunks | Framing::Inherit => 0,
        };
        let pipes = || -> io::Result<_> {
            let stdout = child.stdout.take().map(|pipe| Output::new(pipe, max_line)).transpose()?;
            let stderr = child.stderr.take().map(|pipe| Output::new(pipe, max_line)).transpose()?;
            let stdin = match (child.stdin.take(), stdin) {
                (Some(pipe), Some(bytes)) => {
                    rustix::io::ioctl_fionbio(&pipe, true)?;
                    Some(Input { pipe, bytes, written: 0 })
                }
                _ => None,
            };
            Ok((stdout, stderr, stdin))
        };
        let (stdout, stderr, stdin) = match pipes() {
            Ok(pipes) => pipes,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let pidfd = rustix::process::Pid::from_raw(pgid)
            .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok());
        let tree = Tree::new(pgid, &marker);
        Ok(Self {
            child,
            pgid,
            generation: cancel::generation(),
            chunks: matches!(framing, Framing::Chunks),
            pidfd,
            stdout,
            stderr,
            stdin,
            tree,
            _guard: guard,
        })
    }

    /// Runs the child to its end, handing each piece of output to
    /// `on_output(stream, bytes, truncated)`: a line without its newline for
    /// `Framing::Lines`, what one read returned for `Framing::Chunks`.
    /// Returns how it ended; output that arrives after the end is still
    /// delivered.
    ///
    /// On a limit or an interrupt the child's processes get SIGTERM and
    /// `limits.grace` to end, all of them; what is left then gets SIGKILL.
    /// When the leader exits on its own, whatever it left running is stopped
    /// the same way, so nothing of the child outlives the call.
    pub(crate) fn drive<E>(
        self,
        limits: Limits,
        mut on_output: impl FnMut(Stream, &[u8], bool) -> Result<(), E>,
    ) -> Result<Ending, E> {
        let mut run = self.start_driving(limits);
        let (_, ending) =
            drive_first(&mut [&mut run], |_, stream, bytes, cut| on_output(stream, bytes, cut))?;
        Ok(ending)
    }

    /// The child as a run that `drive_first` can wait on alongside others.
    pub(crate) fn start_driving(self, limits: Limits) -> Driven {
        let start = Instant::now();
        Driven {
            child: self,
            limits,
            start,
            last_output: start,
            exit: None,
            ended: false,
            ending: None,
            kill_at: None,
            gone: false,
            drain_deadline: None,
            next_look: start + LOOK_RUNNING,
            finished: false,
        }
    }

    /// Reaps the leader if it has exited: `Some` of its status (or of why
    /// the wait failed, which ends it too), `None` while it runs.
    fn reap(&mut self) -> Option<io::Result<ExitStatus>> {
        let status = self.child.try_wait().transpose()?;
        self.pidfd = None;
        Some(status)
    }

    /// What poll(2) is to watch for this child: stdout, stderr, stdin and
    /// the pidfd, those still open.
    fn sources(&self) -> [(Option<BorrowedFd<'_>>, PollFlags); 4] {
        [
            (self.stdout.as_ref().map(|o| o.pipe.as_fd()), PollFlags::IN),
            (self.stderr.as_ref().map(|o| o.pipe.as_fd()), PollFlags::IN),
            (self.stdin.as_ref().map(|i| i.pipe.as_fd()), PollFlags::OUT),
            (self.pidfd.as_ref().map(AsFd::as_fd), PollFlags::IN),
        ]
    }

    /// Reads once from a ready output pipe and delivers what it completes;
    /// returns whether anything arrived. At the end of the stream the pipe
    /// is closed and a final unterminated line delivered.
    fn read<E>(
        &mut self,
        stream: Stream,
        buf: &mut [u8],
        on_output: &mut impl FnMut(Stream, &[u8], bool) -> Result<(), E>,
    ) -> Result<bool, E> {
        let (read, lines) = match stream {
            Stream::Stdout => match self.stdout.as_mut() {
                Some(out) => (out.pipe.read(buf), &mut out.lines),
                None => return Ok(false),
            },
            Stream::Stderr => match self.stderr.as_mut() {
                Some(out) => (out.pipe.read(buf), &mut out.lines),
                None => return Ok(false),
            },
        };
        match read {
            Ok(0) => {}
            Ok(n) if self.chunks => return on_output(stream, &buf[..n], false).map(|()| true),
            Ok(n) => return lines.feed(&buf[..n], |line, cut| on_output(stream, line, cut)).map(|()| true),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                return Ok(false);
            }
            // A broken pipe ends the stream like EOF.
            Err(_) => {}
        }
        let result = lines.finish(|line, cut| on_output(stream, line, cut));
        match stream {
            Stream::Stdout => self.stdout = None,
            Stream::Stderr => self.stderr = None,
        }
        result.map(|()| false)
    }

    /// Writes as much of the input as the pipe takes now; closes it when all
    /// is written or the child will not read it (it closed its end).
    fn write_input(&mut self) {
        let Some(input) = self.stdin.as_mut() else { return };
        match input.pipe.write(&input.bytes[input.written..]) {
            Ok(n) => input.written += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            // EPIPE: a child that exits without reading its input is not an error here.
            Err(_) => input.written = input.bytes.len(),
        }
        if input.written == input.bytes.len() {
            self.stdin = None; // EOF for the child
        }
    }

    /// Sends `signal` to every live process of the child; returns true when
    /// none was left.
    fn stop(&mut self, signal: i32) -> bool {
        let members = self.tree.refresh();
        if members.is_empty() {
            return true;
        }
        // The group too, for a process forked since the look. Its id cannot
        // have been reused while a member is still in it.
        if members.iter().any(|m| m.pgid == self.pgid) {
            // SAFETY: kill(2) on our own child's process group.
            unsafe { libc::kill(-self.pgid, signal) };
        }
        for member in members {
            // SAFETY: kill(2) on a process just found in the child's tree.
            unsafe { libc::kill(member.pid, signal) };
        }
        false
    }

    /// SIGKILL to every process of the child, looking again until none is
    /// left: a parent killed hands its children to aloop, and they are found
    /// on the next look.
    fn kill(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.stop(libc::SIGKILL) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A child being driven to its end: where its timers and its stopping are.
pub(crate) struct Driven {
    child: Supervised,
    limits: Limits,
    start: Instant,
    last_output: Instant,
    exit: Option<ExitStatus>,
    /// The leader was reaped (its status may still be unknown, if the wait failed).
    ended: bool,
    ending: Option<Ending>,
    /// Once stopping has begun: when SIGKILL follows.
    kill_at: Option<Instant>,
    gone: bool,
    drain_deadline: Option<Instant>,
    next_look: Instant,
    /// Its ending was handed out; nothing of it is left to stop.
    finished: bool,
}

impl Driven {
    /// Does what is due at `now`: starts stopping the child on a limit, an
    /// interrupt or the leader's exit, escalates to SIGKILL, and says how it
    /// ended once nothing of it is left to wait for.
    fn advance(&mut self, now: Instant) -> Option<Ending> {
        if self.kill_at.is_none() {
            let reason = if self.ended {
                None
            } else if cancel::generation() > self.child.generation {
                Some(Ending::Interrupted)
            } else if self.limits.total.is_some_and(|t| now >= self.start + t) {
                Some(Ending::TimedOut)
            } else if self.limits.idle.is_some_and(|t| now >= self.last_output + t) {
                Some(Ending::IdleTimedOut)
            } else {
                None
            };
            if reason.is_some() || self.ended {
                self.ending = reason;
                self.kill_at = Some(now + self.limits.grace);
                self.gone = self.child.stop(libc::SIGTERM);
                self.next_look = now + LOOK_STOPPING;
            } else if now >= self.next_look {
                self.child.tree.refresh();
                self.next_look = now + LOOK_RUNNING;
            }
        } else if !self.gone && now >= self.next_look {
            self.gone = self.child.tree.refresh().is_empty();
            if !self.gone && self.kill_at.is_some_and(|at| now >= at) {
                self.child.kill();
                self.gone = true;
            }
            self.next_look = now + LOOK_STOPPING;
        }
        if !self.gone {
            return None;
        }
        // Nobody is left to read the input.
        self.child.stdin = None;
        let drained = self.ended && self.child.stdout.is_none() && self.child.stderr.is_none();
        let deadline = *self.drain_deadline.get_or_insert(now + DRAIN);
        // Past the deadline a process that could not be found still holds the pipe.
        if !drained && now < deadline {
            return None;
        }
        if !self.ended {
            // Every process is gone, the leader maybe not yet reaped.
            self.exit = self.child.child.try_wait().ok().flatten();
        }
        self.finished = true;
        Some(self.ending.unwrap_or_else(|| Ending::Exited(self.exit.and_then(exit_code))))
    }

    /// When `advance` has something to do next.
    fn wake_at(&self, now: Instant) -> Instant {
        let mut wake = now + LOOK_RUNNING;
        let limit =
            |t: Option<Duration>, from: Instant| t.filter(|_| self.kill_at.is_none()).map(|t| from + t);
        // Once all are gone, only the drain deadline is left to wait for.
        let looking = |at: Option<Instant>| at.filter(|_| !self.gone);
        for at in [
            looking(Some(self.next_look)),
            self.drain_deadline,
            looking(self.kill_at),
            limit(self.limits.total, self.start),
            limit(self.limits.idle, self.last_output),
        ] {
            wake = wake.min(at.unwrap_or(wake));
        }
        wake
    }

    /// Takes in what poll found ready: the exit, room for input, output.
    fn take<E>(
        &mut self,
        ready: &Ready,
        buf: &mut [u8],
        on_output: &mut impl FnMut(Stream, &[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        if ready.exited || (self.child.pidfd.is_none() && !self.ended) {
            if let Some(status) = self.child.reap() {
                self.exit = status.ok();
                self.ended = true;
            }
        }
        if ready.stdin {
            self.child.write_input();
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !ready.output(stream) {
                continue;
            }
            match self.child.read(stream, buf, on_output) {
                Ok(true) => self.last_output = Instant::now(),
                Ok(false) => {}
                Err(e) => {
                    // The caller gave up on this run: nothing of it may outlive the call.
                    self.stop_now();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Kills whatever is left of the child at once.
    fn stop_now(&mut self) {
        if !self.finished {
            self.finished = true;
            self.child.kill();
            let _ = self.child.child.try_wait();
        }
    }
}

impl Drop for Driven {
    /// A run dropped before its end (its caller failed) leaves nothing running.
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Drives `runs` until the first of them ends, handing each piece of output
/// to `on_output(index, stream, bytes, truncated)` (see `Supervised::drive`);
/// returns its index and how it ended. The others go on running and can be
/// driven again. Every run must not have ended yet.
pub(crate) fn drive_first<E>(
    runs: &mut [&mut Driven],
    mut on_output: impl FnMut(usize, Stream, &[u8], bool) -> Result<(), E>,
) -> Result<(usize, Ending), E> {
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let now = Instant::now();
        let mut wake = now + LOOK_RUNNING;
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(ending) = run.advance(now) {
                return Ok((i, ending));
            }
            wake = wake.min(run.wake_at(now));
        }
        let ready = poll(runs, wake.saturating_duration_since(now));
        for (i, (run, ready)) in runs.iter_mut().zip(&ready).enumerate() {
            run.take(ready, &mut buf, &mut |stream, bytes, cut| on_output(i, stream, bytes, cut))?;
        }
    }
}

/// Waits in poll(2) for up to `timeout` on every run's pipes and exit, and
/// on the signal self-pipe; says what is ready for each run.
fn poll(runs: &[&mut Driven], timeout: Duration) -> Vec<Ready> {
    let wakeup = cancel::wakeup();
    let mut timeout = timeout;
    if wakeup.is_none() || runs.iter().any(|run| run.child.pidfd.is_none()) {
        timeout = timeout.min(FALLBACK_WAKE);
    }
    let mut fds: Vec<PollFd> = Vec::with_capacity(runs.len() * 4 + 1);
    let mut slots: Vec<[Option<usize>; 4]> = Vec::with_capacity(runs.len());
    for run in runs {
        let mut slot = [None; 4];
        for (i, (fd, flags)) in run.child.sources().iter().enumerate() {
            if let Some(fd) = fd {
                slot[i] = Some(fds.len());
                fds.push(PollFd::from_borrowed_fd(*fd, *flags));
            }
        }
        slots.push(slot);
    }
    let wake_slot = wakeup.map(|fd| {
        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        fds.len() - 1
    });
    let timespec = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // EINTR: a signal; the loop looks at the count anyway.
    let _ = rustix::event::poll(&mut fds, Some(&timespec));
    // Any event (data, hang-up, error) means the next operation will not wait.
    let is_ready = |at: Option<usize>| at.is_some_and(|at| !fds[at].revents().is_empty());
    if is_ready(wake_slot) {
        cancel::drain_wakeup();
    }
    slots
        .iter()
        .map(|slot| Ready {
            output: [is_ready(slot[0]), is_ready(slot[1])],
            stdin: is_ready(slot[2]),
            exited: is_ready(slot[3]),
        })
        .collect()
}

/// What one poll found ready.
struct Ready {
    /// Stdout, stderr.
    output: [bool; 2],
    stdin: bool,
    exited: bool,
}

impl Ready {
    fn output(&self, stream: Stream) -> bool {
        self.output[stream as usize]
    }
}

/// The exit code, or 128 + signal for a child killed by a signal.
pub(crate) fn exit_code(status: ExitStatus) -> Option<i32> {
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}
