//! The path sandbox: whatever path a script gives, the result is either an
//! error or a path inside the project or ALOOP_HOME, also when symlinks in
//! the project point outside.
#![no_main]

use std::sync::OnceLock;

use aloop::paths::Roots;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Roots,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        let home = dir.path().join("home");
        std::fs::create_dir_all(project.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::symlink("/etc", project.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../..", project.join("sub/up-link")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/dir", project.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop-b", project.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", project.join("loop-b")).unwrap();
        let roots = Roots::new(&project, &home).unwrap();
        Fixture { _dir: dir, roots }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let f = fixture();
    if let Ok(resolved) = f.roots.resolve(path) {
        assert!(
            resolved.starts_with(&f.roots.project) || resolved.starts_with(&f.roots.home),
            "{path:?} escaped to {resolved:?}"
        );
        assert!(!resolved.components().any(|c| c == std::path::Component::ParentDir));
    }
});
