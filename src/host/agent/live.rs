//! What a person sees while an agent works, all on stderr: on a terminal the
//! agent's text scrolls above one status line that is redrawn in place
//! (`⠋ claude · generator US-001 · 1m12s · Bash: cargo test`); without one,
//! plain prefixed lines (`[claude] text`, `[claude] → Bash: cargo test`);
//! or nothing at all.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
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
    pub(crate) fn new(mode: Mode, agent: &str, label: &str) -> Self {
        match mode {
            Mode::Live => View::Live(Live::start(agent, label)),
            Mode::Plain => View::Plain(Plain { prefix: format!("[{agent}]"), pending: String::new() }),
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
            live.with(|s| s.tool = THINKING.to_string());
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

struct Status {
    agent: String,
    label: String,
    start: Instant,
    tool: String,
    frame: usize,
    /// Streamed text not yet ended by a newline.
    pending: String,
    shown: bool,
}

impl Status {
    fn line(&self) -> String {
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
        let line = format!("{} {}", SPINNER[self.frame % SPINNER.len()], parts.join(" · "));
        let width = terminal_width().saturating_sub(1).max(10);
        fit(&line, width)
    }

    /// Clears the status line, prints `lines` above it and redraws it.
    fn print(&mut self, lines: &[&str]) {
        let mut out = String::from("\r\x1b[2K");
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&self.line());
        self.shown = true;
        let mut err = io::stderr().lock();
        let _ = err.write_all(out.as_bytes()).and_then(|()| err.flush());
    }
}

/// The status line, redrawn by a ticker thread so the clock moves while the
/// agent is silent.
pub(crate) struct Live {
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Live {
    fn start(agent: &str, label: &str) -> Self {
        let status = Arc::new(Mutex::new(Status {
            agent: agent.to_string(),
            label: label.to_string(),
            start: Instant::now(),
            tool: String::new(),
            frame: 0,
            pending: String::new(),
            shown: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (status, stop) = (status.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(mut s) = status.lock() {
                        s.frame += 1;
                        s.print(&[]);
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self { status, stop, ticker: Some(ticker) }
    }

    fn with(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn text(&mut self, text: &str, delta: bool) {
        self.with(|s| {
            let mut lines = Vec::new();
            if !delta && !s.pending.is_empty() {
                lines.push(std::mem::take(&mut s.pending));
            }
            s.pending.push_str(text);
            while let Some(i) = s.pending.find('\n') {
                let line: String = s.pending.drain(..=i).collect();
                lines.push(line.trim_end_matches(['\n', '\r']).to_string());
            }
            if !delta && !s.pending.is_empty() {
                lines.push(std::mem::take(&mut s.pending));
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            s.print(&refs);
        });
    }

    fn tool(&mut self, shown: &str) {
        self.with(|s| {
            let pending = std::mem::take(&mut s.pending);
            s.tool = shown.to_string();
            let line = format!("→ {shown}");
            let mut lines = vec![line.as_str()];
            if !pending.is_empty() {
                lines.insert(0, &pending);
            }
            s.print(&lines);
        });
    }

    fn line(&mut self, text: &str) {
        self.with(|s| {
            let pending = std::mem::take(&mut s.pending);
            let mut lines: Vec<&str> = text.lines().collect();
            if !pending.is_empty() {
                lines.insert(0, &pending);
            }
            s.print(&lines);
        });
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
            self.with(|s| {
                let mut out = String::from("\r\x1b[2K");
                if !s.pending.is_empty() {
                    out.push_str(&std::mem::take(&mut s.pending));
                    out.push('\n');
                }
                if s.shown || !out.is_empty() {
                    let _ = io::stderr().lock().write_all(out.as_bytes());
                }
            });
        }
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
