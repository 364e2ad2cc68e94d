//! Stamps the git commit into `ebsnap --version` when built from a checkout
//! ("0.1.0 (commit 1a2b3c4)"); a build from a source tarball says only the
//! version.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty());
    let full = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version.to_owned(),
    };
    println!("cargo:rustc-env=EBSNAP_VERSION={full}");
    // Without a rerun-if-changed line cargo reruns this script whenever any
    // file of the package changes; with one, only when a named file does.
    println!("cargo:rerun-if-changed=build.rs");
    // Build again when HEAD moves: HEAD itself, and the branch it points to
    // (a loose ref, or packed-refs once git packed it). Asked of git, not
    // assumed at .git/: in a worktree .git is a file, and HEAD and the refs
    // live elsewhere. Only files that exist are named: cargo takes a named
    // file that is missing as changed, and would rebuild the crate on every
    // build (a checkout without packed-refs did, every time).
    let git_path = |path: &str| {
        Command::new("git")
            .args(["rev-parse", "--git-path", path])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|p| p.trim().to_owned())
    };
    let watch = |path: &Path| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    let Some(head) = git_path("HEAD").filter(|p| Path::new(p).exists()) else {
        return;
    };
    watch(Path::new(&head));
    let branch = std::fs::read_to_string(&head)
        .ok()
        .and_then(|text| text.strip_prefix("ref: ").map(|b| b.trim().to_owned()));
    if let Some(loose) = branch.as_deref().and_then(git_path) {
        let loose = Path::new(&loose);
        // A branch only in packed-refs gets its loose file back with the
        // next commit: its folder (a folder is scanned for any change).
        if loose.exists() {
            watch(loose);
        } else if let Some(folder) = loose.parent() {
            watch(folder);
        }
    }
    if let Some(packed) = git_path("packed-refs") {
        watch(Path::new(&packed));
    }
}
