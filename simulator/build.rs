//! Records the commit the simulator is built from, for the reports' "Reproduce" table
//! (`SERVELAB_COMMIT`). Outside a git checkout (a source tarball, a Docker build without
//! `.git`) it records nothing, and the reports say `unknown`.

use std::process::Command;

fn main() {
    for path in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(commit) = commit {
        println!("cargo:rustc-env=SERVELAB_COMMIT={commit}");
    }
}
