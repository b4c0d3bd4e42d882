//! The report's charts, drawn by plotters into SVG strings that the page
//! inlines (no scripts, no fonts fetched: text is SVG `<text>` the browser
//! sets in its own sans-serif).
//!
//! Every label that comes from a results file goes through [`plain`] before
//! it reaches plotters, so nothing from a file can become markup in the SVG.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::check::windows;
use crate::results::{Results, Timeline};

use super::projection::{self, Projection};
use super::{Column, ReportError};

/// One drawn chart.
pub struct Chart {
    /// What kind of chart (`latency-distribution`, ...): the page's
    /// `data-chart` attribute, which tests and readers look for.
    pub key: &'static str,
    pub title: String,
    pub svg: String,
}

/// Line colours, one per option (colour-blind friendly: Okabe and Ito).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

const SIZE: (u32, u32) = (760, 340);
const FONT: &str = "sans-serif";

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Only characters that mean nothing in XML, for labels drawn in SVG.
pub fn plain(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || " -_.:/()%+,=#".contains(c) {
                c
            } else {
                '?'
            }
        })
        .take(60)
        .collect()
}

fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Draws with `draw` into a fresh SVG string.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn,
) -> Result<String, ReportError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| ReportError::Chart(e.to_string()))?;
        draw(&root).map_err(|e| ReportError::Chart(e.to_string()))?;
        root.present()
            .map_err(|e| ReportError::Chart(e.to_string()))?;
    }
    Ok(out)
}

/// The frame every chart shares: its caption, margin and axis label room.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
) -> ChartBuilder<'a, 'a, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(caption, (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56);
    builder
}

type Plot<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// A named line in colour `c`, with its legend entry.
fn line<X, Y>(
    chart: &mut Plot<'_, '_, X, Y>,
    name: String,
    points: Vec<(f64, f64)>,
    c: RGBColor,
) -> Drawn
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(points, c.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
    Ok(())
}

/// The legend box, at `position`.
fn legend<'b, X, Y>(chart: &mut Plot<'b, 'b, X, Y>, position: SeriesLabelPosition) -> Drawn
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// x of a quantile on the HDR percentile axis: log10(1 / (1 - q)), so 90%,
/// 99%, 99.9%, 99.99% fall at 1, 2, 3, 4.
fn nines(q: f64) -> f64 {
    (1.0 / (1.0 - q).max(1e-6)).log10()
}

fn nines_label(x: &f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-*x));
    if *x < 0.5 {
        "0%".into()
    } else {
        format!("{}%", (q * 1000.0).round() / 1000.0)
    }
}

