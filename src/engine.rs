//! The one Rhai engine factory, used by the binary and by every test, and the
//! code that loads, compiles and runs a script.
//!
//! Limits are always on, bundled scripts included: call depth, expression
//! depth, the memory held in big blocks (`memory`), and an operation budget
//! between blocking calls (so a busy loop ends with an error while a long
//! `watch` that sleeps between cycles does not). `eval` is disabled and
//! variables are strict.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, Result};
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, ModuleResolver, Position, Scope, AST};

use crate::cancel;
use crate::error::{HostError, Interrupted, ScriptExit, UsageError};
use crate::lookup::{Found, Kind, Layer, Lookup};
use crate::paths::Roots;
use crate::trust::{Status, Trust};

/// Operations a script may run without calling a blocking primitive, unless
/// `ALOOP_MAX_OPERATIONS` says otherwise.
const DEFAULT_OPERATION_BUDGET: u64 = 50_000_000;
/// Operations a script may still run after Ctrl-C, to record what happened.
const OPERATIONS_AFTER_INTERRUPT: u64 = 20_000_000;
/// How many operations pass between two looks at Ctrl-C and the budget.
const PROGRESS_EVERY: u64 = 256;
/// MiB a run may hold in big blocks (strings, lists, file contents), unless
/// `ALOOP_MAX_MEMORY_MB` says otherwise.
const DEFAULT_MEMORY_BUDGET_MB: u64 = 1024;

/// A limit from the environment, or `default` when it is unset or empty.
fn limit_from_env(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map_err(|_| {
            UsageError(format!("{name}='{text}' is not a whole number (leave it unset for {default})")).into()
        }),
        _ => Ok(default),
    }
}

/// What stops a script that holds more memory than its budget.
#[derive(Debug, Clone)]
struct OverMemory;

/// Everything the primitives share for one run of `aloop`.
pub struct Host {
    pub roots: Roots,
    pub lookup: Lookup,
    pub trust: Trust,
    /// Whether stdin and stderr are terminals (confirmations and live views).
    pub interactive: bool,
    pub version: &'static str,
    pub templates: RefCell<crate::host::tpl::Templates>,
    /// Script sources by origin, for showing the offending line of an error.
    sources: RefCell<HashMap<String, Rc<str>>>,
    /// Compiled scripts by name, so each is compiled once per run.
    compiled: RefCell<HashMap<String, Rc<AST>>>,
    modules: RefCell<HashMap<String, rhai::Shared<Module>>>,
    last_operations: Cell<u64>,
    budget: u64,
    budget_start: Cell<u64>,
    /// Bytes the process may hold in big blocks (see `memory`).
    memory_budget: usize,
    interrupted_at: Cell<Option<u64>>,
}

pub type SharedHost = Rc<Host>;

impl Host {
    /// Fails when a limit set in the environment is not a whole number.
    pub fn new(roots: Roots, interactive: bool) -> Result<SharedHost> {
        let lookup = Lookup::new(&roots.loop_dir(), &roots.home);
        let trust = Trust::new(&roots.home);
        let budget = limit_from_env("ALOOP_MAX_OPERATIONS", DEFAULT_OPERATION_BUDGET)?;
        let memory_mb = limit_from_env("ALOOP_MAX_MEMORY_MB", DEFAULT_MEMORY_BUDGET_MB)?;
        Ok(Rc::new(Host {
            roots,
            lookup,
            trust,
            interactive,
            version: env!("CARGO_PKG_VERSION"),
            templates: RefCell::new(crate::host::tpl::Templates::default()),
            sources: RefCell::default(),
            compiled: RefCell::default(),
            modules: RefCell::default(),
            last_operations: Cell::new(0),
            budget,
            budget_start: Cell::new(0),
            memory_budget: usize::try_from(memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
            interrupted_at: Cell::new(None),
        }))
    }

    /// Starts a new operation budget; called by every blocking primitive.
    pub fn refill_budget(&self) {
        self.budget_start.set(self.last_operations.get());
    }

    /// Runs `f`, which calls back into the engine (an agent adapter's
    /// functions called from inside a primitive), with its own operation
    /// count: nested calls start counting from zero, so the outer script's
    /// count is saved and restored around them.
    pub fn nested<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved = (self.last_operations.get(), self.budget_start.get(), self.interrupted_at.get());
        self.last_operations.set(0);
        self.budget_start.set(0);
        self.interrupted_at.set(None);
        let result = f();
        self.last_operations.set(saved.0);
        self.budget_start.set(saved.1);
        self.interrupted_at.set(saved.2);
        result
    }

