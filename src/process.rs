//! Supervised child processes: argv only (never a shell), their own process
//! group, stdout and stderr read concurrently, limits on total and idle time,
//! and termination of the whole group (SIGTERM, grace, SIGKILL) so that
//! nothing outlives the call. Used by `proc::run` and `agent::run`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use crate::cancel;

/// Which output stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How output is delivered: whole lines (cut at `max_line` bytes, the rest of
/// an overlong line dropped), raw chunks as they arrive, or not at all (the
/// child writes straight to our own stdout and stderr).
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    Lines { max_line: usize },
    Chunks,
    Inherit,
}

/// Bounds on a run. `None` means no bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: Option<Duration>,
    pub idle: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// How a supervised run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(Option<i32>),
    TimedOut,
    IdleTimedOut,
    Interrupted,
}

enum Event {
    Output(Stream, Vec<u8>, bool),
    /// Lines that arrived together (one hand-over instead of one per line).
    Lines(Stream, Vec<(Vec<u8>, bool)>),
    Closed,
    Exited(ExitStatus),
}

/// A running child in its own process group.
pub struct Supervised {
    pgid: i32,
    /// The interrupt count when it started; only a newer interrupt stops it.
    generation: usize,
    /// Output streams still being read (0 when output is inherited).
    open_streams: usize,
    events: Receiver<Event>,
    _guard: cancel::GroupGuard,
}

impl Supervised {
    /// Spawns `command` in a new process group with piped stdio; `stdin` is
    /// written and then closed (programs that read to EOF would otherwise wait
    /// forever), or stdin is /dev/null when there is none.
    pub fn spawn(mut command: Command, stdin: Option<Vec<u8>>, framing: Framing) -> io::Result<Self> {
        let captured = !matches!(framing, Framing::Inherit);
        let output = || if captured { Stdio::piped() } else { Stdio::inherit() };
        command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(output())
            .stderr(output())
            .process_group(0);
        let mut child = command.spawn()?;
        let pgid = child.id() as i32;
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
        Ok(Self { pgid, generation: cancel::generation(), open_streams, events, _guard: guard })
    }

    /// Runs the child to its end, handing each piece of output to
    /// `on_output(stream, bytes, truncated)`. Returns how it ended; output
    /// that arrives after the end is still delivered.
    pub fn drive<E>(
        self,
        limits: Limits,
        mut on_output: impl FnMut(Stream, &[u8], bool) -> Result<(), E>,
    ) -> Result<Ending, E> {
        let start = Instant::now();
        let mut last_output = start;
        let mut open_streams = self.open_streams;
        let mut exit: Option<ExitStatus> = None;
        let mut ending: Option<Ending> = None;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if exit.is_some() && open_streams == 0 {
                break;
            }
            let now = Instant::now();
            if ending.is_none() {
                let reason = if cancel::generation() > self.generation {
                    Some(Ending::Interrupted)
                } else if limits.total.is_some_and(|t| now >= start + t) {
                    Some(Ending::TimedOut)
                } else if exit.is_none() && limits.idle.is_some_and(|t| now >= last_output + t) {
                    Some(Ending::IdleTimedOut)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    ending = Some(reason);
                    exit = Some(self.terminate(limits.grace, exit));
                    drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                }
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                break; // a process outside the group still holds the pipe
            }
            let wait = next_wake(now, start, last_output, limits, drain_deadline);
            match self.events.recv_timeout(wait) {
                Ok(Event::Output(stream, bytes, cut)) => {
                    last_output = Instant::now();
                    if let Err(e) = on_output(stream, &bytes, cut) {
                        // The caller gave up on this run: nothing of it may outlive the call.
                        self.signal(libc::SIGKILL);
                        return Err(e);
                    }
                }
                Ok(Event::Lines(stream, lines)) => {
                    last_output = Instant::now();
                    for (bytes, cut) in lines {
                        if let Err(e) = on_output(stream, &bytes, cut) {
                            self.signal(libc::SIGKILL);
                            return Err(e);
                        }
                    }
                }
                Ok(Event::Closed) => open_streams -= 1,
                Ok(Event::Exited(status)) => {
                    exit = Some(status);
                    // Whatever the leader left running in its group goes too,
                    // which also closes pipes that grandchildren hold open.
                    self.signal(libc::SIGKILL);
                    drain_deadline.get_or_insert(Instant::now() + Duration::from_secs(2));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(ending.unwrap_or_else(|| Ending::Exited(exit.and_then(exit_code))))
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-self.pgid, signal) };
    }

    /// SIGTERM to the group, SIGKILL after `grace`; returns the leader's status.
    fn terminate(&self, grace: Duration, exited: Option<ExitStatus>) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut status = exited;
        while status.is_none() && Instant::now() < deadline {
            if let Ok(Event::Exited(s)) = self.events.recv_timeout(Duration::from_millis(20)) {
                status = Some(s);
            }
        }
        self.signal(libc::SIGKILL);
        status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL))
    }
}

fn next_wake(
    now: Instant,
    start: Instant,
    last: Instant,
    limits: Limits,
    drain: Option<Instant>,
) -> Duration {
    let mut wake = now + Duration::from_millis(100); // poll for Ctrl-C
    if let Some(t) = limits.total {
        wake = wake.min(start + t);
    }
    if let Some(t) = limits.idle {
        wake = wake.min(last + t);
    }
    if let Some(d) = drain {
        wake = wake.min(d);
    }
    wake.saturating_duration_since(now).max(Duration::from_millis(1))
}

/// The exit code, or 128 + signal for a child killed by a signal.
pub fn exit_code(status: ExitStatus) -> Option<i32> {
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
                let result = read_pieces(pipe, max_line, |piece| match piece {
                    Piece::Line(line, cut) => {
                        bytes += line.len();
                        batch.push((line, cut));
                        batch.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES
                            || send(&mut batch, &mut bytes)
                    }
                    Piece::Waiting => batch.is_empty() || send(&mut batch, &mut bytes),
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

/// Most lines, and bytes, handed over in one batch.
const MAX_BATCH_LINES: usize = 256;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// What `read_pieces` reports: a line (and whether it was cut), or that
/// everything read so far was reported and the next read may wait.
pub enum Piece {
    Line(Vec<u8>, bool),
    Waiting,
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
        Piece::Waiting => true,
    })
}

/// `read_lines`, also saying when the lines read so far are all out and the
/// next read may wait. `emit` returns false to stop.
pub fn read_pieces(pipe: impl Read, max_line: usize, mut emit: impl FnMut(Piece) -> bool) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line = Vec::new();
    let mut cut = false;
    loop {
        if reader.buffer().is_empty() && !emit(Piece::Waiting) {
            return Ok(());
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
