//! `agent::` — runs a coding agent through its adapter script.
//!
//! An adapter is the script `agents/NAME` (found like any script: the
//! repository's `.loop/scripts/`, then `$ALOOP_HOME/scripts/`, then bundled).
//! It defines `command(req)` → `#{program, args, stdin, env}` and
//! `parse(event)` → an event map, an array of them, or `()`; optionally
//! `describe()` → `#{program, install_hint, version_args}` and
//! `explain_exit(code[, output_tail])` → a message. The host owns the rest:
//! spawning (argv, own process group, prompt on stdin then EOF), reading
//! stdout and stderr concurrently in bounded lines, the live view, the total
//! and idle timeouts, Ctrl-C, and the result map.
//!
//! Each stdout line that is a JSON object reaches `parse` already parsed (a
//! map); any other line reaches it as a string. Parsing JSON in Rust keeps
//! the per-line cost in the script small (see "Writing an adapter" in
//! README.md).

mod live;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::{Array, CallFnOptions, Dynamic, Engine, FuncArgs, ImmutableString, Map, Module, Scope, AST};

use super::{fail, opt, opt_seconds, raise, Fallible};
use crate::cancel;
use crate::context::SharedHost;
use crate::lookup::{Kind, Layer};
use crate::process::{Ending, Framing, Limits, Stream, Supervised};
use crate::scripts::{globals_scope, ExitRequest};
use live::{Mode, View};

/// Longest stdout line handed to `parse`; the rest of a longer line is
/// dropped (and the line skipped), so memory stays bounded.
const MAX_LINE: usize = 1024 * 1024;
/// Most bytes of the agent's final text that are kept.
const MAX_TEXT: usize = 1024 * 1024;
/// Size of `output_tail` (the last lines of stdout and stderr).
const TAIL_BYTES: usize = 16 * 1024;
/// Longest single line kept in the tail.
const TAIL_LINE: usize = 2048;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const DEFAULT_IDLE: Duration = Duration::from_secs(600);
/// Time between SIGTERM and SIGKILL when the agent is stopped.
const GRACE: Duration = Duration::from_secs(3);
const AUTONOMY: [&str; 3] = ["read-only", "edit", "full"];

/// A loaded adapter and the scope its functions run in.
struct Adapter {
    name: String,
    layer: Layer,
    origin: String,
    ast: Rc<AST>,
    scope: Scope<'static>,
    /// Whether its functions can reach its top level (`global::` constants or
    /// imported modules), which then runs before each call.
    needs_top_level: bool,
}

impl Adapter {
    fn load(host: &SharedHost, engine: &Engine, name: &str) -> Fallible<Self> {
        let valid = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        let found = if valid {
            host.lookup.find(Kind::Script, &format!("agents/{name}")).map_err(raise)?
        } else {
            None
        };
        let Some(found) = found else {
            let known = list(host).join(", ");
            return fail(format!("no agent adapter named '{name}' (adapters: {known}; see `aloop agents`)"));
        };
        host.check_trust(&found).map_err(raise)?;
        let origin = found.origin(Kind::Script);
        let key = format!("script:{}", found.name);
        let ast = host
            .scripts
            .compile(engine, &key, &origin, &found.text, false)
            .map_err(|e| raise(format!("{e:#}")))?;
        let scope = globals_scope(Map::new(), host.context_map());
        // Functions see nothing of the top level but through `global::` and
        // imports; without them it need not run before every call (which
        // makes `parse` cheaper per line).
        let needs_top_level = found.text.contains("global::") || found.text.contains("import");
        Ok(Self { name: name.to_string(), layer: found.layer, origin, ast, scope, needs_top_level })
    }

    fn has(&self, function: &str, arity: usize) -> bool {
        self.ast.iter_functions().any(|f| f.name == function && f.params.len() == arity)
    }

