//! `agent::run`, `agent::command` and `agent::which`: starting the agent
//! under supervision, feeding its stdout lines to the adapter's `parse`, and
//! deciding the status of the result map.

use std::process::Command;
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, Map};

use super::adapter::Adapter;
use super::collect::{string, Collector};
use super::live::View;
use super::request::{request, Request};
use crate::cancel;
use crate::context::SharedHost;
use crate::host::Fallible;
use crate::supervise::{drive_first, Driven, Ending, Framing, Limits, Stream, Supervised};

/// Longest stdout line handed to `parse`; the rest of a longer line is
/// dropped (and the line skipped), so memory stays bounded.
const MAX_LINE: usize = 1024 * 1024;
/// Time between SIGTERM and SIGKILL when the agent is stopped.
const GRACE: Duration = Duration::from_secs(3);

/// The result map of `agent::run`.
struct Outcome {
    status: &'static str,
    exit_code: Option<i32>,
    error: Option<String>,
}

fn result_map(name: &str, outcome: Outcome, collected: &Collector, start: Instant) -> Map {
    let float = |v: Option<f64>| v.map_or(Dynamic::UNIT, Dynamic::from);
    // Token counts are whole numbers; `as` saturates anything else.
    #[allow(clippy::cast_possible_truncation)]
    let int = |v: Option<f64>| v.map_or(Dynamic::UNIT, |v| Dynamic::from(v as i64));
    let mut map = Map::new();
    map.insert("agent".into(), name.into());
    map.insert("status".into(), outcome.status.into());
    map.insert("exit_code".into(), outcome.exit_code.map_or(Dynamic::UNIT, |c| Dynamic::from(i64::from(c))));
    map.insert("text".into(), collected.final_text().into());
    map.insert("cost_usd".into(), float(collected.cost));
    map.insert("input_tokens".into(), int(collected.input_tokens));
    map.insert("output_tokens".into(), int(collected.output_tokens));
    map.insert("duration_ms".into(), i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX).into());
    map.insert("error".into(), outcome.error.map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("output_tail".into(), collected.tail.text().into());
    map.insert("session_id".into(), collected.session_id.clone().map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("tool_calls".into(), collected.tool_calls.into());
    let resets_at = collected.limit.as_ref().and_then(|(_, at)| *at);
    map.insert("resets_at".into(), resets_at.map_or(Dynamic::UNIT, Dynamic::from));
    map
}

fn not_found(adapter: &mut Adapter, host: &SharedHost, engine: &Engine, program: &str) -> Fallible<Outcome> {
    let hint = string(&adapter.describe(host, engine)?, "install_hint")
        .map_or_else(|| format!("install '{program}' and put it on PATH"), String::from);
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

/// `agent::run(name, request)` -> result map.
pub(super) fn run(host: &SharedHost, engine: &Engine, name: &str, req: &Map) -> Fallible<Map> {
    match start(host, engine, name, req)? {
        Started::Ended(result) => Ok(result),
        Started::Running(mut agent) => {
            let Running { driven, state } = &mut *agent;
            let ending = drive_first(&mut [driven], |_, stream, bytes, cut| {
                state.output(host, engine, stream, bytes, cut)
            });
            agent.state.end(host, engine, ending.map(|(_, ending)| ending))
        }
    }
}

/// An agent started by `start`: running, or ended before it could run.
pub(super) enum Started {
    Running(Box<Running>),
    Ended(Map),
}

/// A running agent: its process, and the rest.
pub(super) struct Running {
    pub(super) driven: Driven,
    pub(super) state: AgentState,
}

/// What a running agent's output has added up to, and how it is shown.
pub(super) struct AgentState {
    name: String,
    adapter: Adapter,
    req: Request,
    collected: Collector,
    view: View,
    start: Instant,
}

/// Starts the agent `name` for `req` (its adapter's command, under
/// supervision); the result map at once when it cannot run.
pub(super) fn start(host: &SharedHost, engine: &Engine, name: &str, req: &Map) -> Fallible<Started> {
    let start = Instant::now();
    let mut adapter = Adapter::load(host, engine, name)?;
    let req = request(host, req)?;
    let invocation = adapter.invocation(host, engine, &req)?;
    let ended = |outcome| Ok(Started::Ended(result_map(name, outcome, &Collector::default(), start)));
    let path = match crate::program::find(&invocation.program, &req.cwd) {
        // After Ctrl-C the workflow is winding down: no new agent starts.
        _ if cancel::is_interrupted() => return ended(interrupted()),
        None => return ended(not_found(&mut adapter, host, engine, &invocation.program)?),
        Some(path) => path,
    };
    let mut command = Command::new(&path);
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
            return ended(not_found(&mut adapter, host, engine, &invocation.program)?);
        }
        Err(e) => {
            let error = format!("cannot start {} ({}): {e}", adapter.name, path.display());
            return ended(Outcome { status: "failed", exit_code: None, error: Some(error) });
        }
    };
    let view = View::new(req.mode, &adapter.name, &req.label, req.prefix.as_deref());
    let limits = Limits { total: req.timeout, idle: req.idle, grace: GRACE };
    let state =
        AgentState { name: name.to_string(), adapter, req, collected: Collector::default(), view, start };
    Ok(Started::Running(Box::new(Running { driven: child.start_driving(limits), state })))
}

