//! The host's listings: `script list`, `prompt list` and `trust`, as an
//! aligned table or (`--json`) an array of objects with the same fields.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::context::SharedHost;
use crate::error::UsageError;
use crate::host::ui;
use crate::lookup::{Kind, Layer};
use crate::manifest::{self, Manifest};
use crate::paths;
use crate::trust::Status;

/// One row of `script list` or `prompt list`.
#[derive(Serialize)]
struct Entry {
    name: String,
    /// Scripts only: "command", "adapter", "module" or "manifest".
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// The layer whose copy is used: "repo", "user" or "bundled".
    source: String,
    /// The layers whose copies it hides (for the manifest: laid over).
    overrides: Vec<String>,
    /// Scripts only: "trusted", "untrusted" or "changed since trusted".
    #[serde(skip_serializing_if = "Option::is_none")]
    trust: Option<String>,
}

impl Entry {
    fn source_text(&self) -> String {
        match (self.overrides.is_empty(), self.kind) {
            (true, _) => self.source.clone(),
            (false, Some("manifest")) => format!("{} (laid over {})", self.source, self.overrides.join(", ")),
            (false, _) => format!("{} (overrides {})", self.source, self.overrides.join(", ")),
        }
    }
}

/// `script list` and `prompt list`: each name, the layer it comes from and
/// its trust; for scripts also its kind (see `script_kind`).
pub(crate) fn list(host: &SharedHost, manifest: &Manifest, kind: Kind, json: bool) -> Result<i32> {
    let commands = manifest.scripts();
    let mut entries = Vec::new();
    for (name, layers) in host.lookup.list(kind) {
        let winner = layers[0];
        let trust = match (kind, winner) {
            (Kind::Script, Layer::Repo) => {
                let found = host.lookup.find(kind, &name).map_err(UsageError)?.expect("listed");
                Some(host.trust.status(found.path.as_deref().expect("on disk"), &found.text)?.to_string())
            }
            (Kind::Script, _) => Some(Status::Trusted.to_string()),
            (Kind::Prompt, _) => None,
        };
        entries.push(Entry {
            kind: (kind == Kind::Script).then(|| script_kind(&name, &commands)),
            name,
            source: winner.to_string(),
            overrides: layers[1..].iter().map(Layer::to_string).collect(),
            trust,
        });
    }
    if kind == Kind::Script {
        entries.push(manifest_entry(host)?);
    }
    if json {
        return print_json(&entries);
    }
    let mut headers = vec!["NAME", "SOURCE", "TRUST"];
    if kind == Kind::Script {
        headers.insert(1, "KIND");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let mut row =
                vec![e.name.clone(), e.source_text(), e.trust.clone().unwrap_or_else(|| "-".into())];
            if let Some(kind) = e.kind {
                row.insert(1, kind.to_string());
            }
            row
        })
        .collect();
    let headers: Vec<String> = headers.into_iter().map(String::from).collect();
    ui::print_line(&ui::table(&headers, &rows));
    Ok(0)
}

/// What a script is for: a "command" when commands.toml runs it, an
/// "adapter" under agents/, else a "module" that other scripts import.
fn script_kind(name: &str, commands: &BTreeSet<&str>) -> &'static str {
    if commands.contains(name) {
        "command"
    } else if name.starts_with("agents/") {
        "adapter"
    } else {
        "module"
    }
}

/// The `script list` entry of the command manifest, which is code too.
fn manifest_entry(host: &SharedHost) -> Result<Entry> {
    let copies = host.lookup.layered_file(Kind::Script, manifest::FILE_NAME)?;
    let mut layers: Vec<String> = copies.iter().rev().map(|f| f.layer.to_string()).collect();
    layers.push(Layer::Bundled.to_string());
    let trust = match copies.iter().find(|f| f.layer == Layer::Repo) {
        Some(repo) => host.trust.status(repo.path.as_deref().expect("on disk"), &repo.text)?.to_string(),
        None => Status::Trusted.to_string(),
    };
    Ok(Entry {
        name: manifest::FILE_NAME.to_string(),
        kind: Some("manifest"),
        source: layers.remove(0),
        overrides: layers,
        trust: Some(trust),
    })
}

/// One row of `aloop trust`.
#[derive(Serialize)]
struct Pinned {
    path: String,
    status: String,
}

/// `aloop trust`: pins the repository's scripts and manifest as they are
/// (`--list` only shows), `--revoke` forgets one file.
pub(crate) fn trust(host: &SharedHost, list: bool, revoke: Option<&Path>, json: bool) -> Result<i32> {
    if let Some(path) = revoke {
        let full =
            paths::canonicalize_lenient(path).with_context(|| format!("resolving {}", path.display()))?;
        if host.trust.revoke(&full)? {
            ui::message("✓", "32", &format!("{} is no longer trusted", full.display()));
        } else {
            eprintln!("{} was not trusted", full.display());
        }
        return Ok(0);
    }
    let dir = host.lookup.repo_dir(Kind::Script);
    let mut files = Vec::new();
    crate::lookup::walk(&dir, &mut files);
    // Scripts, and the command manifest that routes command words to them.
    let manifest_path = dir.join(manifest::FILE_NAME);
    files.retain(|f| f.extension().is_some_and(|e| e == "rhai") || *f == manifest_path);
    // The repository's config.json beside the scripts can name programs to
    // run (checks, hooks): scripts honour those only once it is pinned too.
    if let Some(config) = dir.parent().map(|d| d.join("config.json")).filter(|c| c.is_file()) {
        files.push(config);
    }
    files.sort();
    let mut scripts = Vec::new();
    for file in files {
        let text = crate::files::read::read_text(&file)?;
        scripts.push((file, text));
    }
    if !list {
        host.trust.trust(&scripts)?;
    }
    let mut pinned = Vec::new();
    for (path, text) in &scripts {
        pinned.push(Pinned {
            path: host.roots.display(path),
            status: host.trust.status(path, text)?.to_string(),
        });
    }
    if list {
        for path in host.trust.entries()?.keys() {
            if !scripts.iter().any(|(p, _)| p.display().to_string() == *path) {
                pinned.push(Pinned { path: path.clone(), status: Status::Trusted.to_string() });
            }
        }
    }
    if json {
        return print_json(&pinned);
    }
    if pinned.is_empty() {
        eprintln!("no repository scripts in {}", dir.display());
    } else {
        let headers = ["SCRIPT", "STATUS"].map(String::from);
        let rows: Vec<Vec<String>> = pinned.into_iter().map(|p| vec![p.path, p.status]).collect();
        ui::print_line(&ui::table(&headers, &rows));
    }
    Ok(0)
}

fn print_json(value: &impl Serialize) -> Result<i32> {
    ui::print_line(&serde_json::to_string_pretty(value)?);
    Ok(0)
}
