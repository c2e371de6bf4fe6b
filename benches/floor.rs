//! The floor programs: for each benchmark row, the least work that job
//! needs, done plainly in Rust with `serde_json`. The bench binary runs them as
//! `aloop-bench --floor NAME ARGS...` (itself, re-executed), so they are
//! built with the bench and measured the same way as aloop (wall time and
//! callgrind instructions of a whole process).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The line the instant fake agent prints (as `benches/fixtures/instant.rhai`).
pub const INSTANT_LINE: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done <verdict>PASS</verdict>","total_cost_usd":0.0,"usage":{"input_tokens":1,"output_tokens":1}}"#;

pub fn main(args: &[String]) {
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    match arg(0) {
        "iteration" => iteration(Path::new(arg(1)), arg(2).parse().expect("a number of iterations")),
        "status" => status(Path::new(arg(1))),
        "stream" => stream(Path::new(arg(1))),
        "dry-run" => dry_run(Path::new(arg(1))),
        other => panic!("no floor program {other:?}"),
    }
}

/// Spawns the instant agent and reads its one line, as an orchestrator must.
pub fn spawn_instant_agent() -> Vec<u8> {
    let out = Command::new("printf").args(["%s\n", INSTANT_LINE]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Per iteration of the story loop: the generator and the evaluator
/// spawned, the story marked passed in prd.json (written durably: a
/// temporary file, fsync, rename, fsync of the directory), a line appended
/// to progress.md.
fn iteration(dir: &Path, iterations: usize) {
    let mut prd: Value = serde_json::from_slice(&std::fs::read(dir.join("prd.json")).unwrap()).unwrap();
    for i in 0..iterations {
        for _ in 0..2 {
            let line = spawn_instant_agent();
            let event: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(event["type"], "result");
        }
        prd["userStories"][i]["passes"] = Value::Bool(true);
        let text = serde_json::to_vec_pretty(&prd).unwrap();
        let temp = dir.join(".prd.json.tmp");
        let mut file = File::create(&temp).unwrap();
        file.write_all(&text).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&temp, dir.join("prd.json")).unwrap();
        File::open(dir).unwrap().sync_all().unwrap();
        let mut progress =
            OpenOptions::new().append(true).create(true).open(dir.join("progress.md")).unwrap();
        let id = prd["userStories"][i]["id"].as_str().unwrap();
        progress.write_all(format!("## {id} passed\n").as_bytes()).unwrap();
    }
}

/// `status`: read and parse prd.json, count the stories that pass.
fn status(prd: &Path) {
    let doc: Value = serde_json::from_slice(&std::fs::read(prd).unwrap()).unwrap();
    let stories = doc["userStories"].as_array().unwrap();
    let passed = stories.iter().filter(|s| s["passes"] == true).count();
    println!("{passed}/{} stories pass", stories.len());
}

/// Streaming: the agent spawned (`cat` of the recording), each stdout line
/// parsed as JSON.
fn stream(events: &Path) {
    let mut child = Command::new("cat").arg(events).stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::with_capacity(64 * 1024, child.stdout.take().unwrap());
    let mut line = Vec::new();
    let mut results = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        let event: Value = serde_json::from_slice(&line).unwrap();
        results += usize::from(event["type"] == "result");
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(results, 1);
}

/// `iterate run --dry-run`: the recorded runs in `home` read and parsed, a
/// prompt rendered from the latest of them, printed.
fn dry_run(home: &Path) {
    let mut records: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("iterate-runs.json") {
            continue;
        }
        let mut text = String::new();
        File::open(&path).unwrap().read_to_string(&mut text).unwrap();
        // `{"version": 1, "runs": [...]}`, or one record per line.
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(mut doc)) if doc.contains_key("runs") => {
                records.extend(doc.remove("runs").and_then(|r| r.as_array().cloned()).unwrap_or_default());
            }
            _ => records.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok())),
        }
    }
    assert!(!records.is_empty(), "no run records in {}", home.display());
    let mut prompt = String::from("You improve this project in one small change.\n\n## Recent runs\n");
    for run in records.iter().rev().take(5) {
        prompt.push_str(&format!("- {} {}\n", run["startedAt"], run["status"]));
    }
    println!("{prompt}");
}
