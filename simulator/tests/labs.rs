//! Every lab at scaled time (one lecture second = 100 ms), asserting its expected outcome.
//! They run one after another in one test, so that the load-generating labs do not
//! disturb the timing of the others on a 2-core machine.

use simulator::labs::{self, LabEnv};

#[test]
fn every_lab_agrees_with_its_expected_result() {
    let env = LabEnv {
        scale: 0.1,
        target: None,
    };
    let mut failures = Vec::new();
    for lab in labs::all() {
        let checks = lab
            .run(&env)
            .unwrap_or_else(|e| panic!("lab {} could not run: {e}", lab.id));
        assert!(!checks.is_empty(), "lab {} checks nothing", lab.id);
        if checks.iter().any(|c| !c.agrees) {
            failures.push(labs::to_text(&lab, &env, &checks));
        }
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(lab.sheet)
                .exists(),
            "lab {} has no sheet",
            lab.id
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn labs_that_start_their_own_servers_refuse_a_target() {
    let env = LabEnv {
        scale: 0.1,
        target: Some("127.0.0.1:9".into()),
    };
    assert!(labs::find(7).expect("lab 7").run(&env).is_err());
    assert!(labs::find(99).is_err());
}

#[test]
fn a_lab_runs_against_a_server_the_student_started() {
    let server =
        protocol::RunningServer::start(single::Single::default(), protocol::ServerArgs::default())
            .expect("the server starts");
    let env = LabEnv {
        scale: 0.1,
        target: Some(server.addr().to_string()),
    };
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
    server.stop().expect("stop");

    // The wrong kind of server is named in one sentence.
    let pool = protocol::RunningServer::start(
        prefork_pool::PreforkPool::default(),
        protocol::ServerArgs::default(),
    )
    .expect("the server starts");
    let env = LabEnv {
        scale: 0.1,
        target: Some(pool.addr().to_string()),
    };
    let error = labs::find(1)
        .expect("lab 1")
        .run(&env)
        .expect_err("lab 1 needs a sequential server");
    assert!(
        error.to_string().contains("needs a single server"),
        "{error}"
    );
}
