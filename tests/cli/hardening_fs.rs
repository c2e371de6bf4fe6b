//! Hardening of the file primitives against what a cloned repository can
//! carry: state files that are symbolic links, FIFOs and devices where files
//! belong, directories swapped for links mid-write, appends that do not fit,
//! keys given twice and byte order marks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::Project;

/// A directory next to the project, outside both roots.
fn outside(p: &Project) -> PathBuf {
    let dir = p.root().parent().unwrap().join("outside");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

fn mkfifo(at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    let ok = std::process::Command::new("mkfifo").arg(at).status().unwrap().success();
    assert!(ok, "mkfifo {}", at.display());
}

const LOOP_GITIGNORE: &str = ".loop.lock\n.prd.lock\n.verdict\nruns.jsonl\nprd.draft.json\n";

fn loop_project() -> Project {
    Project::git()
        .fixture("loop/config.json", ".loop/config.json")
        .fixture("loop/prd.json", ".loop/prd.json")
        .file(".loop/.gitignore", LOOP_GITIGNORE)
        .file(".loop/progress.md", "# Progress\n\n---\n")
        .commit("set up the loop")
}

/// Every way a script changes a state file, each through a link to a file
/// in `ALOOP_HOME` and to one outside the project: refused, naming the path,
/// and the target keeps its bytes.
#[test]
fn hardening_state_links_are_refused_by_name_and_targets_kept() {
    let cases = [
        (".loop/prd.json", "fs::write_json(\".loop/prd.json\", #{ userStories: [] });"),
        (".loop/config.json", "fs::write(\".loop/config.json\", \"{}\");"),
        (".loop/progress.md", "fs::append(\".loop/progress.md\", \"## entry\\n\");"),
        (".loop/runs.jsonl", "fs::append(\".loop/runs.jsonl\", \"{}\\n\");"),
        (".loop/.loop.lock", "let l = fs::lock(\".loop/.loop.lock\");"),
        (".loop/prd.draft.json", "fs::write(\".loop/prd.draft.json\", \"{}\");"),
        (".loop/triage/brief.md", "fs::write(\".loop/triage/brief.md\", \"x\");"),
    ];
    for (rel, script) in cases {
        for in_home in [true, false] {
            let p = Project::new().file("x.rhai", script);
            let target =
                if in_home { p.home().join("iterate-goals.json") } else { outside(&p).join("victim") };
            std::fs::write(&target, "precious\n").unwrap();
            link(&target, &p.path(rel));
            p.aloop(&["exec", "x.rhai"])
                .run()
                .code(1)
                .stderr_has(&format!("path '{rel}'"))
                .stderr_has("symbolic link");
            assert_eq!(
                std::fs::read_to_string(&target).unwrap(),
                "precious\n",
                "{rel} -> {}",
                target.display()
            );
            assert!(p.path(rel).symlink_metadata().unwrap().is_symlink(), "{rel} is still the link");
        }
    }
}

/// A link on the way (the `.loop` directory itself) is refused for writes
/// too, and nothing lands where it points.
#[test]
fn hardening_a_linked_directory_on_the_way_is_refused_for_writes() {
    let p = Project::new().file("x.rhai", "fs::write(\".loop/prd.json\", \"{}\");");
    let out = outside(&p);
    link(&out, &p.path(".loop"));
    p.aloop(&["exec", "x.rhai"]).run().code(1).stderr_is(
        "error: x.rhai:1:5: path '.loop/prd.json' goes through .loop, a symbolic link (to {tmp}/outside, \
         outside the project and ALOOP_HOME); aloop never writes, appends, locks or removes through a \
         symbolic link\n 1 | fs::write(\".loop/prd.json\", \"{}\");\n   |     ^\n",
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "something was written outside");
}

/// `aloop run` with its lock as a link into `ALOOP_HOME` stops, naming the
/// lock, and neither empties nor replaces the file the link points at.
#[test]
fn hardening_run_refuses_a_linked_lock() {
    let p = loop_project();
    std::fs::write(p.home().join("trust.json"), "{\"version\": 1, \"files\": {}}\n").unwrap();
    link(&p.home().join("trust.json"), &p.path(".loop/.loop.lock"));
    let before = p.snapshot();
    let out = p.aloop(&["run"]).env("IS_SANDBOX", "1").run().code(1);
    assert!(out.stderr.starts_with("error: path '.loop/.loop.lock' is a symbolic link"), "{}", out.stderr);
    assert!(!out.stderr.contains("another aloop run"), "a link is not a lock holder: {}", out.stderr);
    assert_eq!(p.snapshot(), before);
}

/// `aloop script eject` writes through the same sandbox as scripts: a
/// `.loop/scripts` that is a link out of the project is refused.
#[test]
fn hardening_eject_does_not_write_through_a_linked_scripts_folder() {
    let p = Project::new();
    let outside = p.home().join("../outside");
    std::fs::create_dir_all(&outside).unwrap();
    link(&outside, &p.path(".loop/scripts"));
    p.aloop(&["script", "eject", "loop/status"]).run().code(1).stderr_has("'.loop/scripts/loop/status.rhai'");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "a file was written outside the project");
}

