//! Parses the command line, builds the host, and runs the selected command.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches};
use rhai::Map;

use crate::cli::{Cli, FileAction, HostCommand, HOST_WORDS};
use crate::context::{Host, SharedHost};
use crate::engine::{self, ScriptSource};
use crate::error::UsageError;
use crate::lookup::{Kind, Layer};
use crate::manifest::{self, Manifest};
use crate::paths::{self, beneath, Access, Roots};
use crate::trust::Status;

/// Runs aloop with these arguments and returns the exit code.
pub fn run(argv: Vec<OsString>) -> Result<i32> {
    let start_dir = start_dir(&argv)?;
    let project = paths::find_project_root(&start_dir);
    let home = paths::aloop_home();
    let roots = Roots::new(&project, &home).with_context(|| format!("opening {}", project.display()))?;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let host = Host::new(roots, interactive)?;
    let (first_word, wants_help) = first_word(&argv);
    // The host's own commands (`trust` above all) need no warning that the
    // repository's manifest is not trusted yet: they never use it.
    let host_command = first_word.as_deref().is_none_or(|word| HOST_WORDS.contains(&word));
    let manifest = match Manifest::load(&host.lookup, &host.trust, &HOST_WORDS, !host_command || wants_help) {
        Ok(manifest) => manifest,
        // A broken command manifest must not lock the user out of the
        // commands that inspect and repair it.
        Err(e) if host_command => {
            crate::host::ui::message("warning:", "33", &format!("{e:#}"));
            Manifest::default()
        }
        Err(e) => return Err(e),
    };
    let command = manifest.extend(Cli::command(), first_word.as_deref(), wants_help)?;
    let matches = command.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    if let Some(selected) = manifest.dispatch(&matches) {
        let (spec, args) = selected?;
        let found = host.find_script(&spec.script)?;
        return engine::run_script(&host, &ScriptSource::from_found(&found), args);
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        HostCommand::Script(action) => file_action(&host, &manifest, Kind::Script, action),
        HostCommand::Prompt(action) => file_action(&host, &manifest, Kind::Prompt, action),
        HostCommand::Exec { target, pairs } => exec(&host, &target, &pairs),
        HostCommand::Trust { list, revoke } => trust(&host, list, revoke.as_deref()),
    }
}

/// The first command word (skipping global flags), and whether help is asked
/// for before it or without one.
fn first_word(argv: &[OsString]) -> (Option<String>, bool) {
    let mut args = argv.iter().skip(1).filter_map(|a| a.to_str());
    let mut wants_help = argv.len() <= 1;
    while let Some(arg) = args.next() {
        match arg {
            "-C" => {
                args.next();
            }
            "-h" | "--help" => wants_help = true,
            a if a.starts_with('-') => {}
            word => return (Some(word.to_string()), wants_help),
        }
    }
    (None, wants_help)
}

/// The directory given with `-C`, looked up before clap runs because the
/// project decides which commands exist.
fn start_dir(argv: &[OsString]) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        let dir = match text {
            "--" => break,
            "-C" => args.next().map(PathBuf::from),
            _ => text.strip_prefix("-C").map(PathBuf::from),
        };
        if let Some(dir) = dir {
            let dir = cwd.join(dir);
            // As with `git -C`, every relative path on the command line is
            // taken from there too.
            std::env::set_current_dir(&dir)
                .map_err(|e| UsageError(format!("-C {}: not a directory ({e})", dir.display())))?;
            return Ok(dir);
        }
    }
    Ok(cwd)
}

fn exec(host: &SharedHost, target: &str, pairs: &[String]) -> Result<i32> {
    let mut args = Map::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                args.insert(key.into(), value.to_string().into());
            }
            _ => return Err(UsageError(format!("'{pair}' is not KEY=VALUE")).into()),
        }
    }
    let script = if names_a_file(target) {
        ScriptSource::from_file(Path::new(target))?
    } else {
        ScriptSource::from_found(&host.find_script(target)?)
    };
    engine::run_script(host, &script, args)
}

/// `aloop exec`'s one rule: an argument that starts with `./`, `../` or `/`,
/// or names an existing file ending in `.rhai`, is a file the user chose;
/// anything else is a script name, resolved by lookup and trust. So the
/// nested `aloop exec lib/replay-player` of a bundled adapter never runs a
/// same-named file that the working directory happens to hold.
fn names_a_file(target: &str) -> bool {
    let explicit = target.starts_with("./") || target.starts_with("../") || target.starts_with('/');
    let path = Path::new(target);
    let rhai = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("rhai"));
    explicit || (rhai && path.is_file())
}

fn file_action(host: &SharedHost, manifest: &Manifest, kind: Kind, action: FileAction) -> Result<i32> {
    match action {
        FileAction::List => list(host, manifest, kind),
        FileAction::Show { name } => {
            let found = host.lookup.find(kind, &name).map_err(UsageError)?;
            let found = found.with_context(|| format!("no {} named '{name}'", kind.noun()))?;
            eprintln!("# {} ({})", found.origin(kind), found.layer);
            crate::host::ui::print_line(found.text.trim_end());
            Ok(0)
        }
        FileAction::Eject { name, force } => eject(host, kind, &name, force),
        FileAction::Check => check(host, kind),
    }
}

