//! The HTML reports (`--report`): a page of each kind (run, merged run, comparison, sweep,
//! lab), each well-formed and self-contained (no reference to any other host, no script),
//! with the charts its kind promises; and the compact timeline of the text report.

use std::time::Duration;

use loadgen::scenario::{Engine, Load, Scenario};
use server_core::ServerArgs;
use simulator::measure::sweep::SweepSpec;
use simulator::measure::{self as run, sweep};
use simulator::output::html::{self, Provenance};
use simulator::{labs, Servers};

/// Checks that `html` is well-formed: every element closed in order (void elements written
/// `<br />`), comments, the doctype and an XML declaration skipped. Returns the element names seen.
fn well_formed(html: &str) -> Result<Vec<String>, String> {
    let mut open: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("an unclosed comment")?;
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("an unclosed tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        // The doctype, and an SVG file's XML declaration.
        if tag.starts_with("!DOCTYPE") || tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(o) if o == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if name.is_empty() {
            return Err(format!("a stray '<' before {tag:?}"));
        }
        seen.push(name.clone());
        if !tag.ends_with('/') {
            open.push(name);
        }
    }
    if !open.is_empty() {
        return Err(format!("never closed: {open:?}"));
    }
    Ok(seen)
}

/// Checks a page as its reader's browser would take it: well-formed, and nothing in it that
/// would make the browser ask another host for anything, or run anything.
fn check_page(kind: &str, html: &str, must_have: &[&str]) {
    let names = well_formed(html).unwrap_or_else(|e| panic!("the {kind} page: {e}"));
    assert!(
        names.contains(&"svg".to_owned()),
        "the {kind} page has no chart"
    );
    for forbidden in [
        "http://", "https://", "<script", "src=", "href=", "url(", "@import",
    ] {
        assert!(
            !html.contains(forbidden),
            "the {kind} page contains {forbidden:?}"
        );
    }
    for text in must_have {
        assert!(html.contains(text), "the {kind} page lacks {text:?}");
    }
}

fn provenance() -> Provenance {
    Provenance {
        command: "simulator run --report 'a b.html'".into(),
        commit: "abc".into(),
        machine: "2 CPUs".into(),
        written: "now".into(),
    }
}

#[test]
fn a_runs_page_shows_the_story_and_the_server_from_inside() {
    let server = Servers::only("prefork-pool")
        .with("workers", 2)
        .start("prefork-pool", ServerArgs::default())
        .expect("the server starts");
    let scenario = Scenario::get(4, "/sleep/150", Duration::from_millis(250), Duration::ZERO);
    let report = run::run_in_process(&server, &scenario, true).expect("the run");
    server.stop().expect("stop");
    // The watch read /stats during the run: every 100 ms, so at least twice in 300 ms.
    assert!(
        report.server_series.len() >= 2,
        "{:?}",
        report.server_series
    );
    assert!(report.server_series.iter().any(|s| s
        .values
        .iter()
        .any(|(name, busy)| name == "worker busy" && *busy == 2)));
    let page = html::run_page(&report, &provenance());
    check_page(
        "run",
        &page,
        &[
            "Clients on a timeline",
            "deadline",
            "Latency",
            "Inside the server",
            "Fairness",
            "served within the deadline",
            "predicted 2 served: agrees",
            "simulator run --report &#39;a b.html&#39;",
            // The replay: the timeline and the server's queues, each with its curtain,
            // and the checkbox that pauses them.
            "<h2 id=\"replay\">Replay</h2>",
            "<input type=\"checkbox\" class=\"pause\" id=\"pause\" />",
            "each client&#39;s timeline, replayed",
            "the server&#39;s queues and busy threads, replayed",
        ],
    );
    assert_eq!(
        page.matches("class=\"moving veil\"").count(),
        2,
        "a curtain per chart"
    );
    assert_eq!(page.matches("class=\"moving cursor\"").count(), 2);
    assert!(!page.contains("<script"), "the replay needs no script");
    // The frames for slides: the timeline at evenly spaced moments, each a complete file.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("frames-run");
    let _ = std::fs::remove_dir_all(&dir);
    let frames = simulator::output::frames::write(&report, &dir, 5).expect("the frames");
    let names: Vec<String> = frames
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "frame-001.svg",
            "frame-002.svg",
            "frame-003.svg",
            "frame-004.svg",
            "frame-005.svg"
        ]
    );
    let text: Vec<String> = frames
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("a frame"))
        .collect();
    for frame in &text {
        assert!(
            frame.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{frame}"
        );
        assert!(frame.contains(">t = "), "each frame names its moment");
        well_formed(frame).unwrap_or_else(|e| panic!("a frame: {e}"));
    }
    assert!(
        text[0].contains(">t = 0µs<"),
        "the first frame is the start"
    );
    assert_ne!(text[1], text[3], "frames at different moments differ");
    // The text report of a run this small has a timeline with the deadline in one column.
    let text = report.to_text();
    assert!(text.contains("timeline: one column ="), "{text}");
    let columns: Vec<Option<usize>> = text
        .lines()
        .skip_while(|l| !l.contains("timeline: one column"))
        .skip(1)
        .take(4)
        .map(|l| l.find('|'))
        .collect();
    assert_eq!(columns.len(), 4, "{text}");
    // Served clients' bars end before the deadline; the unserved reach it.
    let deadline = columns.iter().flatten().next().copied();
    assert!(deadline.is_some(), "{text}");
    assert!(
        columns.iter().flatten().all(|c| Some(*c) == deadline),
        "{text}"
    );
}

