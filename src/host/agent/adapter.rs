//! The adapter script `agents/NAME`: loading it (with the trust check),
//! calling its functions with the nested operation budget, and checking what
//! `command(req)`, `parse(event)`, `parse_stderr(line)`, `describe()` and
//! `explain_exit` return.

use std::path::PathBuf;
use std::rc::Rc;

use rhai::{Array, CallFnOptions, Dynamic, Engine, FuncArgs, Map, Scope, AST};

use super::collect::lossy_text;
use super::request::Request;
use super::table::Table;
use crate::context::SharedHost;
use crate::host::{fail, raise, Fallible};
use crate::lookup::{Kind, Layer};
use crate::scripts::{globals_scope, ExitRequest};

/// A loaded adapter and the scope its functions run in.
pub(super) struct Adapter {
    pub(super) name: String,
    pub(super) layer: Layer,
    origin: String,
    ast: Rc<AST>,
    scope: Scope<'static>,
    /// Whether its functions can reach its top level (`global::` constants or
    /// imported modules), which then runs before each call.
    needs_top_level: bool,
    /// Whether it defines `parse_stderr(line)`.
    reads_stderr: bool,
    /// Its event table (`events()`), which maps lines without `parse`.
    table: Option<Table>,
}

impl Adapter {
    pub(super) fn load(host: &SharedHost, engine: &Engine, name: &str) -> Fallible<Self> {
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
        // its imports; without them it need not run before every call (which
        // makes `parse` cheaper per line). An `import` inside a function (an
        // indented one) runs when that function does.
        let top_level_import = found.text.lines().any(|line| line.starts_with("import"));
        let needs_top_level = found.text.contains("global::") || top_level_import;
        let reads_stderr = ast.iter_functions().any(|f| f.name == "parse_stderr" && f.params.len() == 1);
        let mut adapter = Self {
            name: name.to_string(),
            layer: found.layer,
            origin,
            ast,
            scope,
            needs_top_level,
            reads_stderr,
            table: None,
        };
        // Read once per run: then each line it maps costs no call of `parse`.
        if adapter.has("events", 0) {
            let table = adapter.call(host, engine, "events", ())?;
            adapter.table = Some(Table::new(table, &adapter.origin)?);
        }
        Ok(adapter)
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
    pub(super) fn describe(&mut self, host: &SharedHost, engine: &Engine) -> Fallible<Map> {
        if !self.has("describe", 0) {
            return Ok(Map::new());
        }
        let value = self.call(host, engine, "describe", ())?;
        value.try_cast::<Map>().ok_or_else(|| raise(format!("{}: describe() must return a map", self.origin)))
    }

    /// `command(req)`, checked, with the request's `env` merged in.
    pub(super) fn invocation(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        req: &Request,
    ) -> Fallible<Invocation> {
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
    pub(super) fn parse(&mut self, host: &SharedHost, engine: &Engine, line: &[u8]) -> Fallible<Vec<Map>> {
        let text = lossy_text(line);
        let event = if text.trim_start().starts_with('{') {
            serde_json::from_str::<crate::host::json::RhaiValue>(&text)
                .map_or_else(|_| text.as_ref().into(), |v| v.0)
        } else {
            text.as_ref().into()
        };
        if let (Some(table), Some(map)) = (&self.table, event.read_lock::<Map>()) {
            if let Ok(events) = table.map(&map) {
                return Ok(events);
            }
        }
        let value = self.call(host, engine, "parse", (event,))?;
        self.events("parse", value)
    }

    /// Hands one stderr line (as text) to `parse_stderr`, if the adapter has
    /// it: some CLIs say only there that a limit stopped them.
    pub(super) fn parse_stderr(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        line: &[u8],
    ) -> Fallible<Vec<Map>> {
        if !self.reads_stderr {
            return Ok(Vec::new());
        }
        let value = self.call(host, engine, "parse_stderr", (lossy_text(line).into_owned(),))?;
        self.events("parse_stderr", value)
    }

    /// What a parsing function returned, as a list of events.
    fn events(&self, function: &str, value: Dynamic) -> Fallible<Vec<Map>> {
        let origin = &self.origin;
        let not_event = |v: &Dynamic| {
            raise(format!(
                "{origin}: {function}() must return a map, an array of maps or (), not {}",
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
    pub(super) fn explain_exit(
        &mut self,
        host: &SharedHost,
        engine: &Engine,
        code: i32,
        tail: &str,
    ) -> Fallible<Option<String>> {
        let value = if self.has("explain_exit", 2) {
            self.call(host, engine, "explain_exit", (i64::from(code), tail.to_string()))?
        } else if self.has("explain_exit", 1) {
            self.call(host, engine, "explain_exit", (i64::from(code),))?
        } else {
            return Ok(None);
        };
        Ok(value.is_string().then(|| value.to_string()).filter(|s| !s.is_empty()))
    }
}

/// What will be run.
pub(super) struct Invocation {
    pub(super) program: String,
    pub(super) args: Vec<String>,
    pub(super) stdin: Option<String>,
    pub(super) env: Vec<(String, Option<String>)>,
    pub(super) cwd: PathBuf,
}

impl Invocation {
    pub(super) fn to_map(&self) -> Map {
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

/// Every visible adapter name, sorted.
pub(super) fn list(host: &SharedHost) -> Vec<String> {
    host.lookup
        .list(Kind::Script)
        .into_keys()
        .filter_map(|name| name.strip_prefix("agents/").filter(|n| !n.contains('/')).map(str::to_string))
        .collect()
}
