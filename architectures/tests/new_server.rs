//! `scripts/new-server.sh NAME` turns the coursework starter into a registered architecture
//! in one command. These tests run it on a copy of the repository (the checkout itself is
//! never changed) and check what a student relies on: the copy is renamed, the registry
//! lists it, the workspace still builds with it, and a bad or taken name changes nothing.
//!
//! The copy and its build live under Cargo's scratch directory for tests, at fixed paths,
//! so a second run reuses the first one's compiled dependencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root: this crate is one level below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the architectures crate lives inside the repository")
        .to_path_buf()
}

/// A fresh copy of the repository's sources (no `target`, no `.git`) at `dest`.
fn copy_repository(dest: &Path) {
    if dest.exists() {
        std::fs::remove_dir_all(dest).expect("remove the previous copy");
    }
    std::fs::create_dir_all(dest).expect("create the copy's directory");
    // Blocks until tar has packed and unpacked the sources (a few MB).
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"tar -C "$1" --exclude=./target --exclude=./.git --exclude=./fuzz/target -cf - . | tar -C "$2" -xf -"#)
        .arg("copy")
        .arg(root())
        .arg(dest)
        .status()
        .expect("run tar");
    assert!(status.success(), "copying the repository failed");
}

/// Runs the script in `repo` with `args`; blocks until it has finished (it only copies and
/// edits files).
fn new_server(repo: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo.join("scripts/new-server.sh"))
        .args(args)
        .current_dir(repo)
        .output()
        .expect("run scripts/new-server.sh")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn one_command_copies_renames_and_registers_a_server_that_builds() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-server");
    let repo = scratch.join("repo");
    copy_repository(&repo);

    let out = new_server(&repo, &["my-server"]);
    assert!(
        out.status.success(),
        "new-server.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("grade my-server"),
        "it says how to grade: {said}"
    );

    let copy = repo.join("servers/my-server");
    let manifest = read(&copy.join("Cargo.toml"));
    assert!(manifest.contains("name = \"my-server\""), "{manifest}");
    assert!(!manifest.contains("\"starter\""), "{manifest}");
    let lib = read(&copy.join("src/lib.rs"));
    assert!(lib.contains("const NAME: &'static str = \"my-server\";"));
    assert!(read(&copy.join("src/main.rs")).contains("my_server::Starter"));
    let test = read(&copy.join("tests/serves.rs"));
    assert!(test.contains("use my_server::Starter;") && test.contains("CARGO_BIN_EXE_my-server"));

    let registry = read(&repo.join("architectures/src/lib.rs"));
    let entry = registry
        .find("entry::<my_server::Starter>(),")
        .expect("the entry is in ALL");
    let last = registry
        .find("entry::<io_uring_server::IoUring>(),")
        .expect("the built-in entries are still there");
    assert!(entry > last, "the new entry comes after the built-in ones");
    assert!(read(&repo.join("architectures/Cargo.toml"))
        .contains("my-server = { path = \"../servers/my-server\" }"));

    // The workspace builds with the new architecture in it (type-checked, no code generated).
    // Blocks until cargo has checked the registry and the new crate; offline, because the
    // dependencies are the ones this build already fetched.
    let check = Command::new(env!("CARGO"))
        .args([
            "check",
            "--offline",
            "--quiet",
            "-p",
            "architectures",
            "-p",
            "my-server",
        ])
        .env("CARGO_TARGET_DIR", scratch.join("target"))
        .current_dir(&repo)
        .output()
        .expect("run cargo check");
    assert!(
        check.status.success(),
        "the registered copy does not build:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_bad_or_taken_name_is_refused_and_changes_nothing() {
    let repo = Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-server-refusals");
    copy_repository(&repo);
    let registry_before = read(&repo.join("architectures/src/lib.rs"));

    for (args, status, says) in [
        (&["My_Server"][..], 2, "not a crate name"),
        (&["-x"][..], 2, "not a crate name"),
        (&[][..], 2, "usage"),
        (&["event-loop"][..], 1, "already exists"),
        (&["protocol"][..], 1, "already has a crate"),
        (&["starter"][..], 1, "already has a crate"),
    ] {
        let out = new_server(&repo, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    }
    assert_eq!(
        read(&repo.join("architectures/src/lib.rs")),
        registry_before
    );
    assert!(!repo.join("servers/My_Server").exists());
}
