//! `ui::` — talking to the person. Messages go to stderr so that stdout
//! carries only what a script prints on purpose (tables, JSON). Colours follow
//! anstream: on a terminal, never with `NO_COLOR` or `CLICOLOR=0`, always with
//! `CLICOLOR_FORCE`. `confirm` never waits without a terminal.
//! (Rhai's own `print(text)` writes a line to stdout through `print_line`.)

use std::io::{self, BufRead, IsTerminal, Read, Write};

use anstyle::{AnsiColor, Style};
use rhai::{Array, Dynamic, Module};
use unicode_width::UnicodeWidthStr;

use super::json;
use crate::context::SharedHost;

/// Writes a line to stdout. A closed pipe (`aloop ... | head`) ends the
/// program silently with success, as other Unix tools do.
pub(crate) fn print_line(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            crate::cancel::kill_all_groups(libc::SIGKILL);
            std::process::exit(0);
        }
    }
}

/// Prints `text` to stderr behind a label coloured by its SGR code ("31"
/// red, "32" green, "33" yellow; anything else plain).
pub(crate) fn message(label: &str, color: &str, text: &str) {
    let color = match color {
        "31" => Some(AnsiColor::Red),
        "32" => Some(AnsiColor::Green),
        "33" => Some(AnsiColor::Yellow),
        _ => None,
    };
    let style = Style::new().fg_color(color.map(Into::into));
    let line = if label.is_empty() { text.to_string() } else { format!("{style}{label}{style:#} {text}") };
    super::agent::above_status(|| {
        let _ = writeln!(anstream::stderr().lock(), "{line}");
    });
}

/// Lays out rows under headers in aligned columns, measured in terminal
/// columns (a CJK character or an emoji takes two).
pub(crate) fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.width()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.width());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                out.push_str(&" ".repeat(width.saturating_sub(cell.width()) + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(headers)];
    out.push(line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

fn cells(row: &Dynamic) -> Vec<String> {
    match row.read_lock::<Array>() {
        Some(items) => {
            items.iter().map(|c| if c.is_unit() { String::new() } else { c.to_string() }).collect()
        }
        None => vec![row.to_string()],
    }
}

fn confirm(host: &SharedHost, question: &str, default: bool) -> bool {
    if !host.interactive {
        let answer = if default { "yes" } else { "no" };
        message(
            "note:",
            "33",
            &format!("no terminal to ask \"{question}\"; taking the default answer: {answer}"),
        );
        return default;
    }
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    eprint!("{question} {hint} ");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    if io::stdin().lock().read_line(&mut answer).unwrap_or(0) == 0 {
        return default;
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "" => default,
        a => a == "y" || a == "yes",
    }
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    primitive!(m, "info", |text: &str| {
        message("", "", text);
        Ok(())
    });
    primitive!(m, "warn", |text: &str| {
        message("warning:", "33", text);
        Ok(())
    });
    primitive!(m, "error", |text: &str| {
        message("error:", "31", text);
        Ok(())
    });
    primitive!(m, "success", |text: &str| {
        message("✓", "32", text);
        Ok(())
    });
    // ui::json(value): one pretty JSON document on stdout.
    primitive!(m, "json", |value: Dynamic| {
        print_line(&json::to_pretty_json(&value, None, 0)?);
        Ok(())
    });
    // ui::table(headers, rows): aligned columns on stdout.
    primitive!(m, "table", |headers: Array, rows: Array| {
        let headers: Vec<String> = headers.iter().map(std::string::ToString::to_string).collect();
        let rows: Vec<Vec<String>> = rows.iter().map(cells).collect();
        print_line(&table(&headers, &rows));
        Ok(())
    });
    let h = host.clone();
    // ui::confirm(question) -> bool; without a terminal, false (and says so).
    primitive!(m, "confirm", |question: &str| { Ok(confirm(&h, question, false)) });
    let h = host.clone();
    // ui::confirm(question, default) -> bool; without a terminal, `default`.
    primitive!(m, "confirm", |question: &str, default: bool| { Ok(confirm(&h, question, default)) });
    let h = host.clone();
    primitive!(m, "is_interactive", || { Ok(h.interactive) });
    // ui::status(text) -> on a terminal, redraws one status line in place (a
    // countdown); "" clears it. Without a terminal it draws nothing and
    // returns false, so the caller can print occasional lines instead.
    primitive!(m, "status", |text: &str| {
        if !io::stderr().is_terminal() {
            return Ok(false);
        }
        // Straight to stderr: erasing the line is cursor control, not colour,
        // so NO_COLOR (which anstream honours by stripping escapes) keeps it.
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        Ok(true)
    });
    // ui::read_stdin() -> all of stdin (to its end) as text, or () when stdin
    // is a terminal: it never waits for a person to type.
    primitive!(m, "read_stdin", || {
        if io::stdin().is_terminal() {
            return Ok(Dynamic::UNIT);
        }
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| super::raise(format!("reading stdin: {e}")))?;
        Ok(Dynamic::from(String::from_utf8_lossy(&bytes).into_owned()))
    });
    m
}
