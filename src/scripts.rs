//! Compiling scripts once per run, and turning their failures into the
//! `origin:line:col: message` errors `main` reports, with the offending line
//! and a caret.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, Result};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, Position, Scope, AST};

use crate::budget::Budget;
use crate::cancel;
use crate::error::{Interrupted, ScriptExit};
use crate::lookup::{Found, Kind, Lookup};

/// The compiled scripts and modules of one run, and their sources.
#[derive(Default)]
pub(crate) struct Scripts {
    /// Script sources by origin, for showing the offending line of an error.
    sources: RefCell<HashMap<String, Rc<str>>>,
    /// Compiled scripts by key, so each is compiled once per run.
    compiled: RefCell<HashMap<String, Rc<AST>>>,
    /// Evaluated modules by import path.
    modules: RefCell<HashMap<String, rhai::Shared<Module>>>,
}

impl Scripts {
    /// Compiles a script once per run; `origin` names it in error messages.
    /// A top-level script (`as_module` false) also gets the `global::ARGS`
    /// and `global::CTX` constants.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        key: &str,
        origin: &str,
        text: &str,
        as_module: bool,
    ) -> Result<Rc<AST>> {
        if let Some(ast) = self.compiled.borrow().get(key) {
            return Ok(ast.clone());
        }
        self.sources.borrow_mut().insert(origin.to_string(), Rc::from(text));
        let mut ast = engine
            .compile_with_scope(&compile_scope(), text)
            .map_err(|e| anyhow!(self.format_position(origin, e.position(), &e.err_type().to_string())))?;
        ast.set_source(origin);
        if as_module {
            let ast = Rc::new(ast);
            self.compiled.borrow_mut().insert(key.to_string(), ast.clone());
            return Ok(ast);
        }
        // Re-declares ARGS and CTX as script constants so that the script's
        // own functions can read them as `global::ARGS` and `global::CTX`.
        let prelude = engine
            .compile_with_scope(&compile_scope(), "const ARGS = ARGS; const CTX = CTX;")
            .expect("the prelude compiles");
        let ast = Rc::new(prelude.merge(&ast));
        self.compiled.borrow_mut().insert(key.to_string(), ast.clone());
        Ok(ast)
    }

    /// Compiles a script found by lookup as a module (for `import`).
    pub(crate) fn compile_module(&self, engine: &Engine, found: &Found) -> Result<Rc<AST>> {
        self.compile(
            engine,
            &format!("module:{}", found.name),
            &found.origin(Kind::Script),
            &found.text,
            true,
        )
    }

    /// The module imported as `path` earlier in this run.
    pub(crate) fn module(&self, path: &str) -> Option<rhai::Shared<Module>> {
        self.modules.borrow().get(path).cloned()
    }

    /// Keeps an evaluated module for the next import of `path`.
    pub(crate) fn keep_module(&self, path: &str, module: rhai::Shared<Module>) {
        self.modules.borrow_mut().insert(path.to_string(), module);
    }

    /// `origin:line:col: message` followed by the source line and a caret.
    pub(crate) fn format_position(&self, origin: &str, pos: Position, message: &str) -> String {
        let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
            return format!("{origin}: {message}");
        };
        let mut out = format!("{origin}:{line}:{col}: {message}");
        if let Some(text) = self.sources.borrow().get(origin) {
            if let Some(src) = text.lines().nth(line - 1) {
                let gutter = line.to_string();
                out.push_str(&format!(
                    "\n {gutter} | {src}\n {} | {}^",
                    " ".repeat(gutter.len()),
                    " ".repeat(col.saturating_sub(1))
                ));
            }
        }
        out
    }

    /// Turns a script failure into the error `main` reports: `lookup` names
    /// the modules in the call chain, `budget` explains a stopped script.
    pub(crate) fn script_error(
        &self,
        origin: &str,
        err: &EvalAltResult,
        lookup: &Lookup,
        budget: &Budget,
    ) -> anyhow::Error {
        let mut origin = origin.to_string();
        let mut err = err;
        let mut calls = Vec::new();
        loop {
            match err {
                EvalAltResult::ErrorInFunctionCall(name, source, inner, pos) => {
                    calls.push(self.format_position(&origin, *pos, &format!("in call to '{name}'")));
                    if !source.is_empty() {
                        origin.clone_from(source);
                    }
                    err = inner;
                }
                EvalAltResult::ErrorInModule(path, inner, pos) => {
                    calls.push(self.format_position(&origin, *pos, &format!("in module '{path}'")));
                    if let Some(found) = lookup.find(Kind::Script, path).ok().flatten() {
                        origin = found.origin(Kind::Script);
                    }
                    err = inner;
                }
                _ => break,
            }
        }
        if let EvalAltResult::Exit(value, _) = err {
            if let Some(exit) = ExitRequest::from_value(value) {
                return exit.into();
            }
        }
        if let EvalAltResult::ErrorTerminated(..) = err {
            if cancel::is_interrupted() {
                return Interrupted.into();
            }
        }
        let message = match err {
            EvalAltResult::ErrorRuntime(value, _) => runtime_message(value),
            EvalAltResult::ErrorTerminated(token, _) => budget.exceeded(token),
            other => strip_position(&other.unwrap_inner().to_string()),
        };
        let mut text = self.format_position(&origin, err.position(), &message);
        for call in calls.iter().rev() {
            text.push_str(&format!("\n  called from {call}"));
        }
        anyhow!(text)
    }
}

/// What `exit(code)` and `fail(message, code)` throw, as the value of
/// Rhai's uncatchable exit.
#[derive(Debug, Clone)]
pub(crate) struct ExitRequest {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl ExitRequest {
    /// The request a value carries: Rhai hands the exit value back as the
    /// result of a whole run or function call.
    pub(crate) fn from_value(value: &Dynamic) -> Option<ScriptExit> {
        let exit = value.read_lock::<ExitRequest>()?;
        Some(ScriptExit { code: exit.code, message: exit.message.clone() })
    }
}

/// Rhai appends " (line L, position P)" to some messages; the location is
/// already shown in front of the message.
fn strip_position(message: &str) -> String {
    match message.rfind(" (line ") {
        Some(i) if message.ends_with(')') => message[..i].to_string(),
        _ => message.to_string(),
    }
}

fn runtime_message(value: &Dynamic) -> String {
    if let Some(map) = value.read_lock::<Map>() {
        if let Some(message) = map.get("message") {
            return message.to_string();
        }
    }
    value.to_string()
}

/// The scope every script starts with: the `ARGS` and `CTX` constants.
pub(crate) fn globals_scope(args: Map, ctx: Map) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant("ARGS", args);
    scope.push_constant("CTX", ctx);
    scope
}

/// The scope scripts are compiled against: the same names, declared as plain
/// variables so that strict mode accepts them but the optimizer does not fold
/// in their compile-time (empty) values.
fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push("ARGS", Map::new());
    scope.push("CTX", Map::new());
    scope
}
