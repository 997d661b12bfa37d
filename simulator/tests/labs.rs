//! The labs' plumbing: sheets, and `--target`; and every lab on the thread-per-client
//! engine. Every lab is also run on the default event-driven engine, at scaled time and as
//! its sheet documents it, by `tests/documented_commands.rs`.

use loadgen::scenario::Engine;
use simulator::labs::{self, LabEnv};

#[test]
fn every_lab_agrees_on_the_thread_per_client_engine() {
    // Both engines run the same clients, so every lab's checks must agree on this one too.
    let env = LabEnv::new(0.1, None, Engine::Threads);
    let mut failed = Vec::new();
    for lab in labs::all() {
        let checks = lab
            .run(&env)
            .unwrap_or_else(|e| panic!("lab {} could not run: {e}", lab.id));
        assert!(!checks.is_empty(), "lab {} checked nothing", lab.id);
        if checks.iter().any(|c| !c.agrees) {
            failed.push(simulator::output::text::lab_text(&lab, &env, &checks));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_lab_has_a_sheet() {
    for lab in labs::all() {
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(lab.sheet)
                .exists(),
            "lab {} has no sheet",
            lab.id
        );
    }
}

#[test]
fn labs_that_start_their_own_servers_refuse_a_target() {
    let env = LabEnv::new(0.1, Some("127.0.0.1:9".into()), Engine::Events);
    assert!(labs::find(7).expect("lab 7").run(&env).is_err());
    assert!(labs::find(99).is_err());
}

#[test]
fn a_lab_runs_against_a_server_the_student_started() {
    let server = simulator::Servers::default()
        .start("single", server_core::ServerArgs::default())
        .expect("the server starts");
    let env = LabEnv::new(0.1, Some(server.addr().to_string()), Engine::Events);
    let checks = labs::find(2)
        .expect("lab 2")
        .run(&env)
        .expect("lab 2 runs against the target");
    assert_eq!(checks.len(), 1);
    assert!(checks[0].agrees, "{:?}", checks[0]);
    // Lab 5 against a sequential server runs only the sequential step.
    let checks = labs::find(5).expect("lab 5").run(&env).expect("lab 5 runs");
    assert_eq!(checks.len(), 1);
    assert!(checks[0].what.starts_with("single"));
    // Lab 3 has no step for a sequential server: an error, never "all 0 checks agree".
    let error = labs::find(3)
        .expect("lab 3")
        .run(&env)
        .expect_err("lab 3 has nothing to measure on a sequential server");
    assert!(
        error
            .to_string()
            .contains("needs a thread-per-conn or prefork-pool server, but"),
        "{error}"
    );
    server.stop().expect("stop");

    // The wrong kind of server is named in one sentence.
    let pool = simulator::Servers::default()
        .start("prefork-pool", server_core::ServerArgs::default())
        .expect("the server starts");
    let env = LabEnv::new(0.1, Some(pool.addr().to_string()), Engine::Events);
    let error = labs::find(1)
        .expect("lab 1")
        .run(&env)
        .expect_err("lab 1 needs a sequential server");
    assert!(
        error.to_string().contains("needs a single server"),
        "{error}"
    );
}
