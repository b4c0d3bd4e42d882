//! The report's CPU section: per option, the CPU milliseconds each component
//! spent per 1,000 requests while the load ran (the cost of a topology),
//! beside the option's overall p50.

use std::fmt::Write;

use crate::model::cpu::{APP, HARNESS, POSTGRES, REDIS};
use crate::results::{ComponentCpu, CpuUse};

use super::escape::escape;
use super::{Column, ReportError};

/// The section: one row per option, one column per component.
pub fn section(out: &mut String, columns: &[Column<'_>]) -> Result<(), ReportError> {
    *out += "<h2 id=\"cpu\">CPU per 1,000 requests</h2>\n<p>CPU time (user + system, from <code>/proc</code>) \
             each part spent from the load's start to its end, in milliseconds per 1,000 requests of every \
             type (seconds in all below it). An instance's figure adds up its processes across restarts; \
             Postgres's counts its backends. On a Redis Cluster the harness starts, Redis is its nodes' seconds \
             summed, masters and replicas, a killed node's up to its death included. A server the harness does \
             not run (<code>REDIS_URL</code>, <code>DATABASE_URL</code>) is unknown, never guessed; an existing \
             cluster (<code>REDIS_CLUSTER_URLS</code>) is not metered and shows <code>-</code>. The harness's own (load driver, sampler, \
             live checker) is the measuring's cost, on the same machine. The mock IdP's is not counted.</p>\n";
    *out += "<table><tr><th>option</th><th>requests</th><th>p50 ms</th><th>all instances</th><th>Redis</th>\
             <th>Postgres</th><th>instances + stores</th><th>harness</th><th>each instance</th></tr>\n";
    for c in columns {
        let r = c.results;
        let (_, _, all) = r.overall()?;
        let _ = write!(out, "<tr><td>{}</td>", escape(&c.label));
        let Some(cpu) = &r.cpu else {
            let _ = writeln!(
                out,
                "<td class=\"num\">-</td><td class=\"num\">{:.2}</td><td class=\"unknown\" colspan=\"6\">not measured \
                 (a file from before CPU was read)</td></tr>",
                all.value_at_quantile(0.5) as f64 / 1e3
            );
            continue;
        };
        let _ = write!(
            out,
            "<td class=\"num\">{}</td><td class=\"num\">{:.2}</td>",
            cpu.requests,
            all.value_at_quantile(0.5) as f64 / 1e3
        );
        for name in [APP, REDIS, POSTGRES] {
            *out += &cell(cpu.component(name));
        }
        *out += &total(cpu);
        *out += &cell(cpu.component(HARNESS));
        let each: Vec<String> = cpu
            .components
            .iter()
            .filter(|c| ![APP, REDIS, POSTGRES, HARNESS].contains(&c.name.as_str()))
            .map(|c| {
                format!(
                    "{} {}",
                    escape(&c.name),
                    c.ms_per_1k_requests
                        .map_or_else(|| "unknown".to_owned(), |ms| format!("{ms:.1}"))
                )
            })
            .collect();
        let _ = writeln!(out, "<td>{}</td></tr>", each.join(", "));
    }
    *out += "</table>\n";
    Ok(())
}

/// A component's cell: ms per 1,000 requests and seconds; why, when unknown;
/// `-` when the option has none.
fn cell(component: Option<&ComponentCpu>) -> String {
    match component {
        None => "<td class=\"num\">-</td>".to_owned(),
        Some(c) => match (c.ms_per_1k_requests, c.seconds) {
            (Some(ms), Some(s)) => figure(ms, s),
            (None, Some(s)) => {
                format!("<td class=\"num\">-<br><span class=\"muted\">{s:.2} s</span></td>")
            }
            _ => format!(
                "<td class=\"unknown\">unknown<br><span class=\"muted\">{}</span></td>",
                escape(c.unknown.as_deref().unwrap_or(""))
            ),
        },
    }
}

fn figure(ms: f64, seconds: f64) -> String {
    format!("<td class=\"num\">{ms:.1}<br><span class=\"muted\">{seconds:.2} s</span></td>")
}

/// The instances and the stores together, when every one of them is known.
fn total(cpu: &CpuUse) -> String {
    let parts: Vec<&ComponentCpu> = [APP, REDIS, POSTGRES]
        .iter()
        .filter_map(|name| cpu.component(name))
        .collect();
    let seconds: Option<f64> = parts.iter().map(|c| c.seconds).sum();
    let ms: Option<f64> = parts.iter().map(|c| c.ms_per_1k_requests).sum();
    match (ms, seconds) {
        (Some(ms), Some(s)) => figure(ms, s),
        _ => "<td class=\"unknown\">unknown (a part is)</td>".to_owned(),
    }
}