/// `script list` and `prompt list`: each name, the layer it comes from and
/// its trust; for scripts also its kind (see `script_kind`).
fn list(host: &SharedHost, manifest: &Manifest, kind: Kind) -> Result<i32> {
    let commands = manifest.scripts();
    let mut rows = Vec::new();
    for (name, layers) in host.lookup.list(kind) {
        let winner = layers[0];
        let mut source = winner.to_string();
        if layers.len() > 1 {
            let rest: Vec<String> = layers[1..].iter().map(Layer::to_string).collect();
            source.push_str(&format!(" (overrides {})", rest.join(", ")));
        }
        let state = match (kind, winner) {
            (Kind::Script, Layer::Repo) => {
                let found = host.lookup.find(kind, &name).map_err(UsageError)?.expect("listed");
                host.trust.status(found.path.as_deref().expect("on disk"), &found.text)?.to_string()
            }
            (Kind::Script, _) => "trusted".to_string(),
            (Kind::Prompt, _) => "-".to_string(),
        };
        let mut row = vec![name, source, state];
        if kind == Kind::Script {
            row.insert(1, script_kind(&row[0], &commands).to_string());
        }
        rows.push(row);
    }
    let mut headers = vec!["NAME", "SOURCE", "TRUST"];
    if kind == Kind::Script {
        rows.push(manifest_row(host)?);
        headers.insert(1, "KIND");
    }
    let headers: Vec<String> = headers.into_iter().map(String::from).collect();
    crate::host::ui::print_line(&crate::host::ui::table(&headers, &rows));
    Ok(0)
}

/// What a script is for: a "command" when commands.toml runs it, an
/// "adapter" under agents/, else a "module" that other scripts import.
fn script_kind(name: &str, commands: &std::collections::BTreeSet<&str>) -> &'static str {
    if commands.contains(name) {
        "command"
    } else if name.starts_with("agents/") {
        "adapter"
    } else {
        "module"
    }
}

/// The `script list` row of the command manifest, which is code too.
fn manifest_row(host: &SharedHost) -> Result<Vec<String>> {
    let copies = host.lookup.layered_file(Kind::Script, manifest::FILE_NAME)?;
    let mut layers: Vec<String> = copies.iter().rev().map(|f| f.layer.to_string()).collect();
    layers.push(Layer::Bundled.to_string());
    let mut source = layers[0].clone();
    if layers.len() > 1 {
        source.push_str(&format!(" (laid over {})", layers[1..].join(", ")));
    }
    let state = match copies.iter().find(|f| f.layer == Layer::Repo) {
        Some(repo) => host.trust.status(repo.path.as_deref().expect("on disk"), &repo.text)?.to_string(),
        None => "trusted".to_string(),
    };
    Ok(vec![manifest::FILE_NAME.to_string(), "manifest".to_string(), source, state])
}

fn eject(host: &SharedHost, kind: Kind, name: &str, force: bool) -> Result<i32> {
    let copies = host.lookup.find_all(kind, name).map_err(UsageError)?;
    let bundled = copies
        .iter()
        .find(|f| f.layer == Layer::Bundled)
        .with_context(|| format!("there is no bundled {} named '{name}' to eject", kind.noun()))?;
    // Through the sandbox, like a script's write: a cloned repository's
    // .loop/scripts may be a link to somewhere else.
    let rel = format!(".loop/{}/{}.{}", kind.folder(), bundled.name, kind.extension());
    let opened = host.roots.open(&rel, Access::Write, "writing")?;
    let file = opened.name.as_deref().expect("a file below the project root");
    let target = opened.path.clone();
    if beneath::exists(opened.dir.as_fd(), file) && !force {
        bail!("{} already exists (pass --force to replace it)", target.display());
    }
    crate::files::atomic::write_at(opened.dir.as_fd(), file, bundled.text.as_bytes())
        .with_context(|| format!("writing {}", target.display()))?;
    crate::host::ui::message("✓", "32", &format!("ejected {} to {}", bundled.name, target.display()));
    if kind == Kind::Script {
        // The user asked for this copy, so it is theirs to run.
        host.trust.trust(&[(target, bundled.text.to_string())])?;
        eprintln!("  it is trusted as it is now; after editing it, review and run `aloop trust`");
    }
    Ok(0)
}

fn check(host: &SharedHost, kind: Kind) -> Result<i32> {
    let engine = engine::new_engine(host);
    let mut failures = 0;
    let mut checked = 0;
    for name in host.lookup.list(kind).keys() {
        for found in host.lookup.find_all(kind, name).map_err(UsageError)? {
            checked += 1;
            let origin = found.origin(kind);
            let result = match kind {
                Kind::Script => host
                    .scripts
                    .compile(&engine, &format!("check:{origin}"), &origin, &found.text, true)
                    .map(|_| ()),
                Kind::Prompt => crate::host::tpl::check(&origin, &found.text).map_err(anyhow::Error::msg),
            };
            if let Err(e) = result {
                failures += 1;
                eprintln!("{e:#}");
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {checked} {} failed to compile", kind.folder());
    }
    crate::host::ui::message("✓", "32", &format!("{checked} {} compile", kind.folder()));
    Ok(0)
}

fn trust(host: &SharedHost, list: bool, revoke: Option<&Path>) -> Result<i32> {
    if let Some(path) = revoke {
        let full =
            paths::canonicalize_lenient(path).with_context(|| format!("resolving {}", path.display()))?;
        if host.trust.revoke(&full)? {
            crate::host::ui::message("✓", "32", &format!("{} is no longer trusted", full.display()));
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
    let mut rows = Vec::new();
    for (path, text) in &scripts {
        rows.push(vec![host.roots.display(path), host.trust.status(path, text)?.to_string()]);
    }
    if list {
        let pinned = host.trust.entries()?;
        for path in pinned.keys() {
            if !scripts.iter().any(|(p, _)| p.display().to_string() == *path) {
                rows.push(vec![path.clone(), Status::Trusted.to_string()]);
            }
        }
    }
    if rows.is_empty() {
        eprintln!("no repository scripts in {}", dir.display());
    } else {
        let headers = ["SCRIPT", "STATUS"].map(String::from);
        crate::host::ui::print_line(&crate::host::ui::table(&headers, &rows));
    }
    Ok(0)
}
