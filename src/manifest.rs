//! Commands defined by scripts. `scripts/commands.toml` (bundled, then
//! `$ALOOP_HOME/scripts/commands.toml`, then `.loop/scripts/commands.toml`,
//! later entries replacing earlier ones of the same name) maps command words
//! such as `iterate run` to a script and declares its flags. The host turns
//! each entry into a clap subcommand, so every workflow gets real `--help`,
//! usage errors and exit code 2 without any workflow knowledge in `src/`.
//!
//! The manifest decides what runs (a flag's default can be a program), so
//! the repository's copy is code: it is used only once `aloop trust` has
//! pinned it. No copy, the user's included, can take over the host's own
//! command words or flags.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use rhai::{Array, Dynamic, Map};
use serde::Deserialize;

use crate::lookup::{Found, Kind, Layer, Lookup};
use crate::trust::{Status, Trust};

/// The manifest's file name in each layer's scripts folder.
pub(crate) const FILE_NAME: &str = "commands.toml";

/// The ids and short flags every command has from the host (`--help`,
/// `--version`, `-C DIR`), which a manifest may not declare.
const HOST_FLAGS: [(&str, char); 3] = [("help", 'h'), ("version", 'V'), ("dir", 'C')];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Shown under `aloop --help`.
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    groups: BTreeMap<String, String>,
    #[serde(default)]
    commands: BTreeMap<String, CommandSpec>,
}

/// One command: the script it runs and its arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandSpec {
    pub(crate) script: String,
    #[serde(default)]
    about: String,
    #[serde(default)]
    long_about: Option<String>,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    args: Vec<ArgSpec>,
}

/// One flag, option or positional argument.
// Its on/off fields are the keys of the TOML table it is read from.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgSpec {
    long: Option<String>,
    short: Option<char>,
    positional: Option<String>,
    /// The value's placeholder; an option with one takes a value, one
    /// without is an on/off flag.
    value: Option<String>,
    #[serde(rename = "type", default)]
    kind: ValueKind,
    #[serde(default)]
    choices: Vec<String>,
    default: Option<toml::Value>,
    #[serde(default)]
    help: String,
    #[serde(default)]
    multiple: bool,
    #[serde(default)]
    required: bool,
    /// Takes every remaining word, dashes included (for a command line).
    #[serde(default)]
    trailing: bool,
    /// Accepts a value that starts with '-' (so that `-5m` reaches the
    /// script's own check instead of being taken for a flag).
    #[serde(default)]
    hyphen_values: bool,
    /// The least value of an `int` argument: a smaller one is a usage error.
    min: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ValueKind {
    #[default]
    String,
    Int,
    Number,
    /// A file the user names: made absolute against the directory aloop
    /// was started in (or `-C`), as every command-line tool reads paths;
    /// `-` (standard input) stays as it is.
    Path,
}

impl ArgSpec {
    fn id(&self) -> Result<String> {
        let name = self
            .long
            .as_deref()
            .or(self.positional.as_deref())
            .ok_or_else(|| anyhow!("an argument needs `long` or `positional` (help: {:?})", self.help))?;
        Ok(name.to_ascii_lowercase().replace('-', "_"))
    }

    fn takes_value(&self) -> bool {
        self.positional.is_some() || self.value.is_some()
    }

    /// Refuses the host's own flags, which a command must not redefine.
    fn check_host_flags(&self) -> Result<()> {
        let id = self.id()?;
        for (host_id, short) in HOST_FLAGS {
            if id == host_id || self.short == Some(short) {
                bail!("'{id}' (or -{short}) is aloop's own flag (-h, -V, -C DIR) and cannot be redefined");
            }
        }
        Ok(())
    }

