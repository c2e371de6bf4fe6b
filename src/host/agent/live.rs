//! What a person sees while agents work, all on stderr: on a terminal the
//! agent's text scrolls above one status line per running agent, redrawn in
//! place (`⠋ claude · generator US-001 · 1m12s · Bash: cargo test`); without
//! one, plain prefixed lines (`[claude] text`, `[claude] → Bash: cargo test`,
//! or the request's `prefix` instead of the agent's name); or nothing at all.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// What the status line says between a tool's result and the next event.
const THINKING: &str = "thinking";
/// Longest tool summary shown; the rest is cut with an ellipsis.
const SUMMARY_CHARS: usize = 120;

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Live,
    Plain,
    None,
}

pub(crate) enum View {
    Live(Live),
    Plain(Plain),
    None,
}

impl View {
    pub(crate) fn new(mode: Mode, agent: &str, label: &str, prefix: Option<&str>) -> Self {
        let prefix = format!("[{}]", prefix.unwrap_or(agent));
        match mode {
            Mode::Live => View::Live(Live::start(agent, label, prefix)),
            Mode::Plain => View::Plain(Plain { prefix, pending: String::new() }),
            Mode::None => View::None,
        }
    }

    /// Text the agent wrote. `delta` text continues the previous piece
    /// (streamed chunks); other text is a message of its own.
    pub(crate) fn text(&mut self, text: &str, delta: bool) {
        match self {
            View::Live(live) => live.text(text, delta),
            View::Plain(plain) => plain.text(text, delta),
            View::None => {}
        }
    }

    /// The agent started a tool.
    pub(crate) fn tool(&mut self, tool: &str, summary: &str) {
        if matches!(self, View::None) {
            return;
        }
        let summary = shorten(summary);
        let shown = if summary.is_empty() { tool.to_string() } else { format!("{tool}: {summary}") };
        match self {
            View::Live(live) => live.tool(&shown),
            View::Plain(plain) => plain.line(&format!("→ {shown}")),
            View::None => {}
        }
    }

    /// A tool finished: the model is thinking again, so the status line
    /// stops naming the tool.
    pub(crate) fn tool_done(&mut self) {
        if let View::Live(live) = self {
            live.with(|row, _| row.tool = THINKING.to_string());
        }
    }

    /// A note worth a line of its own (a failed tool, an error event).
    pub(crate) fn note(&mut self, text: &str) {
        match self {
            View::Live(live) => live.line(text),
            View::Plain(plain) => plain.line(text),
            View::None => {}
        }
    }

