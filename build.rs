//! Embeds every file under `scripts/`, `prompts/` and `data/` into the
//! binary, so the bundled workflows work from a single executable with
//! nothing installed.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut files = Vec::new();
    for top in ["scripts", "prompts", "data"] {
        // A package that lost a folder would build a binary without its workflows.
        assert!(
            root.join(top).is_dir(),
            "{top}/ is missing from {}: the bundled files are built in",
            root.display()
        );
        println!("cargo:rerun-if-changed={top}");
        collect(&root.join(top), &mut files);
    }
    files.sort();
    let mut code = String::from("/// Every bundled file: (path relative to the crate root, contents).\npub static FILES: &[(&str, &str)] = &[\n");
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        code.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", file.display().to_string()));
    }
    code.push_str("];\n");
    // The command manifest is read on every start; parsing TOML costs more
    // than the rest of start-up, so the bundled one is turned into JSON here
    // (which also rejects a malformed manifest at build time).
    let manifest = fs::read_to_string(root.join("scripts/commands.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).expect("scripts/commands.toml is valid TOML");
    code.push_str(&format!(
        "/// scripts/commands.toml, as JSON.\npub static COMMANDS_JSON: &str = {:?};\n",
        serde_json::to_string(&manifest).unwrap()
    ));
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("bundled.rs"), code).unwrap();
}