    fn to_clap(&self) -> Result<Arg> {
        let id = self.id()?;
        if self.min.is_some() && self.kind != ValueKind::Int {
            bail!("argument '{id}': `min` needs type = \"int\"");
        }
        let mut arg = Arg::new(id.clone()).help(self.help.clone());
        if let Some(long) = &self.long {
            arg = arg.long(long.clone());
        }
        if let Some(short) = self.short {
            arg = arg.short(short);
        }
        if !self.takes_value() {
            return Ok(arg.action(ArgAction::SetTrue));
        }
        let placeholder = self.value.clone().or_else(|| self.positional.clone()).unwrap_or_default();
        arg = arg.value_name(placeholder).required(self.required);
        arg = match self.kind {
            ValueKind::Int => {
                let min = self.min;
                arg.value_parser(move |text: &str| -> Result<i64, String> {
                    let value: i64 = text.parse().map_err(|_| "not a whole number".to_string())?;
                    match min {
                        Some(min) if value < min => Err(format!("must be at least {min}")),
                        _ => Ok(value),
                    }
                })
            }
            ValueKind::Number => arg.value_parser(clap::value_parser!(f64)),
            ValueKind::String if !self.choices.is_empty() => {
                arg.value_parser(clap::builder::PossibleValuesParser::new(self.choices.clone()))
            }
            ValueKind::String | ValueKind::Path => arg,
        };
        if let Some(default) = &self.default {
            let text = match default {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            arg = arg.default_value(text);
        }
        if self.hyphen_values {
            arg = arg.allow_hyphen_values(true);
        }
        if self.trailing {
            arg =
                arg.num_args(1..).allow_hyphen_values(true).trailing_var_arg(true).action(ArgAction::Append);
        } else if self.multiple {
            arg = arg.action(ArgAction::Append);
        }
        Ok(arg)
    }

    /// The value as the script sees it in `ARGS`.
    fn value(&self, matches: &ArgMatches, id: &str) -> Dynamic {
        if !self.takes_value() {
            return matches.get_flag(id).into();
        }
        let one = |m: &ArgMatches| -> Option<Vec<Dynamic>> {
            Some(match self.kind {
                ValueKind::Int => m.get_many::<i64>(id)?.map(|v| Dynamic::from(*v)).collect(),
                ValueKind::Number => m.get_many::<f64>(id)?.map(|v| Dynamic::from(*v)).collect(),
                ValueKind::String => m.get_many::<String>(id)?.map(|v| Dynamic::from(v.clone())).collect(),
                ValueKind::Path => m.get_many::<String>(id)?.map(|v| Dynamic::from(absolute(v))).collect(),
            })
        };
        let values = one(matches);
        if self.multiple || self.trailing {
            Dynamic::from(values.unwrap_or_default().into_iter().collect::<Array>())
        } else {
            values.and_then(|v| v.into_iter().next()).unwrap_or(Dynamic::UNIT)
        }
    }
}

/// Every script-defined command, by its words ("iterate run").
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    examples: Vec<String>,
    groups: BTreeMap<String, String>,
    commands: BTreeMap<String, CommandSpec>,
}

impl Manifest {
    /// Reads `commands.toml` from every layer; a malformed file is an error
    /// naming it with line and column. The repository's copy is skipped
    /// until it is trusted (saying so when `warn_untrusted`); entries for
    /// `host_words` (the host's own commands) are skipped, with a warning,
    /// in every copy.
    pub(crate) fn load(
        lookup: &Lookup,
        trust: &Trust,
        host_words: &[&str],
        warn_untrusted: bool,
    ) -> Result<Self> {
        let mut manifest = Manifest::default();
        let bundled: File = serde_json::from_str(crate::lookup::bundled_commands_json())
            .map_err(|e| anyhow!("<bundled>/scripts/{FILE_NAME}: {e}"))?;
        manifest.add(bundled, "<bundled>", host_words);
        for found in lookup.layered_file(Kind::Script, FILE_NAME)? {
            let origin = found.origin(Kind::Script);
            if !is_trusted(&found, trust)? {
                if warn_untrusted {
                    warn(&format!(
                        "ignoring {origin}: it is not trusted, and it decides what commands run; \
                         review it, then run `aloop trust`"
                    ));
                }
                continue;
            }
            let file: File = toml::from_str(&found.text).map_err(|e| anyhow!("{origin}: {e}"))?;
            manifest.add(file, &origin, host_words);
        }
        Ok(manifest)
    }

    /// The scripts that commands run ("loop/run"), for telling commands from
    /// library modules.
    pub(crate) fn scripts(&self) -> std::collections::BTreeSet<&str> {
        self.commands.values().map(|spec| spec.script.as_str()).collect()
    }

    /// Lays a file over what is there: its entries replace those of the same name.
    fn add(&mut self, mut file: File, origin: &str, host_words: &[&str]) {
        file.commands.retain(|words, _| {
            let first = words.split_whitespace().next().unwrap_or_default();
            let taken = host_words.contains(&first);
            if taken {
                warn(&format!("{origin}: ignoring [commands.\"{words}\"]: `{first}` is aloop's own command"));
            }
            !taken
        });
        if !file.examples.is_empty() {
            self.examples = file.examples;
        }
        self.groups.extend(file.groups);
        self.commands.extend(file.commands);
    }