    /// Ends the view: the status line is removed, pending text flushed.
    pub(crate) fn finish(&mut self) {
        match self {
            View::Live(live) => live.finish(),
            View::Plain(plain) => plain.flush(),
            View::None => {}
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One line (or one text) of at most `SUMMARY_CHARS` characters.
fn shorten(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let multi = text.trim().lines().count() > 1;
    if first.chars().count() > SUMMARY_CHARS {
        format!("{}…", first.chars().take(SUMMARY_CHARS).collect::<String>())
    } else if multi {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

/// `line` cut with an ellipsis to at most `width` terminal columns (a CJK
/// character or an emoji takes two), so the status line never wraps.
fn fit(line: &str, width: usize) -> String {
    if line.width() <= width {
        return line.to_string();
    }
    let mut out = String::new();
    let mut used = 1; // the ellipsis
    for c in line.chars() {
        used += c.width().unwrap_or(0);
        if used > width {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// Plain lines for logs and pipes.
pub(crate) struct Plain {
    prefix: String,
    /// Streamed text not yet ended by a newline.
    pending: String,
}

impl Plain {
    fn text(&mut self, text: &str, delta: bool) {
        if !delta {
            self.flush();
        }
        self.pending.push_str(text);
        while let Some(i) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=i).collect();
            self.emit(line.trim_end_matches(['\n', '\r']));
        }
        if !delta {
            self.flush();
        }
    }

    fn line(&mut self, text: &str) {
        self.flush();
        for line in text.lines() {
            self.emit(line);
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }

    fn emit(&self, line: &str) {
        let line = if line.is_empty() { self.prefix.clone() } else { format!("{} {line}", self.prefix) };
        let _ = writeln!(io::stderr().lock(), "{line}");
    }
}

/// One agent's status line.
struct Row {
    id: u64,
    agent: String,
    label: String,
    /// What its text lines start with while other agents run too.
    prefix: String,
    start: Instant,
    tool: String,
    /// Streamed text not yet ended by a newline.
    pending: String,
}

impl Row {
    fn line(&self, frame: usize, width: usize) -> String {
        let secs = self.start.elapsed().as_secs();
        let elapsed =
            if secs >= 60 { format!("{}m{:02}s", secs / 60, secs % 60) } else { format!("{secs}s") };
        let mut parts = vec![self.agent.clone()];
        if !self.label.is_empty() {
            parts.push(self.label.clone());
        }
        parts.push(elapsed);
        if !self.tool.is_empty() {
            parts.push(self.tool.clone());
        }
        fit(&format!("{} {}", SPINNER[frame % SPINNER.len()], parts.join(" · ")), width)
    }
}

/// The status lines of every running agent, at the bottom of the terminal,
/// redrawn by one ticker thread so the clocks move while agents are silent.
struct Board {
    rows: Vec<Row>,
    /// How many status lines are on the screen now.
    shown: usize,
    frame: usize,
    ticking: bool,
}

static BOARD: Mutex<Board> = Mutex::new(Board { rows: Vec::new(), shown: 0, frame: 0, ticking: false });
static NEXT_ROW: AtomicU64 = AtomicU64::new(1);

impl Board {
    /// Clears the status lines, prints `lines` above them and redraws them.
    fn print(&mut self, lines: &[String]) {
        let mut out = String::new();
        if self.shown > 1 {
            out.push_str(&format!("\x1b[{}A\r\x1b[J", self.shown - 1));
        } else {
            out.push_str("\r\x1b[2K");
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        let width = terminal_width().saturating_sub(1).max(10);
        let rows: Vec<String> = self.rows.iter().map(|row| row.line(self.frame, width)).collect();
        out.push_str(&rows.join("\n"));
        if self.shown > 0 || !lines.is_empty() || !rows.is_empty() {
            let mut err = io::stderr().lock();
            let _ = err.write_all(out.as_bytes()).and_then(|()| err.flush());
        }
        self.shown = rows.len();
    }

    /// Takes the status lines off the screen.
    fn clear(&mut self) {
        let mut out = String::new();
        if self.shown > 1 {
            out.push_str(&format!("\x1b[{}A", self.shown - 1));
        }
        out.push_str("\r\x1b[J");
        let mut err = io::stderr().lock();
        let _ = err.write_all(out.as_bytes()).and_then(|()| err.flush());
        self.shown = 0;
    }

    /// `lines` of the row `id`, named by its prefix while other agents run too.
    fn print_from(&mut self, id: u64, lines: Vec<String>) {
        let several = self.rows.len() > 1;
        let prefix =
            self.rows.iter().find(|row| row.id == id).map(|row| row.prefix.clone()).unwrap_or_default();
        let lines: Vec<String> =
            if several { lines.into_iter().map(|line| format!("{prefix} {line}")).collect() } else { lines };
        self.print(&lines);
    }
}

/// Runs `write`, which prints whole lines to stderr, with the status lines
/// of running agents taken off the screen first and drawn again after, so
/// that messages printed while agents run never land inside them.
pub(crate) fn above_status(write: impl FnOnce()) {
    let Ok(mut board) = BOARD.lock() else { return write() };
    if board.shown == 0 {
        drop(board);
        return write();
    }
    board.clear();
    write();
    board.print(&[]);
}

/// Redraws the board every tenth of a second while it has rows.
fn tick() {
    loop {
        {
            let Ok(mut board) = BOARD.lock() else { return };
            if board.rows.is_empty() {
                board.ticking = false;
                return;
            }
            board.frame += 1;
            board.print(&[]);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One agent's row on the board.
pub(crate) struct Live {
    id: u64,
    finished: bool,
}

impl Live {
    fn start(agent: &str, label: &str, prefix: String) -> Self {
        let id = NEXT_ROW.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut board) = BOARD.lock() {
            board.rows.push(Row {
                id,
                agent: agent.to_string(),
                label: label.to_string(),
                prefix,
                start: Instant::now(),
                tool: String::new(),
                pending: String::new(),
            });
            if !board.ticking {
                board.ticking = true;
                thread::spawn(tick);
            }
        }
        Self { id, finished: false }
    }

    /// Runs `f` on this agent's row and the board, under the board's lock.
    fn with(&self, f: impl FnOnce(&mut Row, &mut Vec<String>)) {
        let Ok(mut board) = BOARD.lock() else { return };
        let mut lines = Vec::new();
        let Some(row) = board.rows.iter_mut().find(|row| row.id == self.id) else { return };
        f(row, &mut lines);
        if !lines.is_empty() {
            board.print_from(self.id, lines);
        }
    }

    fn text(&mut self, text: &str, delta: bool) {
        self.with(|row, lines| {
            if !delta && !row.pending.is_empty() {
                lines.push(std::mem::take(&mut row.pending));
            }
            row.pending.push_str(text);
            while let Some(i) = row.pending.find('\n') {
                let line: String = row.pending.drain(..=i).collect();
                lines.push(line.trim_end_matches(['\n', '\r']).to_string());
            }
            if !delta && !row.pending.is_empty() {
                lines.push(std::mem::take(&mut row.pending));
            }
        });
    }

    fn tool(&mut self, shown: &str) {
        self.with(|row, lines| {
            let pending = std::mem::take(&mut row.pending);
            if !pending.is_empty() {
                lines.push(pending);
            }
            row.tool = shown.to_string();
            lines.push(format!("→ {shown}"));
        });
    }

    fn line(&mut self, text: &str) {
        self.with(|row, lines| {
            let pending = std::mem::take(&mut row.pending);
            if !pending.is_empty() {
                lines.push(pending);
            }
            lines.extend(text.lines().map(String::from));
        });
    }

    /// Takes the row off the board, printing its unfinished text.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let Ok(mut board) = BOARD.lock() else { return };
        let Some(at) = board.rows.iter().position(|row| row.id == self.id) else { return };
        let pending = std::mem::take(&mut board.rows[at].pending);
        if !pending.is_empty() {
            board.print_from(self.id, vec![pending]);
        }
        board.rows.remove(at);
        board.print(&[]);
    }
}

/// Columns of the terminal on stderr, 80 when it cannot be asked.
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(io::stderr()).map_or(80, |(width, _)| usize::from(width.0).max(1))
}

#[cfg(test)]
mod tests {
    use super::{fit, shorten};

    #[test]
    fn summaries_are_one_short_line() {
        assert_eq!(shorten("cargo test"), "cargo test");
        assert_eq!(shorten("\n  git add -A\ngit commit"), "git add -A …");
        assert_eq!(shorten(&"x".repeat(200)).chars().count(), 121);
    }

    #[test]
    fn the_status_line_is_cut_by_terminal_columns() {
        assert_eq!(fit("⠋ claude · 1m", 20), "⠋ claude · 1m");
        assert_eq!(fit("⠋ 日本語のテキスト", 10), "⠋ 日本語…");
        assert_eq!(fit("⠋ 🚀🚀🚀🚀", 7), "⠋ 🚀🚀…");
    }
}
