//! The page: the style sheet, and the sections in reading order
//! (verdicts, the claims matrix, then the evidence, then what was measured
//! and on what). Everything taken from a results file is escaped here.

use std::fmt::Write;

use crate::check::Kind;
use crate::results::{AppKind, Example, Results, TopologyInfo};

use super::charts::{self, Chart, human_bytes};
use super::escape::escape;
use super::matrix::{self, CLAIMS, Cell, Seen};
use super::projection::{self, Projection};
use super::{Column, ReportError};

/// The anchor of one example history.
pub fn example_id(column: &Column<'_>, kind: Kind, index: usize) -> String {
    format!("ex-{}-{}-{index}", column.id, kind.name())
}

/// No scripts, no fonts, no images from anywhere: the page is read as is.
const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.observed { background: #fde0dc; } td.differs { outline: 3px solid #b3261e; outline-offset: -3px; } td.clear { background: #e3f4e6; } td.unknown { background: #f1f1f1; color: #555; }
figure.chart { margin: 1em 0; } figure.chart svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; } .verdict { margin: .6em 0; }
code, pre { font-family: ui-monospace, monospace; font-size: .88em; } pre { white-space: pre-wrap; background: #f7f7f7; padding: .5em; }
.muted { color: #666; font-size: .9em; } nav a { margin-right: 1em; }
table.matrix th .why { font-weight: normal; font-size: .88em; color: #555; max-width: 22em; margin-top: .3em; }
";

/// The whole report.
pub fn page(columns: &[Column<'_>], settings: projection::Settings) -> Result<String, ReportError> {
    let projections: Vec<Projection> = columns
        .iter()
        .map(|c| projection::project(c.results, settings))
        .collect();
    let mut out = String::with_capacity(256 * 1024);
    let names: Vec<String> = columns.iter().map(|c| escape(&c.label)).collect();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Cache-topology report: {}</title><style>{STYLE}</style></head><body>\n",
        names.join(", ")
    );
    let _ = write!(
        out,
        "<h1>Session and token-cache topologies: {}</h1>\n<p class=\"muted\">Made from {} results file(s) by harness {}; \
         every figure below comes from those files.</p>\n",
        names.join(", "),
        columns.len(),
        escape(&versions(columns))
    );
    let side_by_side_link = if pairs(columns).is_empty() {
        ""
    } else {
        "<a href=\"#side-by-side\">Reference and targets</a>"
    };
    let _ = writeln!(
        out,
        "<nav><a href=\"#verdicts\">Verdicts</a><a href=\"#matrix\">Claims matrix</a>{side_by_side_link}<a href=\"#latency\">Latency</a>\
         <a href=\"#cpu\">CPU</a><a href=\"#anomalies\">Anomalies</a><a href=\"#idp\">IdP calls</a><a href=\"#memory\">Memory</a>\
         <a href=\"#projection\">Capacity projection</a><a href=\"#examples\">Example histories</a><a href=\"#facts\">What was measured</a></nav>"
    );
    verdicts(&mut out, columns);
    claims(&mut out, columns);
    side_by_side(&mut out, columns);
    latency(&mut out, columns)?;
    super::cpu::section(&mut out, columns)?;
    anomalies(&mut out, columns);
    idp(&mut out, columns)?;
    memory(&mut out, columns)?;
    capacity(&mut out, columns, &projections)?;
    examples(&mut out, columns);
    facts(&mut out, columns);
    out += "</body></html>\n";
    Ok(out)
}

fn versions(columns: &[Column<'_>]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for c in columns {
        let h = &c.results.harness;
        let v = match &h.git_revision {
            Some(rev) => format!("{} ({rev})", h.version),
            None => h.version.clone(),
        };
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.join(", ")
}

fn figure(out: &mut String, chart: &Chart) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" data-chart=\"{}\">{}<figcaption>{}</figcaption></figure>",
        chart.key,
        chart.svg,
        escape(&chart.title)
    );
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e3)
}

/// One paragraph per option: what it is, how fast, what went wrong.
fn verdicts(out: &mut String, columns: &[Column<'_>]) {
    *out += "<h2 id=\"verdicts\">Verdicts</h2>\n";
    for column in columns {
        let r = column.results;
        let mut text = format!(
            "<strong>{}</strong> ({}): ",
            escape(&column.label),
            described(&r.topology)
        );
        match r.overall() {
            Ok((count, errors, all)) => {
                let _ = write!(
                    text,
                    "{count} requests over {} instance(s), p50 {} ms and p99 {} ms, {errors} errors. ",
                    r.scenario.instances,
                    ms(all.value_at_quantile(0.5)),
                    ms(all.value_at_quantile(0.99))
                );
            }
            Err(e) => {
                let _ = write!(text, "latency unreadable ({}). ", escape(&e.to_string()));
            }
        }
        let observed: Vec<String> = CLAIMS
            .iter()
            .filter_map(|&claim| {
                let cell = matrix::cell(r, claim);
                (cell.seen == Seen::Observed)
                    .then(|| format!("{} ({})", claim.title(), escape(&cell.number)))
            })
            .collect();
        if observed.is_empty() {
            text += "None of the problems the seed names was observed";
        } else {
            let _ = write!(text, "Observed: {}", observed.join("; "));
        }
        let exits = r.exits();
        if !exits.is_empty() {
            let _ = write!(
                text,
                ". <strong>The app under test crashed</strong>: {}",
                escape(&exits.join("; "))
            );
        }
        let other: Vec<String> = matrix::OTHER
            .iter()
            .map(|&k| (k, r.anomaly(k)))
            .filter(|&(_, n)| n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let other = if other.is_empty() {
            "0".to_owned()
        } else {
            other.join(", ")
        };
        let _ = write!(
            text,
            ". Other anomalies: {other}. IdP token calls {:.2}x the minimum; the store grew {} per live session over the empty store (fitted over the run: {}){}.",
            r.idp.ratio,
            r.leaks
                .store_bytes_per_session
                .map_or_else(|| "no figure".to_owned(), human_bytes),
            r.leaks
                .store_bytes_per_session_fitted
                .map_or_else(|| "no figure".to_owned(), human_bytes),
            if r.complete {
                String::new()
            } else {
                format!(
                    "; <strong>the run was cut short</strong> ({})",
                    escape(r.stopped_because.as_deref().unwrap_or("interrupted"))
                )
            }
        );
        let _ = writeln!(
            out,
            "<p class=\"verdict\" id=\"verdict-{}\">{text}</p>",
            column.id
        );
    }
}

/// What a run measured, in words (escaped): the reference app's topology,
/// or a target as its file names it (file, `models`, opening comment).
pub fn described(t: &TopologyInfo) -> String {
    if t.app == AppKind::Reference {
        return format!(
            "{} sessions, {} token cache{}, {}",
            escape(&t.session_backend),
            escape(&t.token_cache),
            if t.encrypt { ", encrypted at rest" } else { "" },
            escape(&t.concurrency)
        );
    }
    let mut parts = vec![
        if t.app == AppKind::Remote {
            "instances running elsewhere"
        } else {
            "an app the harness started"
        }
        .to_owned(),
    ];
    if let Some(file) = &t.file {
        parts.push(format!("target file <code>{}</code>", escape(file)));
    }
    if let Some(models) = &t.models {
        parts.push(format!("models {}", escape(models)));
    }
    let mut text = parts.join(", ");
    if let Some(description) = &t.description {
        let _ = write!(text, ": {}", escape(description));
    }
    text
}

/// The reasons a row says once: each that two or more of its cells give
/// for not knowing, with how many give it, in the order first given.
fn shared_reasons<'c>(cells: &[&'c Cell]) -> Vec<(&'c str, usize)> {
    let mut shared: Vec<(&'c str, usize)> = Vec::new();
    for cell in cells {
        if let Seen::Unknown(why) = &cell.seen {
            match shared.iter_mut().find(|(r, _)| *r == why.as_str()) {
                Some((_, n)) => *n += 1,
                None => shared.push((why.as_str(), 1)),
            }
        }
    }
    shared.retain(|&(_, n)| n > 1);
    shared
}

/// The mark tying a cell to the reason its row says for it: none when the
/// row says one reason only.
fn reason_mark(shared: &[(&str, usize)], index: usize) -> String {
    if shared.len() > 1 {
        format!(" ({})", index + 1)
    } else {
        String::new()
    }
}

/// A row's heading, with the reasons its cells share said once.
fn row_head(title: &str, shared: &[(&str, usize)], cells: usize) -> String {
    let mut head = format!("<tr><th>{title}");
    for (index, (why, n)) in shared.iter().enumerate() {
        let columns = if *n == cells {
            "every column".to_owned()
        } else {
            format!("{n} columns")
        };
        let _ = write!(
            head,
            "<div class=\"why\">unknown{} in {columns}: {}</div>",
            reason_mark(shared, index),
            escape(why)
        );
    }
    head + "</th>"
}

/// One cell of a claims table; `differs` marks a target's verdict that is
/// not the reference app's; a reason among `shared` is said by the row.
fn cell_html(column: &Column<'_>, cell: &Cell, differs: bool, shared: &[(&str, usize)]) -> String {
    let (class, word) = match &cell.seen {
        Seen::Observed => ("observed", "observed".to_owned()),
        Seen::NotObserved => ("clear", "not observed".to_owned()),
        Seen::Unknown(why) => match shared.iter().position(|(r, _)| *r == why.as_str()) {
            Some(index) => ("unknown", format!("unknown{}", reason_mark(shared, index))),
            None => ("unknown", format!("unknown: {}", escape(why))),
        },
    };
    let link = cell.example.map_or_else(String::new, |(kind, i)| {
        format!(" <a href=\"#{}\">example</a>", example_id(column, kind, i))
    });
    let (marked, note) = if differs {
        (" differs", "<br><em>differs from the reference</em>")
    } else {
        ("", "")
    };
    format!(
        "<td class=\"{class}{marked}\"><strong>{word}</strong><br>{}{link}{note}</td>",
        escape(&cell.number)
    )
}

fn claims(out: &mut String, columns: &[Column<'_>]) {
    *out += "<h2 id=\"matrix\">Claims matrix</h2>\n<table class=\"matrix\"><tr><th>problem</th>";
    for c in columns {
        let _ = write!(out, "<th>{}</th>", escape(&c.label));
    }
    *out += "</tr>\n";
    for claim in CLAIMS {
        let cells: Vec<Cell> = columns
            .iter()
            .map(|c| matrix::cell(c.results, claim))
            .collect();
        let shared = shared_reasons(&cells.iter().collect::<Vec<_>>());
        *out += &row_head(claim.title(), &shared, cells.len());
        for (c, cell) in columns.iter().zip(&cells) {
            out.push_str(&cell_html(c, cell, false, &shared));
        }
        *out += "</tr>\n";
    }
    *out += "</table>\n<ul class=\"muted\">";
    for claim in CLAIMS {
        let _ = write!(
            out,
            "<li><strong>{}</strong>: {}</li>",
            claim.title(),
            claim.how()
        );
    }
    *out += "</ul>\n";
}

/// Each target's column paired with the reference app's run it models.
fn pairs<'c, 'r>(columns: &'c [Column<'r>]) -> Vec<(&'c Column<'r>, &'c Column<'r>)> {
    let runs: Vec<&Results> = columns.iter().map(|c| c.results).collect();
    matrix::side_by_side(&runs)
        .into_iter()
        .map(|(reference, target)| (&columns[reference], &columns[target]))
        .collect()
}

/// The claims matrix again, each target beside the reference app's run of
/// the topology it implements, with the verdicts that differ marked: where
/// the model and the real stack part ways.
fn side_by_side(out: &mut String, columns: &[Column<'_>]) {
    let pairs = pairs(columns);
    if pairs.is_empty() {
        return;
    }
    *out += "<h2 id=\"side-by-side\">Reference app and targets side by side</h2>\n\
             <p>Each target beside the reference app's run of the topology it implements (its target file's \
             <code>models</code>), same scenario and seed. A verdict that differs is marked: either the real \
             stack behaves otherwise, or the model is wrong; the target's documentation should say which.</p>\n\
             <table class=\"matrix side-by-side\"><tr><th>problem</th>";
    for (reference, target) in &pairs {
        let _ = write!(
            out,
            "<th>{} (reference)</th><th>{}</th>",
            escape(&reference.label),
            escape(&target.label)
        );
    }
    *out += "</tr>\n";
    let mut differing = vec![0usize; pairs.len()];
    for claim in CLAIMS {
        let cells: Vec<(Cell, Cell)> = pairs
            .iter()
            .map(|(reference, target)| {
                (
                    matrix::cell(reference.results, claim),
                    matrix::cell(target.results, claim),
                )
            })
            .collect();
        let shared = shared_reasons(&cells.iter().flat_map(|(a, b)| [a, b]).collect::<Vec<_>>());
        *out += &row_head(claim.title(), &shared, cells.len() * 2);
        for (i, ((reference, target), (a, b))) in pairs.iter().zip(&cells).enumerate() {
            let differs = matrix::agree(a, b) == Some(false);
            differing[i] += usize::from(differs);
            out.push_str(&cell_html(reference, a, false, &shared));
            out.push_str(&cell_html(target, b, differs, &shared));
        }
        *out += "</tr>\n";
    }
    *out += "<tr><th>verdicts that differ</th>";
    for n in differing {
        let _ = write!(out, "<td></td><td class=\"num\">{n}</td>");
    }
    *out += "</tr>\n</table>\n";
}

fn latency(out: &mut String, columns: &[Column<'_>]) -> Result<(), ReportError> {
    *out += "<h2 id=\"latency\">Latency</h2>\n<p>Per request type, over every instance, corrected for coordinated omission \
            (the raw figures are in the results files). Reference round trips were measured beside the load: \
            what <code>harness compare</code> divides by.</p>\n";
    *out += "<table><tr><th>option</th><th>request</th><th>count</th><th>errors</th><th>p50 ms</th><th>p90 ms</th>\
            <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>\n";
    for c in columns {
        let r = c.results;
        for kind in r.kinds() {
            let (count, h) = r.kind(&kind)?;
            let errors: u64 = r
                .requests
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| s.outcomes.errors())
                .sum();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{count}</td><td class=\"num\">{errors}</td>{}</tr>",
                escape(&c.label),
                escape(&kind),
                [0.5, 0.9, 0.99, 0.999, 1.0]
                    .iter()
                    .map(|&q| format!("<td class=\"num\">{}</td>", ms(h.value_at_quantile(q))))
                    .collect::<String>()
            );
        }
        for reference in &r.references {
            let p = &reference.latency;
            let _ = writeln!(
                out,
                "<tr class=\"muted\"><td>{}</td><td>reference: {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&c.label),
                escape(&reference.name),
                reference.count,
                reference.failed,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.p999),
                ms(p.max)
            );
        }
    }
    *out += "</table>\n<h3>Percentile distribution</h3>\n";
    for c in columns {
        figure(out, &charts::latency_distribution(c)?);
    }
    *out += "<h3>Over time, with the fault timeline</h3>\n";
    for c in columns {
        for timeline in &c.results.timelines {
            figure(out, &charts::latency_over_time(c, timeline)?);
        }
    }
    super::outage::section(out, columns);
    Ok(())
}

fn anomalies(out: &mut String, columns: &[Column<'_>]) {
    *out += "<h2 id=\"anomalies\">Anomalies</h2>\n<table><tr><th>family</th>";
    for c in columns {
        let _ = write!(out, "<th>{}</th>", escape(&c.label));
    }
    *out += "</tr>\n";
    for kind in Kind::ALL {
        let _ = write!(out, "<tr><th>{kind}</th>");
        for c in columns {
            let r = c.results;
            let n = r.anomaly(kind);
            let unchecked = r.unchecked.iter().any(|u| u.kind == kind);
            let link = r
                .anomalies
                .iter()
                .find(|a| a.kind == kind && !a.examples.is_empty())
                .map_or_else(String::new, |_| {
                    format!(" <a href=\"#{}\">example</a>", example_id(c, kind, 0))
                });
            let _ = write!(
                out,
                "<td class=\"num\">{n}{}{link}</td>",
                if unchecked && n == 0 {
                    " (not checked)"
                } else {
                    ""
                }
            );
        }
        *out += "</tr>\n";
    }
    *out += "</table>\n<h3>Per fault window</h3>\n<p>Each anomaly is put in the fault window it fell in \
            (<code>none</code>: outside every window).</p>\n<table><tr><th>option</th><th>fault window</th><th>family</th><th>count</th></tr>\n";
    let mut any = false;
    for c in columns {
        for report in &c.results.anomalies {
            for (window, n) in &report.by_window {
                any = true;
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{n}</td></tr>",
                    escape(&c.label),
                    escape(window),
                    report.kind
                );
            }
        }
    }
    if !any {
        *out += "<tr><td colspan=\"4\">no anomalies in any run</td></tr>\n";
    }
    *out += "</table>\n";
    let by_tier: Vec<String> = columns
        .iter()
        .flat_map(|c| {
            c.results
                .orphans_by_tier()
                .into_iter()
                .map(move |(tier, n)| {
                    format!(
                        "<tr><td>{}</td><td>{tier}</td><td class=\"num\">{n}</td></tr>",
                        escape(&c.label)
                    )
                })
        })
        .collect();
    if !by_tier.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Orphans by store tier</h3>\n<p>Each tier read raw on its own: a session \
             left in Redis and in Postgres counts once in each.</p>\n<table><tr><th>option</th>\
             <th>tier</th><th>orphans</th></tr>\n{}\n</table>",
            by_tier.join("\n")
        );
    }
    let unchecked: Vec<String> = columns
        .iter()
        .flat_map(|c| {
            c.results.unchecked.iter().map(move |u| {
                format!(
                    "<li>{}: {} not checked: {}</li>",
                    escape(&c.label),
                    u.kind,
                    escape(&u.reason)
                )
            })
        })
        .collect();
    if !unchecked.is_empty() {
        let _ = writeln!(
            out,
            "<p>What could not be checked:</p><ul>{}</ul>",
            unchecked.concat()
        );
    }
}

