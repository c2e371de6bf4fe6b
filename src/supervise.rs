//! Supervised child processes: argv only (never a shell), their own process
//! group, stdout and stderr read concurrently, limits on total and idle time
//! (any output byte counts as activity), and termination of every process of
//! the child, also those that left its group (`tree`): SIGTERM, a grace
//! period until all are gone, then SIGKILL, so that nothing outlives the
//! call. The child itself gets SIGKILL if aloop dies. Used by `proc::run`
//! and `agent::run`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use crate::cancel;

mod tree;

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

enum Event {
    Output(Stream, Vec<u8>, bool),
    /// Lines that arrived together (one hand-over instead of one per line).
    Lines(Stream, Vec<(Vec<u8>, bool)>),
    /// Bytes arrived that end no line yet (a progress bar redrawn with `\r`).
    Activity,
    Closed,
    Exited(ExitStatus),
}

/// How often the child's processes are looked up while it runs (to record
/// them before they leave its tree), and while it is being stopped (to see
/// at once that they are all gone).
const LOOK_RUNNING: Duration = Duration::from_millis(250);
const LOOK_STOPPING: Duration = Duration::from_millis(20);
/// How long output may still arrive once every process is gone (a pipe held
/// by a process that could not be found).
const DRAIN: Duration = Duration::from_secs(2);

