//! Live progress of a run in the terminal: elapsed and remaining, requests
//! per second, p99 so far, errors, anomalies so far and the fault in force.
//! Hidden when stderr is not a terminal; fault steps are then plain lines.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar of one run.
pub struct Progress {
    bar: ProgressBar,
    last: Option<(Duration, u64)>,
}

/// What the bar shows at one moment.
pub struct Figures {
    pub elapsed: Duration,
    pub requests: u64,
    pub errors: u64,
    pub p99_micros: u64,
    pub anomalies: Option<usize>,
    pub faults_in_force: Vec<String>,
}

impl Progress {
    /// A bar for a run of `total`, labelled `label`.
    pub fn new(label: &str, total: Duration) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_secs().max(1)), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:24}] {elapsed_precise} / {duration_precise}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        Self { bar, last: None }
    }

    pub fn update(&mut self, figures: &Figures) {
        let rate = match self.last {
            Some((at, requests)) if figures.elapsed > at => {
                (figures.requests - requests) as f64 / (figures.elapsed - at).as_secs_f64()
            }
            _ => 0.0,
        };
        self.last = Some((figures.elapsed, figures.requests));
        let anomalies = figures
            .anomalies
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let faults = if figures.faults_in_force.is_empty() {
            String::new()
        } else {
            format!("  fault: {}", figures.faults_in_force.join(", "))
        };
        self.bar.set_position(figures.elapsed.as_secs());
        self.bar.set_message(format!(
            "{rate:>6.0} req/s  p99 {:.1} ms  errors {}  anomalies {anomalies}{faults}",
            figures.p99_micros as f64 / 1e3,
            figures.errors
        ));
    }

    /// Prints lines above the bar (or on stderr when there is no bar),
    /// without holding the progress itself.
    pub fn printer(&self) -> impl Fn(&str) + Send + 'static {
        let bar = self.bar.clone();
        move |text: &str| {
            if bar.is_hidden() {
                // A closed stderr (a supervisor that stopped reading) is no
                // reason to stop a run.
                let _ = writeln!(std::io::stderr(), "{text}");
            } else {
                bar.println(text);
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