fn idp(out: &mut String, columns: &[Column<'_>]) -> Result<(), ReportError> {
    *out += "<h2 id=\"idp\">IdP token calls</h2>\n<p>The IdP's own count of token calls against the fewest the run \
            needed (one code exchange per sign-in, one refresh per token lifetime a session used per scope set).</p>\n";
    *out += "<table><tr><th>option</th><th>sessions</th><th>token calls</th><th>code exchanges</th><th>refreshes</th>\
            <th>failed</th><th>minimum</th><th>calls per session</th><th>minimum per session</th><th>ratio</th><th>refresh reuse</th></tr>\n";
    for c in columns {
        let i = &c.results.idp;
        let per = |n: u64| format!("{:.2}", n as f64 / i.sessions.max(1) as f64);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{}</td></tr>",
            escape(&c.label),
            i.sessions,
            i.token_calls,
            i.code_exchanges,
            i.refreshes,
            i.failed_token_calls,
            i.minimum,
            per(i.token_calls),
            per(i.minimum),
            i.ratio,
            i.refresh_reuse
        );
    }
    *out += "</table>\n";
    figure(out, &charts::idp_calls(columns)?);
    Ok(())
}

fn memory(out: &mut String, columns: &[Column<'_>]) -> Result<(), ReportError> {
    *out += "<h2 id=\"memory\">Store bytes and instance memory</h2>\n";
    *out += "<table><tr><th>option</th><th>live sessions at end</th><th>store growth per live session</th>\
            <th>fitted per session</th><th>store growth (empty store)</th><th>peak RSS</th><th>RSS growth</th><th>in-process token-cache entries</th></tr>\n";
    for c in columns {
        let l = &c.results.leaks;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} ({})</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.label),
            l.live_sessions_at_end,
            l.store_bytes_per_session
                .map_or_else(|| "-".to_owned(), human_bytes),
            l.store_bytes_per_session_fitted
                .map_or_else(|| "-".to_owned(), human_bytes),
            human_bytes(l.store_growth_bytes as f64),
            l.store_bytes_empty
                .map_or_else(|| "-".to_owned(), |b| human_bytes(b as f64)),
            human_bytes(l.peak_rss_bytes as f64),
            human_bytes(l.rss_growth_bytes as f64),
            l.token_cache_entries_at_end
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
    }
    *out += "</table>\n";
    super::cluster::shards(out, columns);
    figure(out, &charts::store_bytes(columns)?);
    figure(out, &charts::rss(columns)?);
    Ok(())
}