/// `fs::remove` of a link removes the link and never its target; so does
/// `fs::remove_all` of a link to a directory.
#[test]
fn hardening_removing_a_link_leaves_its_target() {
    let p = Project::new().file("docs/spec.md", "the spec\n").file(
        "x.rhai",
        "print(fs::remove(\".loop/prd.draft.json\"));\nprint(fs::remove(\".loop/.verdict\"));\nprint(fs::remove_all(\"tree\"));",
    );
    std::fs::write(p.home().join("iterate-goals.json"), "goals\n").unwrap();
    let out = outside(&p);
    std::fs::write(out.join("keep"), "keep\n").unwrap();
    link(Path::new("../docs/spec.md"), &p.path(".loop/prd.draft.json"));
    link(&p.home().join("iterate-goals.json"), &p.path(".loop/.verdict"));
    link(&out, &p.path("tree"));
    p.aloop(&["exec", "x.rhai"]).run().ok().stdout_is("true\ntrue\ntrue\n");
    assert_eq!(p.read("docs/spec.md"), "the spec\n");
    assert_eq!(p.read_home("iterate-goals.json"), "goals\n");
    assert_eq!(std::fs::read_to_string(out.join("keep")).unwrap(), "keep\n");
    for rel in [".loop/prd.draft.json", ".loop/.verdict", "tree"] {
        assert!(p.path(rel).symlink_metadata().is_err(), "{rel} is gone");
    }
}

/// With `ALOOP_HOME` inside the project, a project-relative path into it is
/// outside the project; the absolute path there still works.
#[test]
fn hardening_a_relative_path_into_aloop_home_is_refused() {
    let p = Project::new()
        .file("rel.rhai", "fs::write(\"home/x.txt\", \"no\");")
        .file("abs.rhai", "fs::write(`${CTX.home}/y.txt`, \"yes\");");
    let home = p.path("home");
    std::fs::create_dir_all(&home).unwrap();
    p.aloop(&["exec", "rel.rhai"])
        .env("ALOOP_HOME", &home)
        .run()
        .code(1)
        .stderr_has("path 'home/x.txt' is inside ALOOP_HOME");
    assert!(!home.join("x.txt").exists());
    p.aloop(&["exec", "abs.rhai"]).env("ALOOP_HOME", &home).run().ok();
    assert_eq!(p.read("home/y.txt"), "yes");
}

/// A FIFO where prd.json belongs: `aloop status` fails at once, naming it.
#[test]
fn hardening_a_fifo_prd_fails_fast() {
    let p = loop_project();
    std::fs::remove_file(p.path(".loop/prd.json")).unwrap();
    mkfifo(&p.path(".loop/prd.json"));
    // A hang is killed at the timeout and then fails on its exit code.
    p.aloop(&["status"])
        .timeout(Duration::from_secs(20))
        .run()
        .code(1)
        .stderr_has(".loop/prd.json: is a FIFO, not a regular file");
}

/// `/dev/zero` as commands.toml or as a script, and a FIFO read by a
/// script: each is named and refused quickly, without reading forever.
#[test]
fn hardening_devices_and_fifos_are_refused_by_name() {
    let p = Project::new().file("r.rhai", "fs::read(\"pipe\");");
    link(Path::new("/dev/zero"), &p.path(".loop/scripts/commands.toml"));
    link(Path::new("/dev/zero"), &p.path("zero.rhai"));
    link(Path::new("/dev/zero"), &p.path(".loop/scripts/zero.rhai"));
    mkfifo(&p.path("pipe"));
    // The host's own commands get a warning (and here the script's own
    // error); a workflow command stops with the error.
    p.aloop(&["script", "list"])
        .timeout(Duration::from_secs(20))
        .run()
        .stderr_has("warning: ")
        .stderr_has("commands.toml: is a character device");
    p.aloop(&["status"])
        .timeout(Duration::from_secs(20))
        .run()
        .code(1)
        .stderr_has("commands.toml: is a character device, not a regular file");
    p.aloop(&["exec", "zero"])
        .timeout(Duration::from_secs(20))
        .run()
        .code(1)
        .stderr_has(".loop/scripts/zero.rhai: is a character device, not a regular file");
    // A path the user names: refused quickly, naming it.
    p.aloop(&["exec", "./zero.rhai"])
        .timeout(Duration::from_secs(20))
        .run()
        .code(1)
        .stderr_has("./zero.rhai: is a character device, not a regular file");
    p.aloop(&["exec", "r.rhai"]).timeout(Duration::from_secs(20)).run().code(1).stderr_has("pipe: is a FIFO");
}

/// An append that does not fit (`ulimit -f`, like a full disk) is rolled
/// back: the log is byte-identical and the error is reported.
#[test]
fn hardening_a_short_append_leaves_the_file_as_it_was() {
    let p = Project::new().file("log.md", "# Log\n\n---\n").file(
        "big.rhai",
        "let s = \"0123456789abcdef\";\nfor i in 0..14 { s += s; }\nfs::append(\"log.md\", s);",
    );
    let out = p.shell("ulimit -f 64; exec \"$ALOOP\" exec big.rhai");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("appending to log.md: the write stopped after"), "{stderr}");
    assert_eq!(p.read("log.md"), "# Log\n\n---\n");
}

