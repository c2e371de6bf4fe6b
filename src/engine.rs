//! The one Rhai engine factory, used by the binary and by every test, and
//! running a script from start to end.
//!
//! Limits are always on, bundled scripts included: call depth, expression
//! depth, and the operation and memory budget (`budget`). `eval` is disabled
//! and variables are strict.

use std::path::Path;
use std::rc::Rc;

use anyhow::Result;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, ModuleResolver, Position, Scope};

use crate::cancel;
use crate::context::{Host, SharedHost};
use crate::error::{Interrupted, ScriptExit};
use crate::lookup::{Found, Kind};
use crate::scripts::{globals_scope, ExitRequest};

/// Builds the engine with its limits, primitives and module resolver.
pub(crate) fn new_engine(host: &SharedHost) -> Engine {
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
    // where they are read instead (files::read::MAX_TEXT_FILE), and the operation
    // budget below bounds how long a script runs.
    engine
        .set_max_strings_interned(0)
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 32)
        .set_strict_variables(true)
        .disable_symbol("eval");
    host.budget.enforce(&mut engine);
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
        if let Some(module) = host.scripts.module(path) {
            return Ok(module);
        }
        let runtime = |msg: String| Box::new(EvalAltResult::ErrorRuntime(msg.into(), pos));
        let found = host.find_script(path).map_err(|e| runtime(e.to_string()))?;
        let ast = host.scripts.compile_module(engine, &found).map_err(|e| runtime(format!("{e:#}")))?;
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
        let module: rhai::Shared<Module> = module.into();
        host.scripts.keep_module(path, module.clone());
        Ok(module)
    }
}

/// A script ready to run: where it came from and its text.
pub(crate) struct ScriptSource {
    pub(crate) origin: String,
    pub(crate) key: String,
    pub(crate) text: String,
}

impl ScriptSource {
    pub(crate) fn from_found(found: &Found) -> Self {
        Self {
            origin: found.origin(Kind::Script),
            key: format!("script:{}", found.name),
            text: found.text.to_string(),
        }
    }

    /// A file the user named on the command line: their own choice, so it
    /// runs without a trust check.
    pub(crate) fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read::read_text(path)?;
        Ok(Self { origin: path.display().to_string(), key: format!("file:{}", path.display()), text })
    }
}

/// Runs a script with `ARGS` and returns the process exit code.
pub(crate) fn run_script(host: &SharedHost, script: &ScriptSource, args: Map) -> Result<i32> {
    let engine = new_engine(host);
    let ast = host.scripts.compile(&engine, &script.key, &script.origin, &script.text, false)?;
    let mut scope = globals_scope(args, host.context_map());
    host.budget.refill();
    // Evaluated rather than run: Rhai ends an `exit` by returning its value.
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
    match result {
        // Whatever the script returned or was doing when it stopped, the
        // person pressed Ctrl-C.
        _ if cancel::is_interrupted() => Err(Interrupted.into()),
        Ok(value) => match ExitRequest::from_value(&value) {
            Some(exit) if exit.message.is_empty() => Ok(exit.code),
            Some(exit) => Err(exit.into()),
            None => Ok(0),
        },
        Err(err) => {
            let err = host.script_error(&script.origin, &err);
            match err.downcast_ref::<ScriptExit>() {
                Some(exit) if exit.message.is_empty() => Ok(exit.code),
                _ => Err(err),
            }
        }
    }
}