fn capacity(
    out: &mut String,
    columns: &[Column<'_>],
    projections: &[Projection],
) -> Result<(), ReportError> {
    *out += "<h2 id=\"projection\">Capacity projection</h2>\n<p>Store memory from a straight line fitted to \
            (sessions stored, store bytes) at each sample; IdP token calls per second from the calls per live \
            session per second the run made. Both assume sessions behave as this run's did; the further a \
            scale is from the measured range, the more it is a guess.</p>\n";
    *out += "<table><tr><th>option</th><th>fit</th><th>inputs</th>";
    for scale in projection::SCALES {
        let _ = write!(
            out,
            "<th>{scale}x: store</th><th>{scale}x: token calls/s</th>"
        );
    }
    *out += "</tr>\n";
    for (c, p) in columns.iter().zip(projections) {
        let fit = match &p.fit {
            Some(f) => format!(
                "{} + {} per session ({}{})",
                human_bytes(f.base_bytes),
                human_bytes(f.per_session),
                f.method,
                f.r_squared
                    .map_or_else(String::new, |r| format!(", R² {r:.2}"))
            ),
            None => "no store figures".to_owned(),
        };
        let inputs = match &p.fit {
            Some(f) => format!(
                "{} live sessions at the end; {} sample(s) spanning {}-{} sessions; {} token calls in {:.0} s ({})",
                p.sessions,
                f.points,
                f.sessions_range.0,
                f.sessions_range.1,
                p.token_calls,
                p.duration_secs,
                p.calls_per_session_second
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.4} per session per s"))
            ),
            None => format!(
                "{} live sessions, {} token calls",
                p.sessions, p.token_calls
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            escape(&c.label),
            escape(&fit),
            escape(&inputs)
        );
        for (_, sessions, bytes, calls) in &p.rows {
            let _ = write!(
                out,
                "<td class=\"num\">{} for {sessions}</td><td class=\"num\">{}</td>",
                bytes.map_or_else(|| "-".to_owned(), human_bytes),
                calls.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"))
            );
        }
        *out += "</tr>\n";
    }
    *out += "</table>\n";
    super::cluster::nodes_needed(out, columns, projections);
    figure(out, &charts::projection(columns, projections)?);
    Ok(())
}

fn event_rows(example: &Example) -> String {
    let mut rows = String::new();
    for e in &example.events {
        let outcome = serde_json::to_string(&e.outcome).unwrap_or_default();
        let request = serde_json::to_string(&e.request).unwrap_or_default();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td><code>{}</code></td></tr>",
            e.browser.0,
            escape(&request),
            escape(&e.sent_to),
            e.invoked as f64 / 1e6,
            e.completed as f64 / 1e6,
            escape(&outcome)
        );
    }
    rows
}

