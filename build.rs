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
    // Build again when HEAD moves: HEAD itself, and the branch it points to.
    // Asked of git, not assumed at .git/: in a worktree .git is a file, and
    // HEAD and the refs live elsewhere.
    let git_path = |path: &str| {
        Command::new("git")
            .args(["rev-parse", "--git-path", path])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|p| p.trim().to_owned())
    };
    if let Some(head) = git_path("HEAD").filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={head}");
        if let Ok(text) = std::fs::read_to_string(&head) {
            if let Some(branch) = text.strip_prefix("ref: ").and_then(|b| git_path(b.trim())) {
                println!("cargo:rerun-if-changed={branch}");
            }
        }
        if let Some(packed) = git_path("packed-refs") {
            println!("cargo:rerun-if-changed={packed}");
        }
    }
}