    /// Finds a script by name and refuses repository scripts that the user has
    /// not trusted (a cloned repository must not run code without consent).
    pub fn find_script(&self, name: &str) -> Result<Found, HostError> {
        let found =
            self.lookup.find(Kind::Script, name).map_err(HostError::Other)?.ok_or_else(|| {
                HostError::Other(format!("no script named '{name}' (see `aloop script list`)"))
            })?;
        self.check_trust(&found)?;
        Ok(found)
    }

    pub fn check_trust(&self, found: &Found) -> Result<(), HostError> {
        if found.layer != Layer::Repo {
            return Ok(());
        }
        let path = found.path.as_deref().expect("repo files have a path");
        let status = self.trust.status(path, &found.text).map_err(|e| HostError::Other(format!("{e:#}")))?;
        match status {
            Status::Trusted => Ok(()),
            other => Err(HostError::Other(format!(
                "refusing to run {} ({other}): repository scripts run only with your consent; \
                 review it, then run `aloop trust`",
                path.display()
            ))),
        }
    }

    /// Compiles a script once per run; `origin` names it in error messages.
    /// A top-level script (`as_module` false) also gets the `global::ARGS`
    /// and `global::CTX` constants.
    pub fn compile(
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
    pub fn compile_module(&self, engine: &Engine, found: &Found) -> Result<Rc<AST>> {
        self.compile(
            engine,
            &format!("module:{}", found.name),
            &found.origin(Kind::Script),
            &found.text,
            true,
        )
    }

    /// `origin:line:col: message` followed by the source line and a caret.
    pub fn format_position(&self, origin: &str, pos: Position, message: &str) -> String {
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

    /// Turns a script failure into the error `main` reports.
    pub fn script_error(&self, origin: &str, err: &EvalAltResult) -> anyhow::Error {
        let mut origin = origin.to_string();
        let mut err = err;
        let mut calls = Vec::new();
        loop {
            match err {
                EvalAltResult::ErrorInFunctionCall(name, source, inner, pos) => {
                    calls.push(self.format_position(&origin, *pos, &format!("in call to '{name}'")));
                    if !source.is_empty() {
                        origin = source.clone();
                    }
                    err = inner;
                }
                EvalAltResult::ErrorInModule(path, inner, pos) => {
                    calls.push(self.format_position(&origin, *pos, &format!("in module '{path}'")));
                    if let Some(found) = self.lookup.find(Kind::Script, path).ok().flatten() {
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
            EvalAltResult::ErrorTerminated(token, _) if token.is::<OverMemory>() => format!(
                "the script held more than {} MiB in strings and lists (one growing without end?); \
                 ALOOP_MAX_MEMORY_MB raises the limit",
                self.memory_budget / (1024 * 1024)
            ),
            EvalAltResult::ErrorTerminated(..) => format!(
                "the script ran {} operations without waiting on anything (an endless loop?); \
                 ALOOP_MAX_OPERATIONS raises the limit",
                self.budget
            ),
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
pub struct ExitRequest {
    pub code: i32,
    pub message: String,
}

impl ExitRequest {
    /// The request a value carries: Rhai hands the exit value back as the
    /// result of a whole run or function call.
    pub fn from_value(value: &Dynamic) -> Option<ScriptExit> {
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
pub fn globals_scope(args: Map, ctx: Map) -> Scope<'static> {
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

/// Builds the engine with its limits, primitives and module resolver.
pub fn new_engine(host: &SharedHost) -> Engine {
    // The standard package is registered eagerly. Its lazy form looks each
    // function up in the manifests on first use, but that first use repeats on
    // every call into the engine from Rust (each `call_fn` starts with empty
    // caches): an agent adapter's `parse`, called once per line, ran several
    // times slower (`cargo bench -- stream`), while cold start measured the
    // same either way (`cargo bench -- start`). Print, debug and modules are
    // set below.
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    // No string interning: past its cap Rhai's interner rescans the whole
    // cache for every new interpolated string, a large part of checking a
    // 10,000-story prd.json (BENCHMARKS.md). No data size limits either:
    // with any of them set, Rhai walks a whole value after each change to it,
    // so marking one story of 10,000 cost a millisecond. Files are capped
    // where they are read instead (atomic::MAX_TEXT_FILE), and the operation
    // budget below bounds how long a script runs.
    engine
        .set_max_strings_interned(0)
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 32)
        .set_strict_variables(true)
        .disable_symbol("eval");
    let progress_host = Rc::downgrade(host);
    let memory_budget = host.memory_budget;
    engine.on_progress(move |ops| {
        // Memory is looked at after every operation: a string that doubles
        // each time needs only a few dozen to take gigabytes.
        if crate::memory::big_bytes() > memory_budget {
            return Some(Dynamic::from(OverMemory));
        }
        // Looking every 256th operation is soon enough for Ctrl-C and the
        // budget, and looking at every one cost a tenth of `aloop status`.
        if ops % PROGRESS_EVERY != 0 {
            return None;
        }
        let host = progress_host.upgrade()?;
        host.last_operations.set(ops);
        if cancel::is_interrupted() {
            let since = *host.interrupted_at.get().get_or_insert(ops);
            host.interrupted_at.set(Some(since));
            if ops.saturating_sub(since) > OPERATIONS_AFTER_INTERRUPT {
                return Some(Dynamic::UNIT);
            }
        }
        (ops.saturating_sub(host.budget_start.get()) > host.budget).then_some(Dynamic::UNIT)
    });
    engine.on_print(crate::host::ui::print_line);
    engine.on_debug(|text, source, pos| eprintln!("[debug] {}:{pos}: {text}", source.unwrap_or("script")));
    engine.set_module_resolver(LookupResolver { host: Rc::downgrade(host) });
    crate::host::register(&mut engine, host);
    engine
}

/// Resolves `import "lib/x" as x;` through the same lookup and trust rules as
/// top-level scripts.
struct LookupResolver {
    host: std::rc::Weak<Host>,
}

impl ModuleResolver for LookupResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<Module>, Box<EvalAltResult>> {
        let host = self.host.upgrade().expect("host outlives the engine");
        if let Some(module) = host.modules.borrow().get(path) {
            return Ok(module.clone());
        }
        let runtime = |msg: String| Box::new(EvalAltResult::ErrorRuntime(msg.into(), pos));
        let found = host.find_script(path).map_err(|e| runtime(e.to_string()))?;
        let ast = host.compile_module(engine, &found).map_err(|e| runtime(format!("{e:#}")))?;
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
        let module: rhai::Shared<Module> = module.into();
        host.modules.borrow_mut().insert(path.to_string(), module.clone());
        Ok(module)
    }
}

/// A script ready to run: where it came from and its text.
pub struct ScriptSource {
    pub origin: String,
    pub key: String,
    pub text: String,
}

impl ScriptSource {
    pub fn from_found(found: &Found) -> Self {
        Self {
            origin: found.origin(Kind::Script),
            key: format!("script:{}", found.name),
            text: found.text.to_string(),
        }
    }

    /// A file the user named on the command line: their own choice, so it
    /// runs without a trust check.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::atomic::read_text(path)?;
        Ok(Self { origin: path.display().to_string(), key: format!("file:{}", path.display()), text })
    }
}

/// Runs a script with `ARGS` and returns the process exit code.
pub fn run_script(host: &SharedHost, script: &ScriptSource, args: Map) -> Result<i32> {
    let engine = new_engine(host);
    let ast = host.compile(&engine, &script.key, &script.origin, &script.text, false)?;
    let mut scope = globals_scope(args, context_map(host));
    host.refill_budget();
    // Evaluated rather than run: Rhai ends an `exit` by returning its value.
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
    match result {
        Ok(_) if cancel::is_interrupted() => Err(Interrupted.into()),
        Ok(value) => match ExitRequest::from_value(&value) {
            Some(exit) if exit.message.is_empty() => Ok(exit.code),
            Some(exit) => Err(exit.into()),
            None => Ok(0),
        },
        // Whatever the script was doing when it stopped, the person pressed Ctrl-C.
        Err(_) if cancel::is_interrupted() => Err(Interrupted.into()),
        Err(err) => {
            let err = host.script_error(&script.origin, &err);
            match err.downcast_ref::<ScriptExit>() {
                Some(exit) if exit.message.is_empty() => Ok(exit.code),
                _ => Err(err),
            }
        }
    }
}

/// `CTX`: facts about this run that scripts need.
pub fn context_map(host: &Host) -> Map {
    let path = |p: &PathBuf| Dynamic::from(p.display().to_string());
    let mut ctx = Map::new();
    ctx.insert("project_root".into(), path(&host.roots.project));
    ctx.insert("loop_dir".into(), path(&host.roots.loop_dir()));
    ctx.insert("home".into(), path(&host.roots.home));
    ctx.insert("version".into(), host.version.into());
    ctx.insert("interactive".into(), host.interactive.into());
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "aloop".into());
    ctx.insert("exe".into(), exe.into());
    ctx
}