    /// Calls one of the adapter's functions; its errors name the adapter
    /// file and line.
    fn call(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        function: &str,
        args: impl FuncArgs,
    ) -> Fallible<Dynamic> {
        // When the functions need them, the top-level statements run on every
        // call so that they see `global::CTX` and the imports; the scope is rewound.
        let options = CallFnOptions::new().eval_ast(self.needs_top_level).rewind_scope(true);
        let (scope, ast) = (&mut self.scope, &self.ast);
        let value = host
            .budget
            .nested(|| engine.call_fn_with_options::<Dynamic>(options, scope, ast, function, args))
            .map_err(|e| raise(format!("{:#}", host.script_error(&self.origin, &e))))?;
        // Rhai hands an `exit()`/`fail()` inside the function back as its value.
        match ExitRequest::from_value(&value) {
            Some(exit) => fail(format!("{}: {function}() stopped: {exit}", self.origin)),
            None => Ok(value),
        }
    }

    /// `describe()` as a map (empty when the adapter has none).
    fn describe(&mut self, host: &SharedHost, engine: &Engine) -> Fallible<Map> {
        if !self.has("describe", 0) {
            return Ok(Map::new());
        }
        let value = self.call(host, engine, "describe", ())?;
        value.try_cast::<Map>().ok_or_else(|| raise(format!("{}: describe() must return a map", self.origin)))
    }

    /// `command(req)`, checked, with the request's `env` merged in.
    fn invocation(&mut self, host: &SharedHost, engine: &Engine, req: &Request) -> Fallible<Invocation> {
        for (function, signature) in [("command", "command(req)"), ("parse", "parse(event)")] {
            if !self.has(function, 1) {
                return fail(format!("{}: an adapter must define `fn {signature}`", self.origin));
            }
        }
        let value = self.call(host, engine, "command", (req.map.clone(),))?;
        let bad = |what: String| raise(format!("{}: command(req) {what}", self.origin));
        let map = value
            .try_cast::<Map>()
            .ok_or_else(|| bad("must return a map #{program, args, stdin, env}".into()))?;
        let program = match map.get("program") {
            Some(p) if p.is_string() && !p.to_string().is_empty() => p.to_string(),
            _ => return Err(bad("must return a non-empty string 'program'".into())),
        };
        let mut args = Vec::new();
        if let Some(list) = map.get("args").filter(|a| !a.is_unit()) {
            let list =
                list.read_lock::<Array>().ok_or_else(|| bad("must return 'args' as an array".into()))?;
            for (i, arg) in list.iter().enumerate() {
                args.push(
                    arg.clone()
                        .into_string()
                        .map_err(|t| bad(format!("returned args[{i}] as {t}, not a string")))?,
                );
            }
        }
        let stdin = match map.get("stdin") {
            None => None,
            Some(s) if s.is_unit() => None,
            Some(s) if s.is_string() => Some(s.to_string()),
            Some(s) => return Err(bad(format!("returned 'stdin' as {}, not a string", s.type_name()))),
        };
        let mut env = Vec::new();
        let adapter_env = match map.get("env") {
            None => Map::new(),
            Some(e) if e.is_unit() => Map::new(),
            Some(e) => e.clone().try_cast::<Map>().ok_or_else(|| bad("must return 'env' as a map".into()))?,
        };
        for (key, value) in adapter_env.into_iter().chain(req.env.clone()) {
            env.retain(|(k, _): &(String, Option<String>)| k != key.as_str());
            env.push((key.to_string(), (!value.is_unit()).then(|| value.to_string())));
        }
        Ok(Invocation { program, args, stdin, env, cwd: req.cwd.clone() })
    }

    /// Hands one stdout line to `parse` and returns the events it made: a
    /// JSON object line as a map, any other line (blank ones included) as
    /// it is.
    fn parse(&mut self, host: &SharedHost, engine: &Engine, line: &[u8]) -> Fallible<Vec<Map>> {
        let text = lossy_text(line);
        let event = if text.trim_start().starts_with('{') {
            serde_json::from_str::<super::json::RhaiValue>(&text)
                .map_or_else(|_| text.as_ref().into(), |v| v.0)
        } else {
            text.as_ref().into()
        };
        let value = self.call(host, engine, "parse", (event,))?;
        let origin = &self.origin;
        let not_event = |v: &Dynamic| {
            raise(format!(
                "{origin}: parse() must return a map, an array of maps or (), not {}",
                v.type_name()
            ))
        };
        if value.is_unit() {
            Ok(Vec::new())
        } else if value.is_map() {
            Ok(vec![value.cast::<Map>()])
        } else if value.is_array() {
            let items = value.cast::<Array>();
            items
                .into_iter()
                .filter(|v| !v.is_unit())
                .map(|v| if v.is_map() { Ok(v.cast::<Map>()) } else { Err(not_event(&v)) })
                .collect()
        } else {
            Err(not_event(&value))
        }
    }