/// A key given twice is refused with path:line:col naming it, by readers
/// and by `fs::write_json`, which leaves the file alone.
#[test]
fn hardening_a_key_given_twice_is_refused_with_its_position() {
    let prd = "{\n  \"userStories\": [],\n  \"userStories\": [{\"id\": \"US-1\"}]\n}\n";
    let p = loop_project()
        .file(".loop/prd.json", prd)
        .file("w.rhai", "fs::write_json(\".loop/prd.json\", #{ userStories: [] });");
    p.aloop(&["status"]).run().code(1).stderr_is(
        "error: .loop/prd.json:3:15: key \"userStories\" is given twice\n  \
         fix the file by hand; the loop does not repair it\n",
    );
    p.aloop(&["exec", "w.rhai"]).run().code(1).stderr_has(
        ".loop/prd.json:3:15: key \"userStories\" is given twice (refusing to overwrite a malformed file)",
    );
    p.file_is(".loop/prd.json", prd);
    // Deeper objects too, and json::parse of text.
    let p = Project::new().file("j.rhai", "json::parse(`{\"a\": {\"b\": 1,\n \"b\": 2}}`, \"doc\");");
    p.aloop(&["exec", "j.rhai"]).run().code(1).stderr_has("doc:2:4: key \"b\" is given twice");
}

/// A byte order mark at the start of a JSON file is accepted.
#[test]
fn hardening_a_byte_order_mark_is_accepted() {
    let p = loop_project();
    let prd = format!("\u{feff}{}", p.read(".loop/prd.json"));
    let config = format!("\u{feff}{}", p.read(".loop/config.json"));
    let p = p
        .file(".loop/prd.json", &prd)
        .file(".loop/config.json", &config)
        .file("c.rhai", "print(type_of(fs::read_json(\".loop/config.json\")));");
    p.aloop(&["status"]).run().ok().stdout_has("next:");
    p.aloop(&["exec", "c.rhai"]).run().ok().stdout_has("map");
    // Positions after the mark are those an editor shows.
    let p = Project::new()
        .file("bad.json", "\u{feff}{\"a\": tru}")
        .file("r.rhai", "fs::read_json(\"bad.json\");");
    p.aloop(&["exec", "r.rhai"]).run().code(1).stderr_has("bad.json:1:10:");
}

/// While aloop writes, appends and locks many files below `.loop/dir`, a
/// thread keeps swapping that directory for a link and back, to a directory
/// outside the project and to one in `ALOOP_HOME` (which a path check on the
/// resolved path would let through): nothing may ever land in either.
#[test]
fn hardening_a_directory_swapped_for_a_link_during_writes_never_leaks() {
    let script = r#"
let refused = 0;
for i in 0..400 {
    try {
        fs::write(`.loop/dir/w${i}.txt`, "x");
        fs::write_json(`.loop/dir/j${i}.json`, #{ i: i });
        fs::append(".loop/dir/log.md", "line\n");
        fs::mkdir(`.loop/dir/sub${i}`);
        fs::write(`.loop/dir/sub${i}/deep.txt`, "x");
        let l = fs::lock(".loop/dir/.lock");
        l.release();
    } catch (err) {
        refused += 1;
    }
}
print(`refused=${refused}`);
"#;
    for in_home in [false, true] {
        swap_during_writes(script, in_home);
    }
}

fn swap_during_writes(script: &str, in_home: bool) {
    let p = Project::new().file("x.rhai", script);
    let out = if in_home { p.home().join("victim") } else { outside(&p) };
    std::fs::create_dir_all(&out).unwrap();
    let dir = p.path(".loop/dir");
    let parked = p.path(".loop/parked");
    std::fs::create_dir_all(&dir).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, dir, parked, out) =
            (stop.clone(), swaps.clone(), dir.clone(), parked.clone(), out.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Real directory -> link to outside -> real directory.
                if std::fs::rename(&dir, &parked).is_ok() {
                    let _ = std::os::unix::fs::symlink(&out, &dir);
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(&dir);
                    let _ = std::fs::rename(&parked, &dir);
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        })
    };
    // On a loaded machine one run may see few swaps: run again until the
    // race has really been exercised (bounded).
    for _ in 0..20 {
        let result = p.aloop(&["exec", "x.rhai"]).timeout(Duration::from_secs(120)).run();
        let leaked: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        let so_far = swaps.load(Ordering::Relaxed);
        assert!(
            leaked.is_empty(),
            "written outside the project after {so_far} swaps: {leaked:?}\n{}",
            result.stderr
        );
        let result = result.ok();
        assert!(result.stdout.contains("refused="), "{}", result.stdout);
        if so_far > 10 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    assert!(swaps > 10, "the directory was swapped only {swaps} times in 20 runs");
}
