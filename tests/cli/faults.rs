//! Faults: crashes in the middle of state writes and failing disks.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::Project;

/// A small deterministic generator, seeded from the clock and printed on
/// failure so a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Reads a state file that may not exist yet (a crash before its first write).
fn read_state(p: &Project, rel: &str) -> Option<String> {
    p.exists(rel).then(|| p.read(rel))
}

fn json_ids(text: Option<String>, list: &str, field: &str) -> BTreeSet<String> {
    let Some(text) = text else { return BTreeSet::new() };
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{list} file does not parse: {e}\n{text}"));
    value[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].to_string().trim_matches('"').to_string())
        .collect()
}

/// The record ids each state file holds; every file must parse.
fn acknowledged_ids(p: &Project) -> (BTreeSet<String>, BTreeSet<String>, usize) {
    let ids = json_ids(read_state(p, "state/runs.json"), "runs", "id");
    let stories = json_ids(read_state(p, "state/prd.json"), "stories", "id");
    let progress = read_state(p, "state/progress.md").unwrap_or_default();
    // Empty when the crash came between creating the file and the first append.
    assert!(progress.is_empty() || progress.ends_with("---\n"), "progress.md ends mid-record:\n{progress}");
    (ids, stories, progress.matches("### S-").count())
}

#[test]
fn kill_9_during_200_state_writes_loses_no_acknowledged_record() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let seed = now.as_secs() ^ u64::from(now.subsec_nanos());
    let mut rng = Lcg(seed);
    let p = Project::new().fixture("faults/writer.rhai", "writer.rhai");
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let mut kills = 0;
    let mut delay_ms = 20;
    while acked.len() < 200 {
        assert!(kills < 400, "seed {seed}: only {} records acknowledged after {kills} runs", acked.len());
        let first = next.to_string();
        let mut child = p.aloop(&["exec", "writer.rhai", &format!("first={first}"), "count=400"]).spawn();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(delay_ms + rng.next(delay_ms * 3)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        let ids = reader.join().unwrap();
        match ids.last() {
            Some(last) => next = last + 1,
            // Killed before its first record (a slow start on a busy machine): wait longer.
            None => delay_ms += 10,
        }
        acked.extend(ids);
        // After every crash, every file parses and holds every acknowledged record.
        let (runs, stories, progress) = acknowledged_ids(&p);
        for id in &acked {
            assert!(
                runs.contains(&id.to_string()),
                "seed {seed}: acknowledged run {id} lost after {kills} kills"
            );
            assert!(stories.contains(&format!("S-{id}")), "seed {seed}: story S-{id} lost");
        }
        assert!(progress >= acked.len(), "seed {seed}: progress.md lost records");
    }
    assert!(kills >= 2, "the writer was never interrupted (seed {seed})");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs mount(8) or umount(8); panics when it fails.
#[track_caller]
fn mount(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program).args(args).status();
    assert!(
        status.as_ref().is_ok_and(std::process::ExitStatus::success),
        "{program} {args:?}: {status:?}; as root this test needs mount(8) and CAP_SYS_ADMIN"
    );
}

/// How an error shows the line of `w.rhai` that writes `state/s.json`.
const WRITE_LINE: &str = " 1 | fs::write_json(\"state/s.json\", #{ fresh: 1 });\n   |     ^\n";

#[test]
fn a_read_only_state_directory_gives_a_clear_error_and_keeps_the_old_file() {
    let p = Project::new().file("w.rhai", "fs::write_json(\"state/s.json\", #{ fresh: 1 });");
    let dir = p.path("state");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_text = dir.to_str().unwrap();
    // Root ignores directory permissions, so as root the directory is a
    // tmpfs remounted read-only; otherwise it is made read-only with chmod.
    let root = is_root();
    if root {
        mount("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir_text]);
    }
    std::fs::write(dir.join("s.json"), "{\"old\": true}\n").unwrap();
    if root {
        mount("mount", &["-o", "remount,ro", dir_text]);
    } else {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    }
    let out = p.aloop(&["exec", "w.rhai"]).run();
    let old = std::fs::read(dir.join("s.json")).unwrap();
    if root {
        mount("umount", &[dir_text]);
    } else {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let reason = if root { "Read-only file system (os error 30)" } else { "Permission denied (os error 13)" };
    out.code(1).stderr_is(&format!("error: w.rhai:1:5: writing state/s.json: {reason}\n{WRITE_LINE}"));
    assert_eq!(old, b"{\"old\": true}\n");
}

#[test]
fn writing_below_a_file_gives_a_clear_error_and_changes_nothing() {
    let p = Project::new()
        .file("state", "a file, not a directory")
        .file("w.rhai", "fs::write_json(\"state/s.json\", #{ fresh: 1 });");
    p.aloop(&["exec", "w.rhai"]).run().code(1).stderr_is(&format!(
        "error: w.rhai:1:5: writing state/s.json: Not a directory (os error 20)\n{WRITE_LINE}"
    ));
    p.file_is("state", "a file, not a directory");
}

#[test]
fn a_full_disk_during_a_write_gives_a_clear_error_and_keeps_the_old_file() {
    let p = Project::new()
        .file("state.json", "{\"old\": true}\n")
        .file("big.rhai", "let s = \"0123456789abcdef\";\nfor i in 0..14 { s += s; }\nfs::write_json(\"state.json\", #{ data: s });");
    // `ulimit -f` caps the size of any file the process writes (in KiB
    // blocks): the 256 KiB write fails like a full disk would.
    let out = p.shell("ulimit -f 64; exec \"$ALOOP\" exec big.rhai");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    crate::support::assert_same(
        "stderr",
        &stderr,
        "error: big.rhai:3:5: writing state.json: File too large (os error 27)\n\
         \x203 | fs::write_json(\"state.json\", #{ data: s });\n   |     ^\n",
    );
    p.file_is("state.json", "{\"old\": true}\n");
    let leftovers: Vec<_> = std::fs::read_dir(p.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| std::path::Path::new(n).extension().is_some_and(|ext| ext == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// A verdict that cannot be written leaves the loop's view of prd.json to be
/// read again, not the document that was never written.
#[test]
fn a_verdict_that_cannot_be_written_is_not_remembered() {
    let p = Project::new()
        .fixture("loop/prd.json", ".loop/prd.json")
        .fixture("faults/record_on_full_disk.rhai", "record.rhai");
    let before = p.read(".loop/prd.json");
    let out = p.shell("ulimit -f 64; exec \"$ALOOP\" exec record.rhai");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("write failed: writing .loop/prd.json: File too large"), "{stdout}");
    assert!(stdout.contains("rejections=0 in_progress=0"), "{stdout}");
    p.file_is(".loop/prd.json", before);
}