    /// `explain_exit(code[, output_tail])`, if the adapter has it.
    fn explain_exit(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        code: i32,
        tail: &str,
    ) -> Fallible<Option<String>> {
        let value = if self.has("explain_exit", 2) {
            self.call(host, engine, "explain_exit", (code as i64, tail.to_string()))?
        } else if self.has("explain_exit", 1) {
            self.call(host, engine, "explain_exit", (code as i64,))?
        } else {
            return Ok(None);
        };
        Ok(value.is_string().then(|| value.to_string()).filter(|s| !s.is_empty()))
    }
}

/// A request with its defaults filled in and its fields checked.
struct Request {
    /// What the adapter's `command(req)` receives.
    map: Map,
    cwd: PathBuf,
    timeout: Option<Duration>,
    idle: Option<Duration>,
    mode: Mode,
    label: String,
    env: Map,
}

/// A zero duration means "no limit".
fn limit(value: Option<Duration>, default: Duration) -> Option<Duration> {
    Some(value.unwrap_or(default)).filter(|d| !d.is_zero())
}

fn request(host: &SharedHost, req: Map) -> Fallible<Request> {
    let mut map = req.clone();
    let prompt = opt::<ImmutableString>(&req, "prompt", "a string")?
        .ok_or_else(|| raise("the request needs a 'prompt' (the text for the agent)"))?;
    map.insert("prompt".into(), prompt.into());
    let model = opt::<ImmutableString>(&req, "model", "a string")?;
    map.insert("model".into(), model.map_or(Dynamic::UNIT, Dynamic::from));
    let autonomy = opt::<ImmutableString>(&req, "autonomy", "a string")?.unwrap_or_else(|| "edit".into());
    if !AUTONOMY.contains(&autonomy.as_str()) {
        return fail(format!("autonomy must be \"read-only\", \"edit\" or \"full\", not \"{autonomy}\""));
    }
    map.insert("autonomy".into(), autonomy.into());
    let cwd = match opt::<ImmutableString>(&req, "cwd", "a string")? {
        Some(dir) => host.roots.resolve(&dir).map_err(raise)?,
        None => host.roots.project.clone(),
    };
    if !cwd.is_dir() {
        return fail(format!("cwd '{}' is not a directory", cwd.display()));
    }
    map.insert("cwd".into(), cwd.display().to_string().into());
    let mut extra = Array::new();
    for (i, arg) in
        opt::<Array>(&req, "extra_args", "an array of strings")?.unwrap_or_default().into_iter().enumerate()
    {
        if !arg.is_string() {
            return fail(format!("extra_args[{i}] must be a string, not {}", arg.type_name()));
        }
        extra.push(arg);
    }
    map.insert("extra_args".into(), extra.into());
    let timeout = limit(opt_seconds(&req, "timeout")?, DEFAULT_TIMEOUT);
    let idle = limit(opt_seconds(&req, "idle_timeout")?, DEFAULT_IDLE);
    let seconds = |d: Option<Duration>| Dynamic::from(d.map_or(0.0, |d| d.as_secs_f64()));
    map.insert("timeout".into(), seconds(timeout));
    map.insert("idle_timeout".into(), seconds(idle));
    let view = opt::<ImmutableString>(&req, "view", "a string")?.unwrap_or_else(|| "auto".into());
    let mode = match view.as_str() {
        "auto" if std::io::stderr().is_terminal() => Mode::Live,
        "auto" | "plain" => Mode::Plain,
        "live" => Mode::Live,
        "none" => Mode::None,
        other => {
            return fail(format!("view must be \"auto\", \"live\", \"plain\" or \"none\", not \"{other}\""))
        }
    };
    map.insert("view".into(), view.into());
    let label = opt::<ImmutableString>(&req, "label", "a string")?.map(|s| s.to_string()).unwrap_or_default();
    map.insert("label".into(), label.clone().into());
    let env = opt::<Map>(&req, "env", "a map")?.unwrap_or_default();
    map.insert("env".into(), env.clone().into());
    Ok(Request { map, cwd, timeout, idle, mode, label, env })
}