fn examples(out: &mut String, columns: &[Column<'_>]) {
    *out += "<h2 id=\"examples\">Example histories</h2>\n<p>Up to five per anomaly family and option, \
            with the events that prove each (times in seconds into the run).</p>\n";
    let mut any = false;
    for c in columns {
        for report in &c.results.anomalies {
            for (index, example) in report.examples.iter().enumerate() {
                any = true;
                let _ = writeln!(
                    out,
                    "<section class=\"example\" id=\"{}\"><h3>{}: {} #{}</h3><p>{}</p><p class=\"muted\">source {}, fault window {}</p>\
                     <table><tr><th>browser</th><th>request</th><th>sent to</th><th>invoked s</th><th>completed s</th><th>outcome</th></tr>{}</table></section>",
                    example_id(c, report.kind, index),
                    escape(&c.label),
                    report.kind,
                    index + 1,
                    escape(&example.summary),
                    escape(&example.source),
                    escape(example.fault_window.as_deref().unwrap_or("none")),
                    event_rows(example)
                );
            }
        }
    }
    if !any {
        *out += "<p>No anomaly in any run: no example to show.</p>\n";
    }
}

fn facts(out: &mut String, columns: &[Column<'_>]) {
    *out += "<h2 id=\"facts\">What was measured, and on what</h2>\n";
    for c in columns {
        let r: &Results = c.results;
        let t = &r.topology;
        let _ = write!(
            out,
            "<h3>{}</h3>\n<table><tr><th>topology</th><td>{}: {}</td></tr>\
             <tr><th>scenario</th><td>{} (seed {}, {} instances){}</td></tr>\
             <tr><th>harness</th><td>{}{}; results schema {}</td></tr>\
             <tr><th>complete</th><td>{}</td></tr>\n",
            escape(&c.label),
            escape(&t.name),
            described(t),
            escape(r.scenario.file.as_deref().unwrap_or("built-in smoke")),
            r.scenario.seed,
            r.scenario.instances,
            if r.scenario.faults.is_empty() {
                String::new()
            } else {
                format!("; faults: {}", escape(&r.scenario.faults.join("; ")))
            },
            escape(&r.harness.version),
            r.harness
                .git_revision
                .as_deref()
                .map_or_else(String::new, |g| format!(" ({})", escape(g))),
            r.schema_version,
            if r.complete {
                "yes".to_owned()
            } else {
                format!(
                    "no: {}",
                    escape(r.stopped_because.as_deref().unwrap_or("cut short"))
                )
            }
        );
        for s in &r.sources {
            let h = &s.host;
            let _ = writeln!(
                out,
                "<tr><th>source {}</th><td>started {} for {:.1} s on {} ({} {}, {} CPUs, {} memory)</td></tr>",
                escape(&s.name),
                escape(&s.started_at),
                s.duration_secs,
                escape(&h.hostname),
                escape(&h.os),
                escape(h.kernel.as_deref().unwrap_or("")),
                h.cpus,
                h.memory_bytes
                    .map_or_else(|| "unknown".to_owned(), |m| human_bytes(m as f64))
            );
        }
        let workload = serde_json::to_string_pretty(&r.scenario.workload.0).unwrap_or_default();
        let _ = write!(
            out,
            "</table>\n<details open><summary>resolved workload</summary><pre>{}</pre></details>\n",
            escape(&workload)
        );
    }
}