impl AgentState {
    /// One piece of the agent's output: into the tail, through the adapter's
    /// `parse`, and its events into the result and the view.
    pub(super) fn output(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        stream: Stream,
        bytes: &[u8],
        cut: bool,
    ) -> Fallible<()> {
        let Self { adapter, collected, view, .. } = self;
        collected.tail.push(stream, bytes, cut);
        let events = match stream {
            _ if cut => {
                collected.cut_lines += i64::from(stream == Stream::Stdout);
                Vec::new()
            }
            Stream::Stdout => adapter.parse(host, engine, bytes)?,
            Stream::Stderr => adapter.parse_stderr(host, engine, bytes)?,
        };
        for event in events {
            collected.event(&event, view);
        }
        Ok(())
    }

    /// The result map once the agent has ended (or driving it failed).
    pub(super) fn end(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        ending: Fallible<Ending>,
    ) -> Fallible<Map> {
        self.view.finish();
        let ending = ending?;
        let outcome = self.outcome(host, engine, ending)?;
        host.budget.refill();
        Ok(result_map(&self.name, outcome, &self.collected, self.start))
    }

    /// Decides the status of the ended agent.
    fn outcome(&mut self, host: &SharedHost, engine: &Engine, ending: Ending) -> Fallible<Outcome> {
        let (collected, req) = (&self.collected, &self.req);
        if let (Some((message, _)), Ending::Exited(code)) = (&collected.limit, &ending) {
            // A limit outranks how the process ended: the step is to be repeated.
            return Ok(Outcome { status: "limited", exit_code: *code, error: Some(message.clone()) });
        }
        let seconds = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        Ok(match ending {
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
                let primary =
                    collected.error.clone().or_else(|| collected.tail.stderr_error()).unwrap_or_else(|| {
                        match code {
                            Some(0) => "the agent reported an error".into(),
                            Some(c) if c > 128 => format!("killed by signal {}", c - 128),
                            Some(c) => format!("exited with code {c}"),
                            None => "ended without an exit status".into(),
                        }
                    });
                let tail = collected.tail.text();
                let explained = match code {
                    Some(c) if c != 0 => self.adapter.explain_exit(host, engine, c, &tail)?,
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
}

/// `agent::command(name, request)` -> `#{program, args, stdin, env, cwd}`.
pub(super) fn command(host: &SharedHost, engine: &Engine, name: &str, req: &Map) -> Fallible<Map> {
    let mut adapter = Adapter::load(host, engine, name)?;
    let req = request(host, req)?;
    Ok(adapter.invocation(host, engine, &req)?.to_map())
}

/// `agent::parse(name, lines)` -> for each stdout line, the events the
/// adapter makes of it (its event table, else its `parse`), as during a run.
pub(super) fn parse(host: &SharedHost, engine: &Engine, name: &str, lines: &Array) -> Fallible<Array> {
    let mut adapter = Adapter::load(host, engine, name)?;
    let mut out = Array::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.read_lock::<rhai::ImmutableString>().ok_or_else(|| {
            crate::host::raise(format!("agent::parse: lines[{i}] is {}, not a string", line.type_name()))
        })?;
        let events = adapter.parse(host, engine, line.as_bytes())?;
        out.push(events.into_iter().map(Dynamic::from).collect::<Array>().into());
    }
    host.budget.refill();
    Ok(out)
}

/// `agent::which(name)` -> `#{name, source, program, path, installed,
/// install_hint, version_args, signed_in}`.
pub(super) fn which(host: &SharedHost, engine: &Engine, name: &str) -> Fallible<Map> {
    let mut adapter = Adapter::load(host, engine, name)?;
    let describe = adapter.describe(host, engine)?;
    let program = if let Some(program) = string(&describe, "program") {
        program.to_string()
    } else {
        let mut probe = Map::new();
        probe.insert("prompt".into(), "".into());
        let req = request(host, &probe)?;
        adapter.invocation(host, engine, &req)?.program
    };
    let path = crate::program::find(&program, &host.roots.project);
    let hint = string(&describe, "install_hint")
        .map_or_else(|| format!("install '{program}' and put it on PATH"), String::from);
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
    map.insert("signed_in".into(), super::login::signed_in(&describe));
    Ok(map)
}
