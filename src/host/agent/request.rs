//! The request a workflow passes to `agent::run`: its defaults filled in and
//! each field checked, with errors that name the field.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use rhai::{Array, Dynamic, ImmutableString, Map};

use super::live::Mode;
use crate::context::SharedHost;
use crate::host::{fail, opt, opt_seconds, raise, Fallible};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const DEFAULT_IDLE: Duration = Duration::from_secs(600);
const AUTONOMY: [&str; 3] = ["read-only", "edit", "full"];

/// A request with its defaults filled in and its fields checked.
pub(super) struct Request {
    /// What the adapter's `command(req)` receives.
    pub(super) map: Map,
    pub(super) cwd: PathBuf,
    pub(super) timeout: Option<Duration>,
    pub(super) idle: Option<Duration>,
    pub(super) mode: Mode,
    pub(super) label: String,
    /// What plain lines start with (`[prefix]`), instead of the agent's name.
    pub(super) prefix: Option<String>,
    pub(super) env: Map,
}

/// A zero duration means "no limit".
fn limit(value: Option<Duration>, default: Duration) -> Option<Duration> {
    Some(value.unwrap_or(default)).filter(|d| !d.is_zero())
}

pub(super) fn request(host: &SharedHost, req: &Map) -> Fallible<Request> {
    let mut map = req.clone();
    let prompt = opt::<ImmutableString>(req, "prompt", "a string")?
        .ok_or_else(|| raise("the request needs a 'prompt' (the text for the agent)"))?;
    map.insert("prompt".into(), prompt.into());
    let model = opt::<ImmutableString>(req, "model", "a string")?;
    map.insert("model".into(), model.map_or(Dynamic::UNIT, Dynamic::from));
    let autonomy = opt::<ImmutableString>(req, "autonomy", "a string")?.unwrap_or_else(|| "edit".into());
    if !AUTONOMY.contains(&autonomy.as_str()) {
        return fail(format!("autonomy must be \"read-only\", \"edit\" or \"full\", not \"{autonomy}\""));
    }
    map.insert("autonomy".into(), autonomy.into());
    let cwd = match opt::<ImmutableString>(req, "cwd", "a string")? {
        Some(dir) => host.roots.resolve(&dir).map_err(raise)?,
        None => host.roots.project.clone(),
    };
    if !cwd.is_dir() {
        return fail(format!("cwd '{}' is not a directory", cwd.display()));
    }
    map.insert("cwd".into(), cwd.display().to_string().into());
    let mut extra = Array::new();
    for (i, arg) in
        opt::<Array>(req, "extra_args", "an array of strings")?.unwrap_or_default().into_iter().enumerate()
    {
        if !arg.is_string() {
            return fail(format!("extra_args[{i}] must be a string, not {}", arg.type_name()));
        }
        extra.push(arg);
    }
    map.insert("extra_args".into(), extra.into());
    let timeout = limit(opt_seconds(req, "timeout")?, DEFAULT_TIMEOUT);
    let idle = limit(opt_seconds(req, "idle_timeout")?, DEFAULT_IDLE);
    let seconds = |d: Option<Duration>| Dynamic::from(d.map_or(0.0, |d| d.as_secs_f64()));
    map.insert("timeout".into(), seconds(timeout));
    map.insert("idle_timeout".into(), seconds(idle));
    let view = opt::<ImmutableString>(req, "view", "a string")?.unwrap_or_else(|| "auto".into());
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
    let label = opt::<ImmutableString>(req, "label", "a string")?.map(|s| s.to_string()).unwrap_or_default();
    map.insert("label".into(), label.clone().into());
    let prefix = opt::<ImmutableString>(req, "prefix", "a string")?.map(|s| s.to_string());
    map.insert("prefix".into(), prefix.clone().map_or(Dynamic::UNIT, Dynamic::from));
    let env = opt::<Map>(req, "env", "a map")?.unwrap_or_default();
    map.insert("env".into(), env.clone().into());
    Ok(Request { map, cwd, timeout, idle, mode, label, prefix, env })
}
