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
//!
//! `agent::start` and `agent::wait_any` run several agents at once, each
//! supervised the same way (`running`).
//!
//! `adapter` loads the adapter and checks what its functions return,
//! `request` checks the workflow's request, `run` supervises the agent,
//! `collect` adds up its events, `live` shows them.

mod adapter;
mod collect;
mod live;
mod login;
mod request;
mod run;
mod running;
mod table;

use rhai::{Array, Dynamic, Map, Module};

use super::Fallible;
use crate::context::SharedHost;
use adapter::list;
pub(crate) use live::above_status;
use run::{command, parse, run, which};
use running::AgentRun;
use running::{start_agent, wait_any};

/// The `agent::` namespace: `run`, `start`, `wait_any`, `command`, `parse`,
/// `which` and `list`.
pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    m.set_custom_type::<AgentRun>("AgentRun");
    let h = host.clone();
    m.set_native_fn("start", move |ctx: rhai::NativeCallContext, name: &str, req: Map| {
        start_agent(&h, ctx.engine(), name, &req).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("wait_any", move |ctx: rhai::NativeCallContext, handles: Array| {
        wait_any(&h, ctx.engine(), &handles).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("run", move |ctx: rhai::NativeCallContext, name: &str, req: Map| {
        run(&h, ctx.engine(), name, &req).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("command", move |ctx: rhai::NativeCallContext, name: &str, req: Map| {
        command(&h, ctx.engine(), name, &req).map_err(|e| super::at(&ctx, e))
    });
    let h = host.clone();
    m.set_native_fn("parse", move |ctx: rhai::NativeCallContext, name: &str, lines: Array| {
        parse(&h, ctx.engine(), name, &lines).map_err(|e| super::at(&ctx, e))
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
