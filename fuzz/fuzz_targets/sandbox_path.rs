//! The path sandbox: whatever path a script gives, the result is either an
//! error or a path inside the project or ALOOP_HOME, also when symlinks in
//! the project point outside. For every access (read, write, remove) the
//! directory handle the walk opened really lies in a root (checked through
//! /proc/self/fd), and a write through it never puts a file outside.
#![no_main]

use std::sync::OnceLock;

use std::os::fd::{AsFd, AsRawFd};

use aloop::paths::{Access, Roots};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Roots,
    outside: std::path::PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        let home = dir.path().join("home");
        std::fs::create_dir_all(project.join("sub/deeper")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, project.join("out-link")).unwrap();
        std::os::unix::fs::symlink(&outside, home.join("out-link")).unwrap();
        std::os::unix::fs::symlink(&home, project.join("home-link")).unwrap();
        std::os::unix::fs::symlink("sub", project.join("sub-link")).unwrap();
        std::os::unix::fs::symlink("/etc", project.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../..", project.join("sub/up-link")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/dir", project.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop-b", project.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", project.join("loop-b")).unwrap();
        let roots = Roots::new(&project, &home).unwrap();
        Fixture { _dir: dir, roots, outside }
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
    let inside = |p: &std::path::Path| p.starts_with(&f.roots.project) || p.starts_with(&f.roots.home);
    for access in [Access::Read, Access::Write, Access::Remove] {
        let Ok(target) = f.roots.open(path, access, "fuzzing") else { continue };
        assert!(inside(&target.path), "{path:?} ({access:?}) escaped to {:?}", target.path);
        let real = std::fs::read_link(format!("/proc/self/fd/{}", target.dir.as_raw_fd())).unwrap();
        assert!(inside(&real), "{path:?} ({access:?}) opened {real:?}");
        if access == Access::Write {
            if let Some(name) = &target.name {
                if aloop::files::atomic::write_at(target.dir.as_fd(), name, b"x").is_ok() {
                    let _ = std::fs::remove_file(real.join(name));
                }
            }
        }
        assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 0, "{path:?} wrote outside");
    }
});
