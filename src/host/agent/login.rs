//! Whether an agent's CLI looks signed in, seen without calling it: the
//! adapter's `describe()` may name the environment variables and the files
//! (`~/` is the home folder) where its CLI keeps credentials. Only their
//! presence is checked; nothing is read.

use std::path::PathBuf;

use rhai::{Dynamic, Map};

/// The first credential found, as a sentence (`"ANTHROPIC_API_KEY is set"`),
/// `false` when none is, or `()` when the adapter names none.
pub(super) fn signed_in(describe: &Map) -> Dynamic {
    let Some(login) = describe.get("login").and_then(|l| l.read_lock::<Map>().map(|m| m.clone())) else {
        return Dynamic::UNIT;
    };
    let names = |key: &str| -> Vec<String> {
        login
            .get(key)
            .and_then(|v| v.clone().into_typed_array::<rhai::ImmutableString>().ok())
            .map(|list| list.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    };
    for var in names("env") {
        if std::env::var_os(&var).is_some_and(|v| !v.is_empty()) {
            return format!("{var} is set").into();
        }
    }
    for file in names("files") {
        if expand(&file).is_some_and(|path| path.is_file()) {
            return format!("{file} exists").into();
        }
    }
    false.into()
}

fn expand(file: &str) -> Option<PathBuf> {
    match file.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().map(|home| home.join(rest)),
        None => Some(PathBuf::from(file)),
    }
}
