//! Every relative link in the documentation (README.md, docs/*.md and the
//! crates' READMEs) leads to a file that exists and, when it names a
//! `#section` of a Markdown file, to a heading there: the docs were split
//! across files once, and a moved section must not leave links behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

/// README.md, docs/*.md, and a README.md in any folder up to two deep
/// (crates, targets), skipping build output and installed packages.
fn documentation(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md")];
    if let Ok(entries) = fs::read_dir(root.join("docs")) {
        pages.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
    }
    let skip = |p: &Path| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with('.') || n == "target" || n == "node_modules" || n == "docs"
        })
    };
    let folders = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && !skip(p))
                    .collect()
            })
            .unwrap_or_default()
    };
    for first in folders(root) {
        for folder in std::iter::once(first.clone()).chain(folders(&first)) {
            let readme = folder.join("README.md");
            if readme.is_file() {
                pages.push(readme);
            }
        }
    }
    pages.sort();
    pages
}

/// The link targets of a Markdown text, outside fenced code blocks.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].to_owned());
                rest = &rest[end + 1..];
            }
        }
    }
    found
}

/// GitHub's anchors for a Markdown file's headings: lower case, punctuation
/// dropped, spaces as hyphens, `-1`, `-2` ... for repeats.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(title) = line.trim_start_matches('#').strip_prefix(' ') else {
            continue;
        };
        if fenced || !line.starts_with('#') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let repeats = seen.iter().filter(|s| **s == slug).count();
        out.insert(if repeats == 0 {
            slug.clone()
        } else {
            format!("{slug}-{repeats}")
        });
        seen.push(slug);
    }
    out
}

/// `base/relative` with `.` and `..` resolved, without touching the disk.
fn resolve(base: &Path, relative: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in base.join(relative).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = workspace_root();
    let pages = documentation(&root);
    assert!(
        pages.iter().any(|p| p.starts_with(root.join("docs"))),
        "no docs/*.md found under {}",
        root.display()
    );
    let mut broken = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).expect("a documentation page reads as UTF-8");
        let folder = page.parent().expect("a page sits in a folder");
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                page.clone()
            } else {
                resolve(folder, path)
            };
            let shown = page.strip_prefix(&root).unwrap_or(page).display();
            if !target.exists() {
                broken.push(format!("{shown}: ({link}): no such file"));
                continue;
            }
            let markdown = target.extension().is_some_and(|e| e == "md");
            if !anchor.is_empty() && markdown {
                let headings = anchors(&fs::read_to_string(&target).unwrap_or_default());
                if !headings.contains(anchor) {
                    broken.push(format!("{shown}: ({link}): no heading #{anchor} there"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_reader_finds_links_and_headings_as_github_does() {
    let text = "# The seed's claims, measured\n\nSee [a](docs/a.md#x) and [b](../b.md).\n\
                ```\n[not](a-link.md)\n```\n## Judging again: `harness analyze`\n## Race\n## Race\n";
    assert_eq!(links(text), ["docs/a.md#x", "../b.md"]);
    let found = anchors(text);
    for anchor in [
        "the-seeds-claims-measured",
        "judging-again-harness-analyze",
        "race",
        "race-1",
    ] {
        assert!(found.contains(anchor), "{anchor} missing from {found:?}");
    }
    assert_eq!(
        resolve(Path::new("/w/app"), "../docs/x.md"),
        Path::new("/w/docs/x.md")
    );
}
