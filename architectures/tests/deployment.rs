//! The one deployment file that lists architectures by hand: `compose.yaml` runs a server
//! container for each and the simulator against all of them. (The Dockerfile and the scripts
//! ask the registry, through `simulator architectures --names`.) This test fails until an
//! architecture added to the registry is in it too.

#[test]
fn the_compose_comparison_runs_every_architecture() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose.yaml");
    let compose = std::fs::read_to_string(&path).expect("read compose.yaml");
    let targets = compose
        .lines()
        .find(|l| l.contains("\"--target\""))
        .expect("the simulator's --target line");
    for entry in architectures::ALL {
        assert!(
            compose.contains(&format!("\n  {}:\n", entry.name)),
            "compose.yaml has no service {}",
            entry.name
        );
        assert!(
            targets.contains(&format!("{}:7777", entry.name)),
            "the compose simulator does not measure {}: {targets}",
            entry.name
        );
    }
}
