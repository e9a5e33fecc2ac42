//! The documentation a new user reaches from README.md: every page under
//! docs/ is linked from the README, and every relative link in the README
//! and in docs/ points at a file that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Pages linked before they exist, each with the helper or issue that adds
/// it. Remove an entry when the page lands (the test then requires it).
const PENDING: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The targets of inline Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].trim().to_string());
        }
    }
    targets
}

/// `target` relative to the file at `from`, without `#anchor`; `None` for
/// external links and pure anchors.
fn local_path(from: &Path, target: &str) -> Option<PathBuf> {
    if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
        return None;
    }
    let path = target.split('#').next().unwrap();
    Some(from.parent().unwrap().join(path))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn pending(path: &Path) -> bool {
    PENDING
        .iter()
        .any(|(page, _)| normalize(path) == normalize(&root().join(page)))
}

#[test]
fn every_page_under_docs_is_linked_from_the_readme() {
    let readme = root().join("README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let linked: BTreeSet<PathBuf> = link_targets(&text)
        .iter()
        .filter_map(|t| local_path(&readme, t))
        .map(|p| normalize(&p))
        .collect();
    let mut pages = Vec::new();
    markdown_files(&root().join("docs"), &mut pages);
    assert!(pages.len() >= 10, "docs/ has {} pages", pages.len());
    for page in pages {
        let page = normalize(&page);
        // docs/routers/README.md is the page for the directory's examples.
        assert!(
            linked.contains(&page),
            "{} is not linked from README.md",
            page.strip_prefix(normalize(&root())).unwrap().display()
        );
    }
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut files = vec![root().join("README.md")];
    markdown_files(&root().join("docs"), &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            let Some(path) = local_path(file, &target) else {
                continue;
            };
            if !path.exists() && !pending(&path) {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_scanner_finds_inline_links_and_skips_external_ones() {
    let text = "see [a](docs/a.md#x), [b](https://example.com) and [c](#top).";
    assert_eq!(
        link_targets(text),
        ["docs/a.md#x", "https://example.com", "#top"]
    );
    let from = Path::new("/r/README.md");
    assert_eq!(
        local_path(from, "docs/a.md#x"),
        Some(PathBuf::from("/r/docs/a.md"))
    );
    assert_eq!(local_path(from, "https://example.com"), None);
    assert_eq!(local_path(from, "#top"), None);
}
