//! The script API: one module per namespace, registered once by the engine
//! factory. Every fallible function raises a script error; the engine adds
//! the script path and line:col of the call.

use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, Position};

use crate::context::SharedHost;
use crate::scripts::ExitRequest;

/// Registers a primitive in a module. Errors it raises are placed at the
/// script's call site (Rhai leaves namespaced native calls without one).
macro_rules! primitive {
    ($module:expr, $name:expr, || $body:expr) => {
        $module.set_native_fn($name, move |ctx: rhai::NativeCallContext| {
            // A closure so that `?` in the body returns from the body only.
            #[allow(clippy::redundant_closure_call)]
            let result: $crate::host::Fallible<_> = (|| $body)();
            result.map_err(|e| $crate::host::at(&ctx, e))
        })
    };
    ($module:expr, $name:expr, |$($arg:ident : $ty:ty),*| $body:expr) => {
        $module.set_native_fn($name, move |ctx: rhai::NativeCallContext, $($arg: $ty),*| {
            // A closure so that `?` in the body returns from the body only.
            #[allow(clippy::redundant_closure_call)]
            let result: $crate::host::Fallible<_> = (|| $body)();
            result.map_err(|e| $crate::host::at(&ctx, e))
        })
    };
}

pub(crate) mod agent;
pub(crate) mod bundle;
pub(crate) mod fs;
pub(crate) mod git;
pub mod json;
pub(crate) mod proc;
pub(crate) mod time;
pub mod tpl;
pub(crate) mod trust;
pub(crate) mod ui;

/// The error type of every primitive.
pub(crate) type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// Gives an error without a position the position of the call.
pub(crate) fn at(ctx: &rhai::NativeCallContext, mut err: Box<EvalAltResult>) -> Box<EvalAltResult> {
    if err.position().is_none() {
        err.set_position(ctx.call_position());
    }
    err
}

/// A runtime error raised at the script's call site.
pub(crate) fn fail<T>(message: impl std::fmt::Display) -> Fallible<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(message.to_string().into(), Position::NONE)))
}

/// Turns any displayable error into a script error.
pub(crate) fn raise(err: impl std::fmt::Display) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(err.to_string().into(), Position::NONE))
}

/// Reads an optional field of an options map, with a type check that names it.
pub(crate) fn opt<T: 'static + Clone>(opts: &Map, key: &str, what: &str) -> Fallible<Option<T>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v
            .clone()
            .try_cast::<T>()
            .map(Some)
            .ok_or_else(|| raise(format!("option '{key}' must be {what}, not {}", v.type_name()))),
    }
}

/// A script's int as a float: one past 2^53 rounds, which no count or
/// number of seconds comes near.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn int_to_float(i: i64) -> f64 {
    i as f64
}

/// An int or a float, as a float.
pub(crate) fn as_number(value: &Dynamic) -> Option<f64> {
    value.as_float().ok().or_else(|| value.as_int().ok().map(int_to_float))
}

/// Reads a number of seconds (int or float) from an options map.
pub(crate) fn opt_seconds(opts: &Map, key: &str) -> Fallible<Option<std::time::Duration>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => {
            let secs = as_number(v).ok_or_else(|| {
                raise(format!("option '{key}' must be a number of seconds, not {}", v.type_name()))
            })?;
            if !(0.0..=1e9).contains(&secs) {
                return fail(format!("option '{key}' must be between 0 and 1e9 seconds, not {secs}"));
            }
            Ok(Some(std::time::Duration::from_secs_f64(secs)))
        }
    }
}

pub(crate) fn register(engine: &mut Engine, host: &SharedHost) {
    let modules: [(&str, Module); 10] = [
        ("fs", fs::module(host)),
        ("json", json::module()),
        ("tpl", tpl::module(host)),
        ("git", git::module(host)),
        ("time", time::module(host)),
        ("proc", proc::module(host)),
        ("ui", ui::module(host)),
        ("agent", agent::module(host)),
        ("bundle", bundle::module()),
        ("trust", trust::module(host)),
    ];
    for (name, module) in modules {
        engine.register_static_module(name, module.into());
    }
    engine.register_type_with_name::<fs::Lock>("Lock").register_fn("release", fs::Lock::release);
    // `list.join(sep)`: the items as text with `sep` between them (Rhai has
    // no join of its own, and every workflow builds lines and lists).
    engine.register_fn("join", |items: &mut rhai::Array, sep: &str| -> String {
        let mut out = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            out.push_str(&item.to_string());
        }
        out
    });
    // `exit(code)` ends the script with that exit code; `fail(message)` and
    // `fail(message, code)` end it with an error message (exit 1 by default).
    // Both raise Rhai's own exit, which no `try`/`catch` can swallow.
    engine.register_fn("exit", |code: i64| -> Fallible<()> { Err(exit_request(code, String::new())) });
    engine.register_fn("fail", |message: &str| -> Fallible<()> { Err(exit_request(1, message.to_string())) });
    engine.register_fn("fail", |message: &str, code: i64| -> Fallible<()> {
        Err(exit_request(code, message.to_string()))
    });
}

fn exit_request(code: i64, message: String) -> Box<EvalAltResult> {
    let code = i32::try_from(code).unwrap_or(1);
    Box::new(EvalAltResult::Exit(Dynamic::from(ExitRequest { code, message }), Position::NONE))
}
