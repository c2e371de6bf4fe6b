//! `proc::` — run a program from an argv array (never a shell string), with
//! captured output, a timeout, and the whole process group stopped on
//! timeout or Ctrl-C.

use std::process::Command;
use std::time::Duration;

use rhai::{Array, Dynamic, Map, Module};

use super::{fail, opt, opt_seconds, raise, Fallible};
use crate::context::SharedHost;
use crate::supervise::{Ending, Framing, Limits, Stream, Supervised};

/// Output kept per stream; more is dropped and flagged as truncated.
const MAX_CAPTURE: usize = 32 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Turns a script array into argv, refusing anything that is not a string.
pub(crate) fn argv(args: &Array) -> Fallible<Vec<String>> {
    if args.is_empty() {
        return fail("the argv array is empty: it needs at least the program");
    }
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            a.clone().into_string().map_err(|t| raise(format!("argv[{i}] must be a string, not {t}")))
        })
        .collect()
}

/// `proc::quote(argv)` -> the words as one line for a POSIX shell, each
/// quoted where it needs it (`echo 'a b'`), for showing a command or writing
/// one into a crontab. A word holding a NUL byte cannot be quoted.
fn quote(args: &Array) -> Fallible<String> {
    let words = argv(args)?;
    shlex::try_join(words.iter().map(String::as_str))
        .map_err(|e| raise(format!("proc::quote: cannot quote {words:?} for a shell: {e}")))
}

/// The command for `argv` with the `cwd` and `env` options; `cwd` goes
/// through the sandbox, and a bare program name is found on the child's
/// PATH (`program::find_on`).
fn command(host: &SharedHost, argv: &[String], opts: &Map) -> Fallible<Command> {
    let cwd = match opt::<rhai::ImmutableString>(opts, "cwd", "a string")? {
        Some(dir) => host.roots.resolve(&dir).map_err(raise)?,
        None => host.roots.project.clone(),
    };
    let env = opt::<Map>(opts, "env", "a map")?.unwrap_or_default();
    let path = match env.get("PATH") {
        Some(path) if !path.is_unit() => path.to_string().into(),
        _ => std::env::var_os("PATH").unwrap_or_default(),
    };
    let program = crate::program::find_on(&argv[0], &cwd, &path)
        .ok_or_else(|| raise(format!("cannot run '{}': no such program", argv[0])))?;
    let mut command = Command::new(program);
    command.args(&argv[1..]).current_dir(cwd);
    for (key, value) in env {
        if value.is_unit() {
            command.env_remove(key.as_str());
        } else {
            command.env(key.as_str(), value.to_string());
        }
    }
    Ok(command)
}

/// `proc::run(argv, opts)` -> `#{code, stdout, stderr, timed_out, interrupted}`.
/// Options: cwd, env (a map; `()` removes a variable), stdin (text),
/// timeout (seconds, default 600), inherit (bool: the child writes straight
/// to this terminal instead of being captured, e.g. a nested aloop with its
/// live view). A program that cannot be started is an error; a program that
/// fails is a result with its code.
fn run(host: &SharedHost, args: &Array, opts: &Map) -> Fallible<Map> {
    let argv = argv(args)?;
    let command = command(host, &argv, opts)?;
    let inherit = opt::<bool>(opts, "inherit", "true or false")?.unwrap_or(false);
    let stdin = opt::<rhai::ImmutableString>(opts, "stdin", "a string")?.map(|s| s.as_bytes().to_vec());
    let timeout = opt_seconds(opts, "timeout")?.unwrap_or(DEFAULT_TIMEOUT);
    let framing = if inherit { Framing::Inherit } else { Framing::Chunks };
    let child = Supervised::spawn(command, stdin, framing)
        .map_err(|e| raise(format!("cannot run '{}': {e}", argv[0])))?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut truncated = false;
    let limits = Limits { total: Some(timeout), idle: None, grace: Duration::from_secs(2) };
    let ending = child
        .drive(limits, |stream, bytes, _| {
            let buf = if stream == Stream::Stdout { &mut stdout } else { &mut stderr };
            let room = MAX_CAPTURE.saturating_sub(buf.len());
            truncated |= bytes.len() > room;
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            Ok::<(), ()>(())
        })
        .unwrap_or(Ending::Exited(None));
    host.budget.refill();
    let mut out = Map::new();
    let code = match ending {
        Ending::Exited(code) => code.map_or(Dynamic::UNIT, |c| Dynamic::from(i64::from(c))),
        _ => Dynamic::UNIT,
    };
    out.insert("code".into(), code);
    out.insert("stdout".into(), String::from_utf8_lossy(&stdout).into_owned().into());
    out.insert("stderr".into(), String::from_utf8_lossy(&stderr).into_owned().into());
    out.insert("timed_out".into(), (ending == Ending::TimedOut).into());
    out.insert("interrupted".into(), (ending == Ending::Interrupted).into());
    out.insert("truncated".into(), truncated.into());
    Ok(out)
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    primitive!(m, "run", |args: Array| run(&h, &args, &Map::new()));
    let h = host.clone();
    primitive!(m, "run", |args: Array, opts: Map| run(&h, &args, &opts));
    primitive!(m, "quote", |args: Array| quote(&args));
    // proc::env(name) -> the value of one of aloop's environment variables, or ().
    primitive!(m, "env", |name: &str| { Ok(std::env::var(name).map_or(Dynamic::UNIT, Dynamic::from)) });
    // proc::is_root() -> whether aloop runs as root (effective user id 0),
    // which some agent CLIs refuse for their most permissive modes.
    primitive!(m, "is_root", || {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Ok(unsafe { libc::geteuid() } == 0)
    });
    // proc::which(program) -> its full path on PATH, or ().
    let h = host.clone();
    primitive!(m, "which", |program: &str| {
        let found = crate::program::find(program, &h.roots.project);
        Ok(found.map_or(Dynamic::UNIT, |p| p.display().to_string().into()))
    });
    m
}
