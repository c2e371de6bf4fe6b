//! What the events of one agent run add up to: the final text, usage, the
//! session id, tool calls, and the bounded tail of its output.

use std::borrow::Cow;
use std::collections::VecDeque;

use rhai::{ImmutableString, Map};

use super::live::View;
use crate::host::as_number;
use crate::supervise::Stream;

/// Most bytes of the agent's final text that are kept.
const MAX_TEXT: usize = 1024 * 1024;
/// Size of `output_tail` (the last lines of stdout and stderr).
const TAIL_BYTES: usize = 16 * 1024;
/// Longest single line kept in the tail.
const TAIL_LINE: usize = 2048;

/// The last lines of output, bounded in bytes.
#[derive(Default)]
pub(super) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    /// The last lines of stderr alone, for error messages.
    stderr: VecDeque<String>,
}

impl Tail {
    pub(super) fn push(&mut self, stream: Stream, bytes: &[u8], cut: bool) {
        // The first TAIL_LINE characters, which lie in the first 4 × TAIL_LINE
        // bytes (a line of no more bytes has no more characters).
        let text = lossy_text(&bytes[..bytes.len().min(4 * TAIL_LINE)]);
        let end = if text.len() <= TAIL_LINE {
            text.len()
        } else {
            text.char_indices().nth(TAIL_LINE).map_or(text.len(), |(at, _)| at)
        };
        let mut line = text[..end].to_string();
        if cut || end < text.len() || bytes.len() > 4 * TAIL_LINE {
            line.push_str(" …[line cut]");
        }
        if stream == Stream::Stderr && !line.trim().is_empty() {
            self.stderr.push_back(line.clone());
            if self.stderr.len() > 20 {
                self.stderr.pop_front();
            }
        }
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > TAIL_BYTES && self.lines.len() > 1 {
            let old = self.lines.pop_front().expect("not empty");
            self.bytes -= old.len() + 1;
        }
    }

    /// The stderr line that best says what went wrong: the last one that
    /// mentions an error, else the last one.
    pub(super) fn stderr_error(&self) -> Option<String> {
        let mentions = |l: &&String| l.to_lowercase().contains("error");
        self.stderr.iter().rev().find(mentions).or(self.stderr.back()).map(|l| l.trim().to_string())
    }