/// The percentile distribution of each request type of one option (HDR
/// style: percentile on a log axis of nines, latency on a log axis).
pub fn latency_distribution(column: &Column<'_>) -> Result<Chart, ReportError> {
    let mut lines = Vec::new();
    for kind in column.results.kinds() {
        let (count, histogram) = column.results.kind(&kind)?;
        if count == 0 {
            continue;
        }
        // Past the last recorded quantile the line is flat: stop at the
        // nines the sample size supports (1 / count).
        let top = nines(1.0 - 1.0 / count as f64).min(4.0);
        let points: Vec<(f64, f64)> = (0..=160)
            .map(|i| f64::from(i) / 40.0)
            .filter(|x| *x <= top)
            .map(|x| {
                let q = 1.0 - 10f64.powf(-x);
                (x, histogram.value_at_quantile(q).max(1) as f64 / 1e3)
            })
            .collect();
        lines.push((plain(&kind), points));
    }
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let min = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(max, f64::min);
    let title = format!("{}: latency by percentile", plain(&column.label));
    let caption = title.clone();
    let svg = svg(|root| {
        let mut chart = frame(root, &caption)
            .build_cartesian_2d(0f64..4f64, (min * 0.8..max * 1.25).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile (corrected for coordinated omission)")
            .y_desc("ms")
            .x_labels(5)
            .x_label_formatter(&nines_label)
            .draw()?;
        for (index, (name, points)) in lines.into_iter().enumerate() {
            line(&mut chart, name, points, colour(index))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })?;
    Ok(Chart {
        key: "latency-distribution",
        title,
        svg,
    })
}

/// p50 and p99 per second of one source's run, fault windows shaded.
pub fn latency_over_time(column: &Column<'_>, timeline: &Timeline) -> Result<Chart, ReportError> {
    let ms = |us: u64| us.max(1) as f64 / 1e3;
    let p50: Vec<(f64, f64)> = timeline
        .seconds
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| (s.second as f64, ms(s.p50_us)))
        .collect();
    let p99: Vec<(f64, f64)> = timeline
        .seconds
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| (s.second as f64, ms(s.p99_us)))
        .collect();
    let end_secs = timeline.seconds.len().max(1) as f64;
    let run_end = (end_secs * 1e6) as u64;
    let shaded: Vec<(String, f64, f64)> = windows::windows(&timeline.faults, run_end)
        .into_iter()
        .map(|w| {
            (
                plain(&w.label),
                w.from as f64 / 1e6,
                (w.to as f64 / 1e6).min(end_secs),
            )
        })
        .collect();
    let max = p99.iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let min = p50.iter().map(|p| p.1).fold(max, f64::min) * 0.7;
    let title = format!(
        "{} ({}): latency per second, faults shaded",
        plain(&column.label),
        plain(&timeline.source)
    );
    let caption = title.clone();
    let svg = svg(|root| {
        let mut chart =
            frame(root, &caption).build_cartesian_2d(0f64..end_secs, (min..max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc("ms")
            .draw()?;
        for (index, (label, from, to)) in shaded.into_iter().enumerate() {
            let shade = RGBColor(230, 159, 0);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, min), (to.max(from + 0.05), max)],
                    shade.mix(0.25).filled(),
                )))?
                .label(format!("fault: {label}"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade.mix(0.4).filled())
                });
            // The fault's name at the top of its window, staggered so close
            // windows do not write over each other.
            chart.draw_series(std::iter::once(Text::new(
                label,
                (from, max / (1.4 + index as f64 % 3.0 * 0.6)),
                (FONT, 11),
            )))?;
        }
        line(&mut chart, "p50".into(), p50, colour(0))?;
        line(&mut chart, "p99".into(), p99, colour(1))?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })?;
    Ok(Chart {
        key: "latency-over-time",
        title,
        svg,
    })
}

/// A figure over time, one line per option (the first source of each:
/// merged sources ran side by side and are told apart in the tables).
fn over_time(
    columns: &[Column<'_>],
    key: &'static str,
    title: &str,
    unit: &str,
    value: impl Fn(&crate::model::sample::Sample) -> f64,
) -> Result<Chart, ReportError> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = columns
        .iter()
        .map(|c| {
            let points = c
                .results
                .timelines
                .first()
                .map(|t| {
                    t.samples
                        .iter()
                        .map(|s| (s.at as f64 / 1e6, value(s)))
                        .collect()
                })
                .unwrap_or_default();
            (plain(&c.label), points)
        })
        .collect();
    let end = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;
    let (caption, unit) = (title.to_owned(), unit.to_owned());
    let svg = svg(|root| {
        let mut chart = frame(root, &caption).build_cartesian_2d(0f64..end, 0f64..max)?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc(unit)
            .draw()?;
        for (index, (name, points)) in lines.into_iter().enumerate() {
            line(&mut chart, name, points, colour(index))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })?;
    Ok(Chart {
        key,
        title: title.to_owned(),
        svg,
    })
}

/// Store bytes over time, one line per option.
pub fn store_bytes(columns: &[Column<'_>]) -> Result<Chart, ReportError> {
    over_time(
        columns,
        "store-bytes",
        "Store bytes over time (Redis memory, else Postgres payload, else the instances' own count)",
        "MiB",
        |s| s.store_bytes() as f64 / 1_048_576.0,
    )
}

/// Instance RSS (summed over instances) over time, one line per option.
pub fn rss(columns: &[Column<'_>]) -> Result<Chart, ReportError> {
    over_time(
        columns,
        "rss",
        "App instances' RSS over time (summed over instances)",
        "MiB",
        |s| s.rss_bytes() as f64 / 1_048_576.0,
    )
}

/// Token calls per signed-in session against the minimum, as bars per option.
pub fn idp_calls(columns: &[Column<'_>]) -> Result<Chart, ReportError> {
    let per = |calls: u64, r: &Results| calls as f64 / r.idp.sessions.max(1) as f64;
    let bars: Vec<(String, f64, f64)> = columns
        .iter()
        .map(|c| {
            (
                plain(&c.label),
                per(c.results.idp.token_calls, c.results),
                per(c.results.idp.minimum, c.results),
            )
        })
        .collect();
    let max = bars.iter().map(|b| b.1.max(b.2)).fold(0.1, f64::max) * 1.2;
    let n = bars.len();
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let title = "IdP token calls per session, against the minimum the run needed".to_owned();
    let caption = title.clone();
    let svg = svg(|root| {
        let mut chart = frame(root, &caption).build_cartesian_2d(0f64..n as f64, 0f64..max)?;
        // The options are named over their bars: a continuous x axis puts
        // its ticks where it likes, not under each bar.
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|_| String::new())
            .y_desc("token calls per session")
            .draw()?;
        chart.draw_series(
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| Text::new(name, (i as f64 + 0.15, max * 0.97), (FONT, 13))),
        )?;
        let (made, needed) = (colour(0), RGBColor(160, 160, 160));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = i as f64;
                Rectangle::new([(x + 0.15, 0.0), (x + 0.5, b.1)], made.filled())
            }))?
            .label("made")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], made.filled()));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = i as f64;
                Rectangle::new([(x + 0.5, 0.0), (x + 0.85, b.2)], needed.filled())
            }))?
            .label("minimum")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], needed.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })?;
    Ok(Chart {
        key: "idp-calls",
        title,
        svg,
    })
}

