//! Finds scripts and prompt templates by name in three layers, first match
//! wins: the repository (`.loop/scripts`, `.loop/prompts`), the user
//! (`$ALOOP_HOME/scripts`, `$ALOOP_HOME/prompts`), and the files bundled into
//! the binary.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// What is being looked up; decides the folder and the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Script,
    Prompt,
}

impl Kind {
    pub(crate) fn folder(self) -> &'static str {
        match self {
            Kind::Script => "scripts",
            Kind::Prompt => "prompts",
        }
    }

    /// "script" or "prompt", for messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Script => "script",
            Kind::Prompt => "prompt",
        }
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Kind::Script => "rhai",
            Kind::Prompt => "md",
        }
    }
}

/// Where a file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Layer {
    Repo,
    User,
    Bundled,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Repo => "repo",
            Layer::User => "user",
            Layer::Bundled => "bundled",
        })
    }
}

/// A file found by lookup.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) name: String,
    pub(crate) layer: Layer,
    /// The file on disk; `None` for bundled files.
    pub(crate) path: Option<PathBuf>,
    pub(crate) text: Cow<'static, str>,
}

impl Found {
    /// How messages refer to it: the file path, or `<bundled>/scripts/x.rhai`.
    pub(crate) fn origin(&self, kind: Kind) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => format!("<bundled>/{}/{}.{}", kind.folder(), self.name, kind.extension()),
        }
    }
}

/// The layered search path.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    repo: PathBuf,
    user: PathBuf,
}

impl Lookup {
    /// `loop_dir` is the repository's `.loop`; `home` is `ALOOP_HOME`.
    pub(crate) fn new(loop_dir: &Path, home: &Path) -> Self {
        Self { repo: loop_dir.to_path_buf(), user: home.to_path_buf() }
    }

    /// The repository's folder for a kind (`.loop/scripts`, `.loop/prompts`).
    pub(crate) fn repo_dir(&self, kind: Kind) -> PathBuf {
        self.repo.join(kind.folder())
    }

    /// The layers on disk with their folder for a kind, first match first
    /// (the bundled layer has none).
    fn disk_dirs(&self, kind: Kind) -> [(Layer, PathBuf); 2] {
        [(Layer::Repo, self.repo_dir(kind)), (Layer::User, self.user.join(kind.folder()))]
    }

    /// Finds `name` (with or without its extension) in the first layer that has it.
    pub(crate) fn find(&self, kind: Kind, name: &str) -> Result<Option<Found>, String> {
        Ok(self.find_all(kind, name)?.into_iter().next())
    }

    /// Every layer's copy of `name`, first match first.
    pub(crate) fn find_all(&self, kind: Kind, name: &str) -> Result<Vec<Found>, String> {
        let name = normalize_name(kind, name)?;
        let file = format!("{name}.{}", kind.extension());
        let mut found = Vec::new();
        for (layer, dir) in self.disk_dirs(kind) {
            let path = dir.join(&file);
            // Not `is_file`: a FIFO or device there is refused by name, not skipped.
            if path.exists() {
                let text = crate::files::read::read_text(&path).map_err(|e| e.to_string())?;
                found.push(Found { name: name.clone(), layer, path: Some(path), text: Cow::Owned(text) });
            }
        }
        if let Some(text) = bundled_file(&format!("{}/{file}", kind.folder())) {
            found.push(Found { name, layer: Layer::Bundled, path: None, text: Cow::Borrowed(text) });
        }
        Ok(found)
    }

    /// Every visible name with the layers that hold it, first match first.
    pub(crate) fn list(&self, kind: Kind) -> BTreeMap<String, Vec<Layer>> {
        let mut names: BTreeMap<String, Vec<Layer>> = BTreeMap::new();
        for (layer, dir) in self.disk_dirs(kind) {
            let mut files = Vec::new();
            walk(&dir, &mut files);
            for file in files {
                if let Some(name) = name_of(&dir, &file, kind) {
                    names.entry(name).or_default().push(layer);
                }
            }
        }
        let prefix = format!("{}/", kind.folder());
        let suffix = format!(".{}", kind.extension());
        for (path, _) in bundled::FILES {
            if let Some(name) = path.strip_prefix(&prefix).and_then(|p| p.strip_suffix(&suffix)) {
                names.entry(name.to_string()).or_default().push(Layer::Bundled);
            }
        }
        names
    }

    /// A non-script file (such as `commands.toml`) in each on-disk layer
    /// that has it, the user's first, the repository's last. One that is
    /// there but cannot be read as text (a FIFO, a device, a huge or
    /// non-UTF-8 file) is an error naming it.
    pub(crate) fn layered_file(&self, kind: Kind, file: &str) -> Result<Vec<Found>, crate::error::HostError> {
        let mut out = Vec::new();
        for (layer, dir) in self.disk_dirs(kind).into_iter().rev() {
            let path = dir.join(file);
            match crate::files::read::read_text(&path) {
                Ok(text) => out.push(Found {
                    name: file.to_string(),
                    layer,
                    path: Some(path),
                    text: Cow::Owned(text),
                }),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// The bundled `scripts/commands.toml`, converted to JSON at build time.
pub(crate) fn bundled_commands_json() -> &'static str {
    bundled::COMMANDS_JSON
}

/// A bundled file by its path relative to the crate root.
pub(crate) fn bundled_file(path: &str) -> Option<&'static str> {
    bundled::FILES.iter().find(|(p, _)| *p == path).map(|(_, text)| *text)
}

/// Every bundled file under a folder, e.g. `demo/`.
pub(crate) fn bundled_under(prefix: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    bundled::FILES.iter().filter(move |(p, _)| p.starts_with(prefix)).copied()
}

/// Strips the extension and refuses names that could leave the layer folder.
fn normalize_name(kind: Kind, name: &str) -> Result<String, String> {
    let name = name.strip_suffix(&format!(".{}", kind.extension())).unwrap_or(name);
    let valid = !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!("'{name}' is not a valid {} name (use names like 'iterate/run')", kind.noun()))
    }
}

fn name_of(dir: &Path, file: &Path, kind: Kind) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?.to_str()?;
    rel.strip_suffix(&format!(".{}", kind.extension())).map(str::to_string)
}

/// Every file below `dir` (no symlinked directories are entered).
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}
