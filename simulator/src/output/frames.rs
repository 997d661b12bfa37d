//! `--frames DIR`: a run's timeline as numbered SVG stills, for slides.
//!
//! A lecturer who wants the queue to form on a slide, click by click, cannot put a live
//! terminal or an animated page into a slide deck; a sequence of pictures goes anywhere.
//! Each frame is the report's timeline (the same chart as the HTML report's, one row per
//! client) with everything after one moment veiled and that moment marked in red: frame 1
//! at the common start, the last at the end of the run, evenly spaced between. Each file
//! is a complete SVG (with its namespace and a white background), named `frame-001.svg`,
//! `frame-002.svg`, ... so that a file manager, `convert` or a slide tool takes them in
//! order.

use std::path::{Path, PathBuf};

use super::html::sections::timeline_plot;
use crate::report::Report;
use crate::SimError;
use loadgen::units::human_us;

/// The fewest and most frames `--frame-count` takes: two show a before and an after;
/// more than a thousand is a film, not slides.
pub const FRAME_COUNTS: std::ops::RangeInclusive<usize> = 2..=1000;

/// Writes `count` frames of `report`'s timeline into `dir` (created if missing) and
/// returns their paths. A run without clients has no timeline and writes nothing.
pub fn write(report: &Report, dir: &Path, count: usize) -> Result<Vec<PathBuf>, SimError> {
    let count = count.clamp(*FRAME_COUNTS.start(), *FRAME_COUNTS.end());
    let Some(drawn) = timeline_plot(report) else {
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).map_err(|source| SimError::Write {
        path: dir.to_owned(),
        source,
    })?;
    // Zero-padded to the same width, so that the names sort in order.
    let width = count.to_string().len().max(3);
    let mut written = Vec::with_capacity(count);
    for k in 0..count {
        // Evenly from the start to the end of the part of the axis with data.
        let at = drawn.span * k as f64 / (count - 1) as f64;
        let mut plot = drawn.plot.clone();
        plot.curtain_at(at, &format!("t = {}", human_us(at as u64)));
        let svg = plot.finish_standalone(&format!(
            "each client's timeline at {}, frame {} of {count}",
            human_us(at as u64),
            k + 1
        ));
        let path = dir.join(format!("frame-{:0width$}.svg", k + 1));
        std::fs::write(&path, svg).map_err(|source| SimError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
