//! A check of the partials a template includes, before it is rendered:
//! handlebars expands `{{> name}}` by recursing, with no limit of its own,
//! so a partial that includes itself (directly, through another, or as an
//! inline partial) would recurse until the stack overflows and aborts
//! aloop. Every include chain is followed here instead, and a loop or a
//! chain deeper than `MAX_DEPTH` is an error naming the template.

use std::collections::HashMap;

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Template};

/// Deepest chain of partials within partials that a template may have.
pub(crate) const MAX_DEPTH: usize = 32;

/// The partial block handlebars passes into a partial; it renders the
/// caller's content, not a partial of its own.
const PARTIAL_BLOCK: &str = "@partial-block";

/// Fails when `template` (registered as `origin`) includes a partial that
/// includes itself, nests partials deeper than `MAX_DEPTH`, or names a
/// partial by an expression that cannot be followed before rendering.
pub(crate) fn check(origin: &str, template: &Template, registry: &Handlebars<'_>) -> Result<(), String> {
    let mut inline = HashMap::new();
    collect_inline(template, &mut inline);
    let mut walk = Walk { origin, inline, registry, chain: vec![origin.to_string()] };
    walk.elements(template)
}

struct Walk<'a> {
    origin: &'a str,
    /// The inline partials (`{{#*inline "name"}}`) the template defines.
    inline: HashMap<String, &'a Template>,
    registry: &'a Handlebars<'a>,
    /// The templates being expanded, outermost first.
    chain: Vec<String>,
}

impl<'a> Walk<'a> {
    fn elements(&mut self, template: &'a Template) -> Result<(), String> {
        for element in &template.elements {
            match element {
                TemplateElement::PartialExpression(partial) | TemplateElement::PartialBlock(partial) => {
                    self.partial(&partial.name)?;
                    if let Some(block) = &partial.template {
                        self.elements(block)?;
                    }
                }
                TemplateElement::HelperBlock(helper) => {
                    for body in [&helper.template, &helper.inverse].into_iter().flatten() {
                        self.elements(body)?;
                    }
                }
                // An inline partial's body is followed where it is included.
                TemplateElement::DecoratorBlock(decorator) if !is_inline(&decorator.name) => {
                    if let Some(body) = &decorator.template {
                        self.elements(body)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn partial(&mut self, name: &Parameter) -> Result<(), String> {
        let name = match name {
            Parameter::Literal(serde_json::Value::String(text)) => text.as_str(),
            other => other.as_name().ok_or_else(|| {
                format!(
                    "{}: a partial's name must be written out (such as {{{{> header}}}}), \
                     not computed, so that it can be checked before rendering",
                    self.origin
                )
            })?,
        };
        if name == PARTIAL_BLOCK {
            return Ok(());
        }
        if self.chain.iter().any(|outer| outer == name) {
            return Err(format!(
                "{}: the partial '{name}' includes itself ({} > {name})",
                self.origin,
                self.chain.join(" > ")
            ));
        }
        if self.chain.len() > MAX_DEPTH {
            return Err(format!(
                "{}: partials are nested more than {MAX_DEPTH} deep ({} > {name})",
                self.origin,
                self.chain.join(" > ")
            ));
        }
        let body = self.inline.get(name).copied().or_else(|| self.registry.get_template(name));
        if let Some(body) = body {
            self.chain.push(name.to_string());
            self.elements(body)?;
            self.chain.pop();
        }
        Ok(())
    }
}

fn is_inline(name: &Parameter) -> bool {
    name.as_name() == Some("inline")
}

/// Every `{{#*inline "name"}}...{{/inline}}` in a template, at any depth.
fn collect_inline<'a>(template: &'a Template, out: &mut HashMap<String, &'a Template>) {
    for element in &template.elements {
        let bodies: Vec<&Template> = match element {
            TemplateElement::DecoratorBlock(decorator) => {
                if let (true, Some(body)) = (is_inline(&decorator.name), &decorator.template) {
                    if let Some(serde_json::Value::String(name)) = decorator.params.first().and_then(literal)
                    {
                        out.insert(name.clone(), body);
                    }
                }
                decorator.template.iter().collect()
            }
            TemplateElement::PartialBlock(partial) => partial.template.iter().collect(),
            TemplateElement::HelperBlock(helper) => {
                [&helper.template, &helper.inverse].into_iter().flatten().collect()
            }
            _ => Vec::new(),
        };
        for body in bodies {
            collect_inline(body, out);
        }
    }
}

fn literal(parameter: &Parameter) -> Option<&serde_json::Value> {
    match parameter {
        Parameter::Literal(value) => Some(value),
        _ => None,
    }
}
