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
