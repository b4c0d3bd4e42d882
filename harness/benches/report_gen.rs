//! Report generation from four 10-minute results files (target: under 2 s).
//!
//! The files are made from the committed fixtures (real short runs of the
//! four options), stretched to 600 seconds: their per-second latency and
//! their samples repeated end to end with the times shifted, and their
//! fault steps repeated in each copy. Histograms and anomaly examples keep
//! their size whatever a run's length (HDR buckets; five examples a
//! family), so what grows with a longer run is exactly what is repeated.
//! The figure covers reading the four files and writing the report.
//!
//!     cargo bench -p harness --bench report_gen

use std::path::PathBuf;
use std::time::Instant;

use harness::results::Results;

const SECONDS: u64 = 600;

fn stretched(mut run: Results) -> Results {
    for timeline in &mut run.timelines {
        let span = (timeline.seconds.len() as u64).max(1);
        let (seconds, samples, faults) = (
            timeline.seconds.clone(),
            timeline.samples.clone(),
            timeline.faults.clone(),
        );
        timeline.seconds.clear();
        timeline.samples.clear();
        timeline.faults.clear();
        for copy in 0..SECONDS.div_ceil(span) {
            let shift = copy * span;
            let base = timeline.faults.len();
            for s in &seconds {
                let mut s = s.clone();
                s.second += shift;
                timeline.seconds.push(s);
            }
            for s in &samples {
                let mut s = s.clone();
                s.at += shift * 1_000_000;
                timeline.samples.push(s);
            }
            for f in &faults {
                let mut f = f.clone();
                f.at += shift * 1_000_000;
                f.ends = f.ends.map(|e| e + base);
                timeline.faults.push(f);
            }
        }
        timeline.seconds.truncate(SECONDS as usize);
    }
    for source in &mut run.sources {
        source.duration_secs = SECONDS as f64;
    }
    run
}

fn main() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    let mut bytes = 0;
    for option in ["option1", "option2", "option3", "option4"] {
        let run = Results::read(&fixtures.join(format!("short-{option}.json"))).expect("fixture");
        let path = dir.path().join(format!("long-{option}.json"));
        stretched(run).write(&path).expect("write");
        bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        files.push(path);
    }
    let out = dir.path().join("report.html");
    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        harness::report::write(&files, &out).expect("report");
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let page = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "report from 4 x {SECONDS} s results files ({:.1} MiB in all): median {:.3} s, worst {:.3} s over {} runs (target < 2 s); page {:.1} KiB",
        bytes as f64 / 1_048_576.0,
        times[times.len() / 2],
        times[times.len() - 1],
        times.len(),
        page as f64 / 1024.0
    );
}
