//! The capacity projection: store memory and IdP token calls per second at
//! 10x, 100x and 1000x the run's sessions, from a straight-line fit of what
//! the run measured. The inputs and the fit are shown beside the figures so a
//! reader sees how far the projection stretches the data.

use crate::model::sample::Sample;
use crate::results::Results;

/// The multiples of the run's sessions projected to.
pub const SCALES: [u64; 3] = [10, 100, 1000];

/// A fit of store bytes against sessions stored: `bytes = base + per_session * sessions`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub base_bytes: f64,
    pub per_session: f64,
    /// How well the line fits the samples (None when it is not a regression).
    pub r_squared: Option<f64>,
    /// Samples the fit used, and the range of sessions they spanned.
    pub points: usize,
    pub sessions_range: (u64, u64),
    /// How the line was had: a least-squares fit over the samples, or the
    /// last sample's bytes over live sessions when the samples do not spread.
    pub method: &'static str,
}

/// One option's projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Live sessions at the end of the run (the 1x point).
    pub sessions: u64,
    pub fit: Option<Fit>,
    pub token_calls: u64,
    pub duration_secs: f64,
    /// Token calls per second per live session, as the run measured.
    pub calls_per_session_second: Option<f64>,
    /// (scale, sessions, store bytes, token calls/s).
    pub rows: Vec<(u64, u64, Option<f64>, Option<f64>)>,
}

/// Sessions in the store at a sample: the instances' own count of their
/// session store's entries. A shared store is seen whole by every instance
/// (take the largest); per-instance memory is summed.
pub fn sessions_stored(sample: &Sample, shared_store: bool) -> Option<u64> {
    let counts = sample.instances.iter().filter_map(|i| i.store_entries);
    if shared_store {
        counts.max()
    } else {
        counts.reduce(|a, b| a + b)
    }
}

/// The (sessions, store bytes) points of a run's samples, every source's.
pub fn points(results: &Results) -> Vec<(f64, f64)> {
    let shared = results.topology.session_backend != "memory";
    results
        .timelines
        .iter()
        .flat_map(|t| &t.samples)
        .filter_map(|s| Some((sessions_stored(s, shared)? as f64, s.store_bytes() as f64)))
        .collect()
}

/// Least squares through the points, when they spread over at least two
/// session counts; else the last sample's bytes per live session.
pub fn fit(results: &Results) -> Option<Fit> {
    let points = points(results);
    let n = points.len() as f64;
    let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if points.len() >= 3 && hi > lo {
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
        let slope = sxy / sxx;
        // A store can shrink as sessions come and go (Redis frees lazily):
        // a negative slope says the samples do not show the per-session
        // cost, so fall back to the plain ratio rather than project a shrink.
        if slope > 0.0 {
            return Some(Fit {
                base_bytes: my - slope * mx,
                per_session: slope,
                r_squared: (syy > 0.0).then(|| (sxy * sxy) / (sxx * syy)),
                points: points.len(),
                sessions_range: (lo as u64, hi as u64),
                method: "least squares over the samples",
            });
        }
    }
    let per_session = results.leaks.store_bytes_per_session?;
    Some(Fit {
        base_bytes: 0.0,
        per_session,
        r_squared: None,
        points: 1,
        sessions_range: (
            results.leaks.live_sessions_at_end,
            results.leaks.live_sessions_at_end,
        ),
        method: "last sample's store bytes over live sessions",
    })
}

/// The projection of one run.
pub fn project(results: &Results) -> Projection {
    let sessions = results.leaks.live_sessions_at_end;
    let fit = fit(results);
    let duration_secs = results
        .sources
        .iter()
        .map(|s| s.duration_secs)
        .fold(0.0, f64::max);
    let token_calls = results.idp.token_calls;
    // Merged runs ran side by side: their sessions add and so do their calls,
    // so calls per live session per second stay the per-source figure.
    let calls_per_session_second = (sessions > 0 && duration_secs > 0.0)
        .then(|| token_calls as f64 / sessions as f64 / duration_secs);
    let rows = SCALES
        .iter()
        .map(|&scale| {
            let n = sessions * scale;
            (
                scale,
                n,
                fit.as_ref()
                    .map(|f| f.base_bytes + f.per_session * n as f64),
                calls_per_session_second.map(|c| c * n as f64),
            )
        })
        .collect();
    Projection {
        sessions,
        fit,
        token_calls,
        duration_secs,
        calls_per_session_second,
        rows,
    }
}