    /// Adds a subcommand for each entry to `root` (`load` left out the words
    /// the host uses). Building every subcommand costs more than the rest of a
    /// start-up, so when the command line names one (`first_word`) only that
    /// one is built; everything is built for help and for unknown words.
    pub(crate) fn extend(
        &self,
        mut root: Command,
        first_word: Option<&str>,
        wants_help: bool,
    ) -> Result<Command> {
        if !self.examples.is_empty() {
            root = root.after_help(examples_help(&self.examples));
        }
        let mut tree = Node::default();
        for (words, spec) in &self.commands {
            let path: Vec<&str> = words.split_whitespace().collect();
            if path.is_empty() {
                bail!("a command in commands.toml has an empty name");
            }
            tree.insert(&path, spec);
        }
        let selected = match first_word {
            Some(word) if tree.children.contains_key(word) => Some(word),
            Some(word) if root.find_subcommand(word).is_some() => return Ok(root),
            None if !wants_help => return Ok(root), // e.g. --version
            _ => None,
        };
        for (word, node) in &tree.children {
            if selected.is_none_or(|s| s == word) {
                root = root.subcommand(node.to_clap(word, word, &self.groups)?);
            }
        }
        Ok(root)
    }

    /// Finds the command that `matches` selected and builds its `ARGS`.
    pub(crate) fn dispatch(&self, matches: &ArgMatches) -> Option<Result<(CommandSpec, Map)>> {
        let mut words = Vec::new();
        let mut current = matches;
        let mut selected = None;
        while let Some((word, sub)) = current.subcommand() {
            words.push(word.to_string());
            if let Some(spec) = self.commands.get(&words.join(" ")) {
                selected = Some((spec, sub, words.join(" ")));
            }
            current = sub;
        }
        let (spec, sub, name) = selected?;
        let mut args = Map::new();
        for arg in &spec.args {
            match arg.id() {
                Ok(id) => {
                    args.insert(id.as_str().into(), arg.value(sub, &id));
                }
                Err(e) => return Some(Err(e)),
            }
        }
        args.insert("command".into(), name.into());
        Some(Ok((spec.clone(), args)))
    }
}

/// Whether a layer's manifest may be used: the user's and the bundled are
/// the user's own; the repository's must be pinned by `aloop trust`.
fn is_trusted(found: &Found, trust: &Trust) -> Result<bool> {
    match (found.layer, &found.path) {
        (Layer::Repo, Some(path)) => Ok(trust.status(path, &found.text)? == Status::Trusted),
        _ => Ok(true),
    }
}

fn warn(text: &str) {
    crate::host::ui::message("warning:", "33", text);
}

/// A path typed on the command line, resolved against the working directory.
fn absolute(path: &str) -> String {
    if path == "-" {
        return path.to_string();
    }
    match crate::paths::canonicalize_lenient(std::path::Path::new(path)) {
        Ok(full) => full.display().to_string(),
        Err(_) => path.to_string(),
    }
}

fn examples_help(examples: &[String]) -> String {
    let lines: Vec<String> = examples.iter().map(|e| format!("  {e}")).collect();
    format!("Examples:\n{}", lines.join("\n"))
}

#[derive(Default)]
struct Node<'a> {
    spec: Option<&'a CommandSpec>,
    children: BTreeMap<String, Node<'a>>,
}

impl<'a> Node<'a> {
    fn insert(&mut self, path: &[&str], spec: &'a CommandSpec) {
        match path {
            [] => self.spec = Some(spec),
            [first, rest @ ..] => self.children.entry(first.to_string()).or_default().insert(rest, spec),
        }
    }

    fn to_clap(&self, word: &str, full: &str, groups: &BTreeMap<String, String>) -> Result<Command> {
        let mut cmd = Command::new(word.to_string());
        match self.spec {
            Some(spec) => {
                cmd = cmd.about(spec.about.clone());
                if let Some(long) = &spec.long_about {
                    cmd = cmd.long_about(long.clone());
                }
                if !spec.examples.is_empty() {
                    cmd = cmd.after_help(examples_help(&spec.examples));
                }
                for arg in &spec.args {
                    let built = arg.check_host_flags().and_then(|()| arg.to_clap());
                    cmd = cmd.arg(built.map_err(|e| anyhow!("command '{full}': {e}"))?);
                }
                if !self.children.is_empty() {
                    cmd = cmd.args_conflicts_with_subcommands(true);
                }
            }
            None => {
                cmd = cmd
                    .about(groups.get(full).cloned().unwrap_or_default())
                    .subcommand_required(true)
                    .arg_required_else_help(true);
            }
        }
        for (child, node) in &self.children {
            cmd = cmd.subcommand(node.to_clap(child, &format!("{full} {child}"), groups)?);
        }
        Ok(cmd)
    }
}