/// What will be run.
struct Invocation {
    program: String,
    args: Vec<String>,
    stdin: Option<String>,
    env: Vec<(String, Option<String>)>,
    cwd: PathBuf,
}

impl Invocation {
    fn to_map(&self) -> Map {
        let mut env = Map::new();
        for (key, value) in &self.env {
            env.insert(key.into(), value.clone().map_or(Dynamic::UNIT, Dynamic::from));
        }
        let mut map = Map::new();
        map.insert("program".into(), self.program.clone().into());
        map.insert("args".into(), self.args.iter().cloned().map(Dynamic::from).collect::<Array>().into());
        map.insert("stdin".into(), self.stdin.clone().map_or(Dynamic::UNIT, Dynamic::from));
        map.insert("env".into(), env.into());
        map.insert("cwd".into(), self.cwd.display().to_string().into());
        map
    }
}

/// The last lines of output, bounded in bytes.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    /// The last lines of stderr alone, for error messages.
    stderr: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, stream: Stream, bytes: &[u8], cut: bool) {
        // The first TAIL_LINE characters, which lie in the first 4 × TAIL_LINE
        // bytes (a line of no more bytes has no more characters).
        let text = lossy_text(&bytes[..bytes.len().min(4 * TAIL_LINE)]);
        let end = match text.len() <= TAIL_LINE {
            true => text.len(),
            false => text.char_indices().nth(TAIL_LINE).map_or(text.len(), |(at, _)| at),
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
    fn stderr_error(&self) -> Option<String> {
        let mentions = |l: &&String| l.to_lowercase().contains("error");
        self.stderr.iter().rev().find(mentions).or(self.stderr.back()).map(|l| l.trim().to_string())
    }

    fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Output bytes as text, invalid UTF-8 replaced; checking valid text first
/// is several times faster than `from_utf8_lossy` on its own.
fn lossy_text(bytes: &[u8]) -> Cow<'_, str> {
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
fn string(map: &Map, key: &str) -> Option<ImmutableString> {
    map.get(key)?.clone().into_immutable_string().ok()
}

fn number(map: &Map, key: &str) -> Option<f64> {
    let v = map.get(key)?;
    v.as_float().ok().or_else(|| v.as_int().ok().map(|i| i as f64))
}

fn flag(map: &Map, key: &str) -> bool {
    map.get(key).and_then(|v| v.as_bool().ok()).unwrap_or(false)
}

/// What the events of one run add up to.
#[derive(Default)]
struct Collector {
    /// Text since the last tool call (the agent's answer, when it ends with text).
    text: String,
    /// The text block before the last tool call, used when nothing follows it.
    previous: String,
    result_text: Option<String>,
    result_error: bool,
    error: Option<String>,
    cost: Option<f64>,
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
    session_id: Option<String>,
    tool_calls: i64,
    tail: Tail,
    cut_lines: i64,
}

impl Collector {
    fn event(&mut self, event: &Map, view: &mut View) {
        let kind = string(event, "kind").unwrap_or_default();
        match kind.as_str() {
            "init" => {
                self.session_id = string(event, "session_id").map(String::from).or(self.session_id.take())
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
            "tool_result" if flag(event, "is_error") => {
                let summary = string(event, "summary").unwrap_or_default();
                view.note(&format!("✗ tool failed: {}", summary.lines().next().unwrap_or("")));
            }
            "notice" => view.note(&string(event, "text").unwrap_or_default()),
            "error" => {
                let text = string(event, "text").unwrap_or_else(|| "unknown error".into());
                view.note(&format!("error: {text}"));
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
                        view.note(&format!("error: {message}"));
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

    /// The agent's final text: its result, else its last words.
    fn final_text(&self) -> String {
        let text = match &self.result_text {
            Some(text) => text.as_str(),
            None if !self.text.trim().is_empty() => self.text.as_str(),
            None => self.previous.as_str(),
        };
        last_part(text).trim().to_string()
    }
}

/// The result map of `agent::run`.
struct Outcome {
    status: &'static str,
    exit_code: Option<i32>,
    error: Option<String>,
}

fn result_map(name: &str, outcome: Outcome, collected: &Collector, start: Instant) -> Map {
    let float = |v: Option<f64>| v.map_or(Dynamic::UNIT, Dynamic::from);
    let int = |v: Option<f64>| v.map_or(Dynamic::UNIT, |v| Dynamic::from(v as i64));
    let mut map = Map::new();
    map.insert("agent".into(), name.into());
    map.insert("status".into(), outcome.status.into());
    map.insert("exit_code".into(), outcome.exit_code.map_or(Dynamic::UNIT, |c| Dynamic::from(c as i64)));
    map.insert("text".into(), collected.final_text().into());
    map.insert("cost_usd".into(), float(collected.cost));
    map.insert("input_tokens".into(), int(collected.input_tokens));
    map.insert("output_tokens".into(), int(collected.output_tokens));
    map.insert("duration_ms".into(), (start.elapsed().as_millis() as i64).into());
    map.insert("error".into(), outcome.error.map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("output_tail".into(), collected.tail.text().into());
    map.insert("session_id".into(), collected.session_id.clone().map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("tool_calls".into(), collected.tool_calls.into());
    map
}

fn not_found(adapter: &mut Adapter, host: &SharedHost, engine: &Engine, program: &str) -> Fallible<Outcome> {
    let hint = string(&adapter.describe(host, engine)?, "install_hint")
        .map(String::from)
        .unwrap_or_else(|| format!("install '{program}' and put it on PATH"));
    Ok(Outcome {
        status: "not_found",
        exit_code: None,
        error: Some(format!(
            "{} is not installed ('{program}' is not on PATH); to install it: {hint}",
            adapter.name
        )),
    })
}

/// The outcome of a run that an interrupt stopped, or that never started after one.
fn interrupted() -> Outcome {
    Outcome {
        status: "interrupted",
        exit_code: None,
        error: Some(format!("interrupted ({})", cancel::cause())),
    }
}

/// agent::run(name, request) -> result map.
fn run(host: &SharedHost, engine: &Engine, name: &str, req: Map) -> Fallible<Map> {
    let start = Instant::now();
    let mut adapter = Adapter::load(host, engine, name)?;
    let req = request(host, req)?;
    let invocation = adapter.invocation(host, engine, &req)?;
    let mut collected = Collector::default();
    let outcome = match crate::program::find(&invocation.program, &req.cwd) {
        // After Ctrl-C the workflow is winding down: no new agent starts.
        _ if cancel::is_interrupted() => interrupted(),
        None => not_found(&mut adapter, host, engine, &invocation.program)?,
        Some(path) => supervise(host, engine, &mut adapter, &req, &invocation, &path, &mut collected)?,
    };
    host.budget.refill();
    Ok(result_map(name, outcome, &collected, start))
}

/// Runs the agent to its end and decides its status.
fn supervise(
    host: &SharedHost,
    engine: &Engine,
    adapter: &mut Adapter,
    req: &Request,
    invocation: &Invocation,
    path: &Path,
    collected: &mut Collector,
) -> Fallible<Outcome> {
    let mut command = Command::new(path);
    command.args(&invocation.args).current_dir(&invocation.cwd);
    for (key, value) in &invocation.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let stdin = invocation.stdin.as_ref().map(|s| s.as_bytes().to_vec());
    let child = match Supervised::spawn(command, stdin, Framing::Lines { max_line: MAX_LINE }) {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return not_found(adapter, host, engine, &invocation.program);
        }
        Err(e) => {
            let error = format!("cannot start {} ({}): {e}", adapter.name, path.display());
            return Ok(Outcome { status: "failed", exit_code: None, error: Some(error) });
        }
    };
    let mut view = View::new(req.mode, &adapter.name, &req.label);
    let limits = Limits { total: req.timeout, idle: req.idle, grace: GRACE };
    let ending = child.drive(limits, |stream, bytes, cut| {
        collected.tail.push(stream, bytes, cut);
        if stream == Stream::Stdout {
            if cut {
                collected.cut_lines += 1;
            } else {
                for event in adapter.parse(host, engine, bytes)? {
                    collected.event(&event, &mut view);
                }
            }
        }
        Ok::<(), Box<rhai::EvalAltResult>>(())
    });
    view.finish();
    let seconds = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    Ok(match ending? {
        Ending::Interrupted => interrupted(),
        Ending::TimedOut => Outcome {
            status: "timeout",
            exit_code: None,
            error: Some(format!("stopped after the total timeout of {}s", seconds(req.timeout))),
        },
        Ending::IdleTimedOut => Outcome {
            status: "timeout",
            exit_code: None,
            error: Some(format!("stopped after {}s without output (idle timeout)", seconds(req.idle))),
        },
        Ending::Exited(Some(0)) if !collected.result_error => {
            Outcome { status: "ok", exit_code: Some(0), error: None }
        }
        Ending::Exited(code) => {
            let primary = collected.error.clone().or_else(|| collected.tail.stderr_error()).unwrap_or_else(
                || match code {
                    Some(0) => "the agent reported an error".into(),
                    Some(c) if c > 128 => format!("killed by signal {}", c - 128),
                    Some(c) => format!("exited with code {c}"),
                    None => "ended without an exit status".into(),
                },
            );
            let explained = match code {
                Some(c) if c != 0 => adapter.explain_exit(host, engine, c, &collected.tail.text())?,
                _ => None,
            };
            let error = match explained {
                Some(explanation) if explanation != primary => format!("{explanation}: {primary}"),
                Some(explanation) => explanation,
                None => primary,
            };
            Outcome { status: "failed", exit_code: code, error: Some(error) }
        }
    })
}

/// agent::command(name, request) -> #{program, args, stdin, env, cwd}.
fn command(host: &SharedHost, engine: &Engine, name: &str, req: Map) -> Fallible<Map> {
    let mut adapter = Adapter::load(host, engine, name)?;
    let req = request(host, req)?;
    Ok(adapter.invocation(host, engine, &req)?.to_map())
}

/// agent::which(name) -> #{name, source, program, path, installed,
/// install_hint, version_args}.
fn which(host: &SharedHost, engine: &Engine, name: &str) -> Fallible<Map> {
    let mut adapter = Adapter::load(host, engine, name)?;
    let describe = adapter.describe(host, engine)?;
    let program = match string(&describe, "program") {
        Some(program) => program.to_string(),
        None => {
            let mut probe = Map::new();
            probe.insert("prompt".into(), "".into());
            let req = request(host, probe)?;
            adapter.invocation(host, engine, &req)?.program
        }
    };
    let path = crate::program::find(&program, &host.roots.project);
    let hint = string(&describe, "install_hint")
        .map(String::from)
        .unwrap_or_else(|| format!("install '{program}' and put it on PATH"));
    let version_args = match describe.get("version_args") {
        Some(v) if v.is_array() => v.clone(),
        _ => vec![Dynamic::from("--version")].into(),
    };
    let mut map = Map::new();
    map.insert("name".into(), name.into());
    map.insert("source".into(), adapter.layer.to_string().into());
    map.insert("program".into(), program.into());
    map.insert("installed".into(), path.is_some().into());
    map.insert("path".into(), path.map_or(Dynamic::UNIT, |p| p.display().to_string().into()));
    map.insert("install_hint".into(), hint.into());
    map.insert("version_args".into(), version_args);
    Ok(map)
}

/// Every visible adapter name, sorted.
fn list(host: &SharedHost) -> Vec<String> {
    host.lookup
        .list(Kind::Script)
        .into_keys()
        .filter_map(|name| name.strip_prefix("agents/").filter(|n| !n.contains('/')).map(str::to_string))
        .collect()
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    m.set_native_fn("run", move |ctx: rhai::NativeCallContext, name: &str, req: Map| {
        run(&h, ctx.engine(), name, req).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("command", move |ctx: rhai::NativeCallContext, name: &str, req: Map| {
        command(&h, ctx.engine(), name, req).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("which", move |ctx: rhai::NativeCallContext, name: &str| {
        which(&h, ctx.engine(), name).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("list", move || -> Fallible<Array> {
        Ok(list(&h).into_iter().map(Dynamic::from).collect())
    });
    m
}