/// A running child in its own process group.
pub(crate) struct Supervised {
    pgid: i32,
    /// The interrupt count when it started; only a newer interrupt stops it.
    generation: usize,
    /// Output streams still being read (0 when output is inherited).
    open_streams: usize,
    events: Receiver<Event>,
    tree: Tree,
    _guard: cancel::GroupGuard,
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
        // Few slots: each holds up to a batch of lines or a 64 KiB chunk, and
        // a full channel makes the readers wait (bounded memory).
        let (tx, events) = mpsc::sync_channel(16);
        if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
            thread::spawn(move || {
                // A child that exits without reading its input is not an error here.
                let _ = pipe.write_all(&bytes);
            });
        }
        let mut open_streams = 0;
        if let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) {
            spawn_reader(stdout, Stream::Stdout, framing, tx.clone());
            spawn_reader(stderr, Stream::Stderr, framing, tx.clone());
            open_streams = 2;
        }
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::Exited(status));
            }
        });
        let tree = Tree::new(pgid, &marker);
        Ok(Self { pgid, generation: cancel::generation(), open_streams, events, tree, _guard: guard })
    }

    /// Runs the child to its end, handing each piece of output to
    /// `on_output(stream, bytes, truncated)`. Returns how it ended; output
    /// that arrives after the end is still delivered.
    ///
    /// On a limit or an interrupt the child's processes get SIGTERM and
    /// `limits.grace` to end, all of them; what is left then gets SIGKILL.
    /// When the leader exits on its own, whatever it left running is stopped
    /// the same way, so nothing of the child outlives the call.
    pub(crate) fn drive<E>(
        mut self,
        limits: Limits,
        mut on_output: impl FnMut(Stream, &[u8], bool) -> Result<(), E>,
    ) -> Result<Ending, E> {
        let start = Instant::now();
        let mut last_output = start;
        let mut open_streams = self.open_streams;
        let mut exit: Option<ExitStatus> = None;
        // The leader was reaped (its status may still be unknown, if the wait failed).
        let mut ended = false;
        let mut ending: Option<Ending> = None;
        // Once stopping has begun: when SIGKILL follows.
        let mut kill_at: Option<Instant> = None;
        let mut gone = false;
        let mut drain_deadline: Option<Instant> = None;
        let mut next_look = start + LOOK_RUNNING;
        loop {
            let now = Instant::now();
            if kill_at.is_none() {
                let reason = if ended {
                    None
                } else if cancel::generation() > self.generation {
                    Some(Ending::Interrupted)
                } else if limits.total.is_some_and(|t| now >= start + t) {
                    Some(Ending::TimedOut)
                } else if limits.idle.is_some_and(|t| now >= last_output + t) {
                    Some(Ending::IdleTimedOut)
                } else {
                    None
                };
                if reason.is_some() || ended {
                    ending = reason;
                    kill_at = Some(now + limits.grace);
                    gone = self.stop(libc::SIGTERM);
                    next_look = now + LOOK_STOPPING;
                } else if now >= next_look {
                    self.tree.refresh();
                    next_look = now + LOOK_RUNNING;
                }
            } else if !gone && now >= next_look {
                gone = self.tree.refresh().is_empty();
                if !gone && kill_at.is_some_and(|at| now >= at) {
                    self.kill();
                    gone = true;
                }
                next_look = now + LOOK_STOPPING;
            }
            if gone {
                if ended && open_streams == 0 {
                    break;
                }
                let deadline = *drain_deadline.get_or_insert(now + DRAIN);
                if now >= deadline {
                    break; // a process that could not be found still holds the pipe
                }
            }
            let wake = [Some(next_look), drain_deadline, kill_at].into_iter().flatten().min();
            let wait = next_wake(now, start, last_output, limits, wake);
            match self.events.recv_timeout(wait) {
                Ok(Event::Output(stream, bytes, cut)) => {
                    last_output = Instant::now();
                    if let Err(e) = on_output(stream, &bytes, cut) {
                        // The caller gave up on this run: nothing of it may outlive the call.
                        self.kill();
                        return Err(e);
                    }
                }
                Ok(Event::Lines(stream, lines)) => {
                    last_output = Instant::now();
                    for (bytes, cut) in lines {
                        if let Err(e) = on_output(stream, &bytes, cut) {
                            self.kill();
                            return Err(e);
                        }
                    }
                }
                Ok(Event::Activity) => last_output = Instant::now(),
                Ok(Event::Closed) => open_streams -= 1,
                Ok(Event::Exited(status)) => {
                    exit = Some(status);
                    ended = true;
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Readers and leader are done, but not every process of the child.
                Err(RecvTimeoutError::Disconnected) if !gone => {
                    ended = true;
                    thread::sleep(wait);
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(ending.unwrap_or_else(|| Ending::Exited(exit.and_then(exit_code))))
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

fn next_wake(
    now: Instant,
    start: Instant,
    last: Instant,
    limits: Limits,
    other: Option<Instant>,
) -> Duration {
    let mut wake = now + Duration::from_millis(100); // poll for Ctrl-C
    if let Some(t) = limits.total {
        wake = wake.min(start + t);
    }
    if let Some(t) = limits.idle {
        wake = wake.min(last + t);
    }
    if let Some(other) = other {
        wake = wake.min(other);
    }
    wake.saturating_duration_since(now).max(Duration::from_millis(1))
}

/// The exit code, or 128 + signal for a child killed by a signal.
pub(crate) fn exit_code(status: ExitStatus) -> Option<i32> {
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

fn spawn_reader(pipe: impl Read + Send + 'static, stream: Stream, framing: Framing, tx: SyncSender<Event>) {
    thread::spawn(move || {
        let _ = match framing {
            Framing::Lines { max_line } => {
                // Lines are handed over in batches of what has arrived before
                // the next read would wait, so a fast writer does not cost a
                // thread switch per line and a slow one is seen at once.
                let mut batch = Vec::new();
                let mut bytes = 0;
                let send = |batch: &mut Vec<(Vec<u8>, bool)>, bytes: &mut usize| {
                    *bytes = 0;
                    tx.send(Event::Lines(stream, std::mem::take(batch))).is_ok()
                };
                // Bytes that end no line still count as output, reported at
                // most once per ACTIVITY_EVERY (not per byte of a progress bar).
                let mut reported = Instant::now().checked_sub(ACTIVITY_EVERY).unwrap_or_else(Instant::now);
                let result = read_pieces(pipe, max_line, |piece| match piece {
                    Piece::Line(line, cut) => {
                        bytes += line.len();
                        batch.push((line, cut));
                        batch.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES
                            || send(&mut batch, &mut bytes)
                    }
                    Piece::Waiting { partial } => {
                        if !batch.is_empty() {
                            reported = Instant::now();
                            send(&mut batch, &mut bytes)
                        } else if partial && reported.elapsed() >= ACTIVITY_EVERY {
                            reported = Instant::now();
                            tx.send(Event::Activity).is_ok()
                        } else {
                            true
                        }
                    }
                });
                if !batch.is_empty() {
                    send(&mut batch, &mut bytes);
                }
                result
            }
            Framing::Chunks | Framing::Inherit => {
                read_chunks(pipe, |chunk| tx.send(Event::Output(stream, chunk, false)).is_ok())
            }
        };
        let _ = tx.send(Event::Closed);
    });
}

fn read_chunks(mut pipe: impl Read, mut emit: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if !emit(buf[..n].to_vec()) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Most often that bytes ending no line are reported as output (the idle
/// timer is thus at most this much early).
const ACTIVITY_EVERY: Duration = Duration::from_millis(100);

/// Most lines, and bytes, handed over in one batch.
const MAX_BATCH_LINES: usize = 256;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// What `read_pieces` reports: a line (and whether it was cut), or that
/// everything read so far was reported and the next read may wait; then
/// `partial` says that bytes of an unfinished line were read since the
/// last report.
pub(crate) enum Piece {
    Line(Vec<u8>, bool),
    Waiting { partial: bool },
}

/// Splits a byte stream into lines without ever holding more than
/// `max_line` bytes of one line: the rest of an overlong line is skipped and
/// the kept part is flagged as cut. A final line without `\n` is delivered.
pub fn read_lines(
    pipe: impl Read,
    max_line: usize,
    mut emit: impl FnMut(Vec<u8>, bool) -> bool,
) -> io::Result<()> {
    read_pieces(pipe, max_line, |piece| match piece {
        Piece::Line(line, cut) => emit(line, cut),
        Piece::Waiting { .. } => true,
    })
}

/// `read_lines`, also saying when the lines read so far are all out and the
/// next read may wait. `emit` returns false to stop.
pub(crate) fn read_pieces(
    pipe: impl Read,
    max_line: usize,
    mut emit: impl FnMut(Piece) -> bool,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line = Vec::new();
    let mut cut = false;
    // Bytes of an unfinished line read since the last `Waiting`.
    let mut partial = false;
    loop {
        if reader.buffer().is_empty() {
            if !emit(Piece::Waiting { partial }) {
                return Ok(());
            }
            partial = false;
        }
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() || cut {
                emit(Piece::Line(std::mem::take(&mut line), cut));
            }
            return Ok(());
        }
        let (chunk, newline) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        let room = max_line.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(consumed);
        partial = newline.is_none();
        if newline.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !emit(Piece::Line(std::mem::take(&mut line), cut)) {
                return Ok(());
            }
            cut = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        read_lines(input, max, |l, c| {
            out.push((l, c));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_final_partial_line() {
        assert_eq!(
            split(b"a\r\nbb\nccc", 10),
            vec![(b"a".to_vec(), false), (b"bb".to_vec(), false), (b"ccc".to_vec(), false)]
        );
    }

    #[test]
    fn cuts_overlong_lines_and_resumes_at_the_next() {
        assert_eq!(split(b"abcdef\nxy\n", 3), vec![(b"abc".to_vec(), true), (b"xy".to_vec(), false)]);
    }
}