    pub(super) fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Output bytes as text, invalid UTF-8 replaced; checking valid text first
/// is several times faster than `from_utf8_lossy` on its own.
pub(super) fn lossy_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Appends `text` to a buffer that keeps about its last `MAX_TEXT` bytes
/// (never more than twice that; trimmed in one move when it gets there, so a
/// flood of small pieces costs linear time).
fn push_bounded(buf: &mut String, text: &str) {
    buf.push_str(text);
    if buf.len() > 2 * MAX_TEXT {
        let mut cut = buf.len() - MAX_TEXT;
        while !buf.is_char_boundary(cut) {
            cut += 1;
        }
        buf.drain(..cut);
    }
}

/// The last `MAX_TEXT` bytes (at most) of a text.
fn last_part(text: &str) -> &str {
    let mut cut = text.len().saturating_sub(MAX_TEXT);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

/// A text field of an event (a shared string: no copy).
pub(super) fn string(map: &Map, key: &str) -> Option<ImmutableString> {
    map.get(key)?.clone().into_immutable_string().ok()
}

fn number(map: &Map, key: &str) -> Option<f64> {
    as_number(map.get(key)?)
}

fn flag(map: &Map, key: &str) -> bool {
    map.get(key).and_then(|v| v.as_bool().ok()).unwrap_or(false)
}

/// What the events of one run add up to.
#[derive(Default)]
pub(super) struct Collector {
    /// Text since the last tool call (the agent's answer, when it ends with text).
    text: String,
    /// The text block before the last tool call, used when nothing follows it.
    previous: String,
    result_text: Option<String>,
    pub(super) result_error: bool,
    pub(super) error: Option<String>,
    pub(super) cost: Option<f64>,
    pub(super) input_tokens: Option<f64>,
    pub(super) output_tokens: Option<f64>,
    pub(super) session_id: Option<String>,
    /// A usage or rate limit the agent reported: its message and, when the
    /// message says, the reset time (unix seconds).
    pub(super) limit: Option<(String, Option<i64>)>,
    pub(super) tool_calls: i64,
    pub(super) tail: Tail,
    pub(super) cut_lines: i64,
    /// The last failure message shown: CLIs often say one twice (an error
    /// event and the failed result), and it is shown once.
    shown: Option<String>,
}

impl Collector {
    pub(super) fn event(&mut self, event: &Map, view: &mut View) {
        let kind = string(event, "kind").unwrap_or_default();
        match kind.as_str() {
            "init" => {
                self.session_id = string(event, "session_id").map(String::from).or(self.session_id.take());
            }
            "text" => {
                let text = string(event, "text").unwrap_or_default();
                let delta = flag(event, "delta");
                if !delta && !self.text.is_empty() {
                    push_bounded(&mut self.text, "\n\n");
                }
                push_bounded(&mut self.text, &text);
                view.text(&text, delta);
            }
            "tool" => {
                self.tool_calls += 1;
                if !self.text.trim().is_empty() {
                    self.previous = std::mem::take(&mut self.text);
                }
                self.text.clear();
                let tool = string(event, "tool").unwrap_or_else(|| "tool".into());
                view.tool(&tool, &string(event, "summary").unwrap_or_default());
            }
            "tool_result" => {
                view.tool_done();
                if flag(event, "is_error") {
                    let summary = string(event, "summary").unwrap_or_default();
                    view.note(&format!("✗ tool failed: {}", summary.lines().next().unwrap_or("")));
                }
            }
            "notice" => view.note(&string(event, "text").unwrap_or_default()),
            "limit" => {
                let text = string(event, "text").unwrap_or_else(|| "usage limit reached".into());
                self.note_failure(view, "limit", &text);
                // A later report of the same limit (the result after the
                // message) may not repeat when it resets.
                let earlier = self.limit.as_ref().and_then(|(_, at)| *at);
                let resets_at = event.get("resets_at").and_then(|v| v.as_int().ok()).or(earlier);
                self.limit = Some((text.into(), resets_at));
            }
            "error" => {
                let text = string(event, "text").unwrap_or_else(|| "unknown error".into());
                self.note_failure(view, "error", &text);
                self.error = Some(text.into());
            }
            "result" => {
                if let Some(text) = string(event, "text").filter(|t| !t.is_empty()) {
                    self.result_text = Some(last_part(&text).to_string());
                }
                if flag(event, "is_error") {
                    self.result_error = true;
                    let message =
                        string(event, "error").map(String::from).or_else(|| self.result_text.clone());
                    if let Some(message) = message {
                        self.note_failure(view, "error", &message);
                        self.error = Some(message);
                    }
                }
            }
            _ => {}
        }
        // Any event may report usage (the last report wins).
        self.cost = number(event, "cost_usd").or(self.cost);
        self.input_tokens = number(event, "input_tokens").or(self.input_tokens);
        self.output_tokens = number(event, "output_tokens").or(self.output_tokens);
    }

    /// Shows a failure message unless it is the one just shown.
    fn note_failure(&mut self, view: &mut View, label: &str, message: &str) {
        if self.shown.as_deref() != Some(message) {
            view.note(&format!("{label}: {message}"));
            self.shown = Some(message.to_string());
        }
    }

    /// The agent's final text: its result, else its last words.
    pub(super) fn final_text(&self) -> String {
        let text = match &self.result_text {
            Some(text) => text.as_str(),
            None if !self.text.trim().is_empty() => self.text.as_str(),
            None => self.previous.as_str(),
        };
        last_part(text).trim().to_string()
    }
}