/// Store bytes against sessions on log-log axes: the run's samples as
/// dots, the fitted line out to 1000x as a dashed projection.
pub fn projection(
    columns: &[Column<'_>],
    projections: &[Projection],
) -> Result<Chart, ReportError> {
    let mut measured = Vec::new();
    let mut fitted = Vec::new();
    for (column, p) in columns.iter().zip(projections) {
        let dots: Vec<(f64, f64)> = projection::points(column.results)
            .into_iter()
            .filter(|(s, b)| *s >= 1.0 && *b >= 1.0)
            .collect();
        measured.push(dots);
        let line: Vec<(f64, f64)> = match &p.fit {
            Some(fit) if p.sessions > 0 => {
                let lo = (fit.sessions_range.0.max(1)) as f64;
                let hi = (p.sessions * projection::SCALES[2]) as f64;
                (0..=40)
                    .map(|i| lo * (hi / lo).powf(f64::from(i) / 40.0))
                    .map(|s| (s, (fit.base_bytes + fit.per_session * s).max(1.0)))
                    .collect()
            }
            _ => Vec::new(),
        };
        fitted.push(line);
    }
    let all = measured.iter().chain(&fitted).flatten();
    let (mut xmax, mut ymax, mut ymin) = (10.0f64, 10.0f64, f64::MAX);
    for (x, y) in all {
        xmax = xmax.max(*x);
        ymax = ymax.max(*y);
        ymin = ymin.min(*y);
    }
    let ymin = if ymin == f64::MAX { 1.0 } else { ymin * 0.5 };
    let names: Vec<String> = columns.iter().map(|c| plain(&c.label)).collect();
    let title = "Capacity projection: store bytes against sessions stored (dots measured, lines fitted out to 1000x)".to_owned();
    let caption =
        "Store bytes against sessions: measured (dots), fitted to 1000x (lines)".to_owned();
    let svg = svg(|root| {
        let mut chart = frame(root, &caption)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (1f64..xmax * 1.5).log_scale(),
                (ymin..ymax * 2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("sessions stored")
            .y_desc("store bytes")
            .y_label_formatter(&|y: &f64| human_bytes(*y))
            .draw()?;
        for (index, (dots, line)) in measured.into_iter().zip(fitted).enumerate() {
            let c = colour(index);
            chart
                .draw_series(dots.into_iter().map(|p| Circle::new(p, 3, c.filled())))?
                .label(names[index].clone())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
            chart.draw_series(DashedLineSeries::new(line, 6, 4, c.stroke_width(2)))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })?;
    Ok(Chart {
        key: "projection",
        title,
        svg,
    })
}

/// 1.5 MiB, 320 KiB, 12 B.
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", units[unit])
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