#[test]
fn a_load_run_page_has_its_time_series_and_a_large_one_samples_its_rows() {
    let server = Servers::only("event-loop")
        .start("event-loop", ServerArgs::default())
        .expect("the server starts");
    let scenario = Scenario {
        load: Load::Duration(Duration::from_millis(1200)),
        ..Scenario::get(300, "/", Duration::from_secs(1), Duration::ZERO)
    };
    let report = run::run_in_process(&server, &scenario, false).expect("the run");
    server.stop().expect("stop");
    let page = html::run_page(&report, &provenance());
    check_page(
        "load run",
        &page,
        &[
            "Over time",
            "requests per second",
            "one in 3 is drawn",
            "All clients by state over time",
            "Jain",
        ],
    );
}

/// A ramp's page draws the rate it asked for beside what was sent, and the `--slo` gates
/// are a table, each as measured against required.
#[test]
fn a_ramps_page_shows_the_asked_rate_and_the_gates() {
    let server = Servers::only("event-loop")
        .start("event-loop", ServerArgs::default())
        .expect("the server starts");
    let stages = [
        loadgen::scenario::Stage {
            duration: Duration::from_millis(600),
            rate: 400.0,
        },
        loadgen::scenario::Stage {
            duration: Duration::from_millis(600),
            rate: 0.0,
        },
    ];
    let mut scenario = Scenario::get(4, "/", Duration::from_secs(1), Duration::ZERO);
    scenario.load = Load::Rate(loadgen::scenario::OpenLoop {
        rate: 200.0,
        duration: Duration::from_millis(1200),
        arrivals: loadgen::scenario::Arrivals::Constant,
        when_busy: loadgen::scenario::WhenBusy::Queue,
        seed: 1,
        stages: loadgen::scenario::Stages::new(&stages).expect("two stages"),
    });
    let mut report = run::run_in_process(&server, &scenario, false).expect("the run");
    server.stop().expect("stop");
    report.gates = vec![
        loadgen::slo::Judged {
            gate: "served>=99%".into(),
            measured: "100.00%".into(),
            required: ">= 99%".into(),
            met: true,
        },
        loadgen::slo::Judged {
            gate: "p99<1us".into(),
            measured: "80us".into(),
            required: "< 1us".into(),
            met: false,
        },
    ];
    let page = html::run_page(&report, &provenance());
    check_page(
        "ramp",
        &page,
        &[
            "Over time",
            "asked (--stages)",
            "Gates (--slo): 1 of 2 met",
            "<code>p99&lt;1us</code>",
            "MISSED",
        ],
    );
}

#[test]
fn comparison_sweep_and_lab_pages() {
    let scenario = Scenario::get(4, "/sleep/100", Duration::from_millis(250), Duration::ZERO);
    let servers = Servers {
        archs: vec!["single", "event-loop"],
        ..Servers::default()
    };
    let reports = simulator::measure::compare(&scenario, &servers, false).expect("the comparison");
    let page = html::compare_page(&scenario, &reports, &provenance());
    check_page(
        "comparison",
        &page,
        &[
            "Side by side",
            "Latency, side by side",
            "single",
            "event-loop",
        ],
    );

    let mut open = Scenario::get(8, "/sleep/20", Duration::from_millis(100), Duration::ZERO);
    open.load = Load::Rate(loadgen::scenario::OpenLoop {
        rate: 1.0,
        duration: Duration::from_millis(300),
        arrivals: loadgen::scenario::Arrivals::Constant,
        when_busy: loadgen::scenario::WhenBusy::Queue,
        seed: 1,
        stages: Default::default(),
    });
    let spec = SweepSpec {
        scenario: open,
        rates: vec![100.0, 300.0],
        step: Duration::from_millis(300),
        goal: 0.99,
        refine: 0,
        ramp: None,
    };
    let sweeps = sweep::sweep_in_process(&Servers::only("event-loop"), &spec).expect("the sweep");
    let page = html::sweep_page(&sweeps, &provenance());
    check_page(
        "sweep",
        &page,
        &["Goodput against offered load", "The knees", "goal 99%"],
    );

    let mut env = labs::LabEnv::new(0.1, None, Engine::Events);
    env.record = true;
    let lab = labs::find(4).expect("lab 4");
    let checks = lab.run(&env).expect("the lab runs");
    let runs = env.recorded();
    assert_eq!(runs.len(), 1, "lab 4 measures one run");
    let page = html::lab_page(&lab, &env, &checks, &runs, &provenance());
    check_page(
        "lab",
        &page,
        &["Lab 4", "Checks", "The runs", "Clients on a timeline"],
    );
}

#[test]
fn the_checker_catches_what_it_should() {
    assert!(well_formed("<p><b>x</p></b>").is_err());
    assert!(well_formed("<p>x").is_err());
    assert!(well_formed("<p>a < b</p>").is_err());
    assert!(well_formed("<!DOCTYPE html><p>x<br /></p><!-- <p> -->").is_ok());
}
