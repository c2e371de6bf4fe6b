//! `tpl::` — handlebars templates found by lookup (`.loop/prompts`,
//! `$ALOOP_HOME/prompts`, bundled). No HTML escaping (prompts are not HTML)
//! and strict mode (a missing variable is an error, not an empty string).
//! Each template is parsed once per run and kept in one registry, and its
//! partials are checked before its first render (`partials`).

mod partials;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use handlebars::Handlebars;
use rhai::{Dynamic, Module};

use super::{json, raise, Fallible};
use crate::context::SharedHost;
use crate::lookup::Kind;

/// The registry, with the origin of each registered template.
pub struct Templates {
    registry: Handlebars<'static>,
    /// Lookup name -> origin (the key it is registered under).
    origins: HashMap<String, String>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        Self { registry, origins: HashMap::new() }
    }
}

/// `origin:line:col: reason` for a template parse error.
pub(crate) fn template_error(origin: &str, e: &handlebars::TemplateError) -> String {
    match e.pos() {
        Some((l, c)) => format!("{origin}:{l}:{c}: {}", e.reason()),
        None => format!("{origin}: {}", e.reason()),
    }
}

/// Parses a template and checks its partials, as a render would before
/// its first use (`aloop prompt check`).
pub(crate) fn check(origin: &str, text: &str) -> Result<(), String> {
    let template = handlebars::Template::compile(text).map_err(|e| template_error(origin, &e))?;
    partials::check(origin, &template, &Handlebars::new())
}

/// `origin:line:col: reason` for a render error.
fn render_error(origin: &str, e: &handlebars::RenderError) -> String {
    let origin = e.template_name.as_deref().unwrap_or(origin);
    let reason = e.reason().to_string();
    match (e.line_no, e.column_no) {
        (Some(l), Some(c)) => format!("{origin}:{l}:{c}: {reason}"),
        _ => format!("{origin}: {reason}"),
    }
}

impl Templates {
    /// Renders a template text registered under `origin`.
    ///
    /// # Panics
    /// Only if handlebars loses a template it has just registered.
    pub fn render_text(
        &mut self,
        origin: &str,
        text: &str,
        data: &serde_json::Value,
    ) -> Result<String, String> {
        if !self.registry.has_template(origin) {
            self.registry.register_template_string(origin, text).map_err(|e| template_error(origin, &e))?;
            let template = self.registry.get_template(origin).expect("just registered");
            if let Err(e) = partials::check(origin, template, &self.registry) {
                self.registry.unregister_template(origin);
                return Err(e);
            }
        }
        self.registry.render(origin, data).map_err(|e| render_error(origin, &e))
    }
}

fn render(host: &SharedHost, templates: &RefCell<Templates>, name: &str, data: &Dynamic) -> Fallible<String> {
    let data = json::from_dynamic(data)?;
    let cached = templates.borrow().origins.get(name).cloned();
    let (origin, text) = if let Some(origin) = cached {
        (origin, String::new())
    } else {
        let found =
            host.lookup.find(Kind::Prompt, name).map_err(raise)?.ok_or_else(|| {
                raise(format!("no prompt template named '{name}' (see `aloop prompt list`)"))
            })?;
        (found.origin(Kind::Prompt), found.text.into_owned())
    };
    let mut templates = templates.borrow_mut();
    templates.origins.insert(name.to_string(), origin.clone());
    templates.render_text(&origin, &text, &data).map_err(raise)
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    // One registry per engine, so each template is parsed once per run.
    let templates = Rc::new(RefCell::new(Templates::default()));
    // tpl::render(name, data): render the template `name` found by lookup.
    primitive!(m, "render", |name: &str, data: Dynamic| render(&h, &templates, name, &data));
    // tpl::render_str(text, data): render a template given as text.
    primitive!(m, "render_str", |text: &str, data: Dynamic| {
        let data = json::from_dynamic(&data)?;
        let mut templates = Templates::default();
        templates.render_text("inline template", text, &data).map_err(raise)
    });
    let h = host.clone();
    // tpl::exists(name): whether any layer has the template.
    primitive!(m, "exists", |name: &str| { Ok(h.lookup.find(Kind::Prompt, name).map_err(raise)?.is_some()) });
    let h = host.clone();
    // tpl::source(name): the layer whose copy `render` uses ("repo", "user"
    // or "bundled"), or () when no layer has it.
    primitive!(m, "source", |name: &str| {
        let found = h.lookup.find(Kind::Prompt, name).map_err(raise)?;
        Ok(found.map_or(Dynamic::UNIT, |f| f.layer.to_string().into()))
    });
    m
}
