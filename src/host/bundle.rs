//! `bundle::` — read-only access to the data files bundled into the binary
//! (`data/` in the source tree), such as a demo project and its recordings.

use rhai::{Array, Dynamic, Module};

use super::{raise, Fallible};

/// `bundle::read("data/x")` -> the text of a bundled file.
fn read(path: &str) -> Fallible<String> {
    crate::lookup::bundled_file(path)
        .map(str::to_string)
        .ok_or_else(|| raise(format!("no bundled file '{path}'")))
}

/// `bundle::list("data/dir/")` -> the paths of every bundled file under a prefix.
fn list(prefix: &str) -> Array {
    crate::lookup::bundled_under(prefix).map(|(path, _)| Dynamic::from(path.to_string())).collect()
}

pub(crate) fn module() -> Module {
    let mut m = Module::new();
    primitive!(m, "read", |path: &str| read(path));
    primitive!(m, "list", |prefix: &str| Ok(list(prefix)));
    m
}
