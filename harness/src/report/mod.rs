//! The HTML report: one self-contained file made from results files only
//! (never from a run's memory), so results merged from several machines
//! report as well as one machine's; and `compare`, results against a baseline.
//!
//! # Layout
//! - [`matrix`]: the claims matrix (what the seed says each option suffers, observed or not).
//! - [`parts`]: how a family's count splits into the parts the matrix shows.
//! - [`accounting`]: the rule that those parts add up to the results' counts.
//! - [`charts`]: the charts, drawn by plotters as inline SVG.
//! - [`cpu`]: CPU per 1,000 requests, per option and component.
//! - [`outage`]: each fault step as browsers saw it (failed requests, the failing span).
//! - [`projection`]: the capacity projection (store memory and IdP calls at 10x-1000x;
//!   on a Redis Cluster, the nodes that memory needs).
//! - [`cluster`]: a Redis Cluster's nodes per shard, and the nodes the projection needs.
//! - [`escape`]: escaping text for HTML.
//! - [`html`]: the page around the sections.
//! - [`compare`]: one results file against a baseline: the table and the verdict.

pub mod accounting;
pub mod charts;
pub mod cluster;
pub mod compare;
pub mod cpu;
pub mod escape;
pub mod html;
pub mod matrix;
pub mod outage;
pub mod parts;
pub mod projection;

use std::path::Path;

use crate::results::{Results, ResultsError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("a chart could not be drawn: {0}")]
    Chart(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no results files to report on")]
    Empty,
    /// Where the page was to go cannot hold it.
    #[error("{path}: {why}")]
    Destination { path: String, why: &'static str },
    /// The page would misstate what a run found: it is not written.
    #[error("the report of {label} would not show every anomaly its results count once: {source}")]
    Unbalanced {
        label: String,
        source: accounting::Unbalanced,
    },
}

/// One option's results as the report shows them: its label (the topology's
/// name, made unique when two files name the same one) and its file.
pub struct Column<'a> {
    pub label: String,
    /// Where in the page its anchors live (`o0`, `o1`, ...): labels come from
    /// files and are not trusted in ids.
    pub id: String,
    pub results: &'a Results,
}

/// The columns of a report, in the order given.
pub fn columns(runs: &[Results]) -> Vec<Column<'_>> {
    let mut out: Vec<Column<'_>> = Vec::with_capacity(runs.len());
    for (index, results) in runs.iter().enumerate() {
        let name = &results.topology.name;
        let seen = runs[..index]
            .iter()
            .filter(|r| r.topology.name == *name)
            .count();
        let label = if seen == 0 {
            name.clone()
        } else {
            format!("{name} ({})", seen + 1)
        };
        out.push(Column {
            label,
            id: format!("o{index}"),
            results,
        });
    }
    out
}

pub use projection::Settings;

/// The report of `runs`, as one HTML document, with the default settings.
pub fn render(runs: &[Results]) -> Result<String, ReportError> {
    render_with(runs, Settings::default())
}

/// The report of `runs`, as one HTML document.
pub fn render_with(runs: &[Results], settings: Settings) -> Result<String, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::Empty);
    }
    let columns = columns(runs);
    for column in &columns {
        accounting::check(column.results).map_err(|source| ReportError::Unbalanced {
            label: column.label.clone(),
            source,
        })?;
    }
    html::page(&columns, settings)
}

/// Reads `files`, writes the report to `out` (creating its folder), with
/// the default settings.
pub fn write(files: &[impl AsRef<Path>], out: &Path) -> Result<(), ReportError> {
    write_with(files, out, Settings::default())
}

/// Reads `files`, writes the report to `out` (creating its folder).
pub fn write_with(
    files: &[impl AsRef<Path>],
    out: &Path,
    settings: Settings,
) -> Result<(), ReportError> {
    let runs = files
        .iter()
        .map(|f| Results::read(f.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let page = render_with(&runs, settings)?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source: std::io::Error| ReportError::Io { path, source }
    };
    check_destination(out)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(out, page).map_err(io(out))
}

/// Says plainly why `out` cannot take the page, before anything is made:
/// it is a folder, or one of the folders above it is a file (which
/// `create_dir_all` would only report as "File exists").
fn check_destination(out: &Path) -> Result<(), ReportError> {
    let refuse = |path: &Path, why| ReportError::Destination {
        path: path.display().to_string(),
        why,
    };
    if out.is_dir() {
        return Err(refuse(
            out,
            "is a folder; give the report a file name (report.html)",
        ));
    }
    let mut above = out.parent();
    while let Some(folder) = above.filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(meta) = std::fs::metadata(folder) {
            if !meta.is_dir() {
                return Err(refuse(
                    folder,
                    "is a file, not a folder: the report cannot go under it",
                ));
            }
            break;
        }
        above = folder.parent();
    }
    Ok(())
}

#[cfg(test)]
mod destination_tests {
    use super::*;

    #[test]
    fn a_report_under_a_file_or_onto_a_folder_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("results.json");
        std::fs::write(&file, "{}").expect("file");
        let under = check_destination(&file.join("deeper/report.html"))
            .expect_err("under a file")
            .to_string();
        assert!(
            under.contains("results.json") && under.contains("is a file, not a folder"),
            "{under}"
        );
        let onto = check_destination(dir.path())
            .expect_err("onto a folder")
            .to_string();
        assert!(onto.contains("is a folder"), "{onto}");
        check_destination(&dir.path().join("new/folders/report.html")).expect("a new path is fine");
        check_destination(Path::new("report.html")).expect("a bare name is fine");
    }
}
