//! The README is a landing page over the guide (`docs/guide/`). Its usage
//! example is the crate docs' quick start: the program `cargo test --doc`
//! compiles (a `no_run` doc test in `src/lib.rs`) and its `Cargo.toml` lines
//! must stand verbatim in the README, and every dependency line, in the
//! README and the guide, must name this crate, not upstream's
//! `dynamo-es = "0.5"`. The guide's chapters are doc tests (`src/lib.rs`,
//! module `guide`), so their Rust blocks compile; the README links every
//! chapter, and every relative link resolves.

mod docs_support;

use docs_support::{blocks_of, read};
use std::path::Path;

/// The code of the crate-doc block opened by `//! ```{fence}` after the
/// `//! ## Quick start` heading, without the `//! ` prefixes.
fn quick_start_block(fence: &str) -> String {
    let lib = read("src/lib.rs");
    let section = lib
        .split_once("//! ## Quick start\n")
        .unwrap_or_else(|| panic!("src/lib.rs has no Quick start section"))
        .1;
    let opening = format!("//! ```{fence}\n");
    let body = section
        .split_once(opening.as_str())
        .unwrap_or_else(|| panic!("no ```{fence} block in the quick start"))
        .1;
    let body = body
        .split_once("//! ```\n")
        .unwrap_or_else(|| panic!("unclosed ```{fence} block in the quick start"))
        .0;
    body.lines()
        .map(|line| {
            let text = line
                .strip_prefix("//! ")
                .or_else(|| line.strip_prefix("//!"))
                .unwrap_or_else(|| panic!("not a crate-doc line: {line:?}"));
            format!("{text}\n")
        })
        .collect()
}

/// The README's fenced blocks opened by "```{fence}".
fn readme_blocks(fence: &str) -> Vec<String> {
    blocks_of("README.md")
        .into_iter()
        .filter(|(info, _)| info == fence)
        .map(|(_, body)| body)
        .collect()
}

/// The guide's chapters, as paths relative to the crate root, sorted.
fn chapters() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guide");
    let mut chapters: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".md").then(|| format!("docs/guide/{name}"))
        })
        .collect();
    chapters.sort();
    assert!(chapters.len() >= 8, "docs/guide/ holds the chapters");
    chapters
}

/// The README and every chapter.
fn documents() -> Vec<String> {
    let mut documents = vec!["README.md".to_string()];
    documents.extend(chapters());
    documents
}

/// The lines of a Rust block a reader sees (rustdoc hides `# ` lines).
fn visible(code: &str) -> String {
    code.lines()
        .filter(|line| *line != "#" && !line.starts_with("# "))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_readme_shows_the_compiled_quick_start_program_verbatim() {
    let program = quick_start_block("no_run");
    assert!(
        program.contains("fn main()"),
        "the quick start is a whole program"
    );
    assert!(
        !program
            .lines()
            .any(|line| line.trim_start().starts_with("# ")),
        "the quick start hides no lines, so the README can show all of it"
    );
    assert!(
        readme_blocks("rust").contains(&program),
        "README.md does not show the quick start program of src/lib.rs verbatim in a ```rust block"
    );
}

#[test]
fn the_readme_shows_the_quick_start_dependencies_verbatim() {
    let manifest = quick_start_block("toml");
    assert!(
        readme_blocks("toml").contains(&manifest),
        "README.md does not show the quick start's Cargo.toml lines verbatim in a ```toml block"
    );
    // Everything the program uses is declared.
    for dependency in [
        "dynamo-es =",
        "cqrs-es =",
        "aws-config =",
        "tokio =",
        "serde =",
    ] {
        assert!(
            manifest.lines().any(|line| line.starts_with(dependency)),
            "the quick start's Cargo.toml lacks {dependency}"
        );
    }
}

#[test]
fn the_quick_start_uses_the_current_aws_config_entry_point() {
    let program = quick_start_block("no_run");
    assert!(!program.contains("load_from_env"), "deprecated");
    assert!(program.contains("aws_config::load_defaults(aws_config::BehaviorVersion::latest())"));
    // The SDK through the crate's re-export, so the versions match.
    assert!(program.contains("use dynamo_es::aws_sdk_dynamodb::Client;"));
}

#[test]
fn no_dependency_line_resolves_to_upstream() {
    // On crates.io, 0.5 is upstream's dynamo-es. The line that will resolve
    // to this crate once published is the current major.minor.
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let published = format!(
        "dynamo-es = \"{}.{}\"",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    let manifest = quick_start_block("toml");
    assert!(
        manifest.contains(&published),
        "the quick start names {published}"
    );
    let blocks = documents().into_iter().flat_map(|path| {
        blocks_of(&path)
            .into_iter()
            .filter(|(info, _)| info == "toml")
            .map(move |(_, body)| (path.clone(), body))
    });
    for (path, block) in blocks {
        for line in block.lines() {
            let line = line.trim_start_matches("# ").trim();
            if !line.starts_with("dynamo-es") {
                continue;
            }
            assert!(
                !line.contains("\"0.5") && !line.contains("\"=0.5"),
                "{path}: {line} resolves to upstream dynamo-es"
            );
            assert!(
                line.contains("git =") || line.contains("path =") || line == published,
                "{path}: {line} is neither this repository nor {published}"
            );
        }
    }
}

#[test]
fn the_readme_links_every_chapter_and_every_chapter_is_a_doc_test() {
    let readme = read("README.md");
    let lib = read("src/lib.rs");
    for chapter in chapters() {
        assert!(
            readme.contains(&format!("]({chapter})")),
            "README.md does not link {chapter}"
        );
        assert!(
            lib.contains(&format!("#[doc = include_str!(\"../{chapter}\")]")),
            "src/lib.rs does not include {chapter} as a doc test"
        );
    }
    assert!(
        readme.lines().count() < 300,
        "README.md is a landing page: under 300 lines"
    );
}

#[test]
fn every_rust_block_compiles_in_ci() {
    // The README's only Rust block is the quick start, compiled in the
    // crate docs (checked above); the chapters are doc tests, where a block
    // compiles unless its fence says otherwise.
    let quick_start = quick_start_block("no_run");
    for (info, body) in blocks_of("README.md") {
        if info.starts_with("rust") {
            assert_eq!(
                body, quick_start,
                "README.md: a ```{info} block that is not the quick start"
            );
        }
    }
    for chapter in chapters() {
        for (info, body) in blocks_of(&chapter) {
            assert!(
                ["rust", "rust,no_run", "toml", "sh", "text"].contains(&info.as_str()),
                "{chapter}: a ```{info} block (a Rust block must compile: rust or rust,no_run)\n{body}"
            );
        }
    }
}

#[test]
fn the_cargo_lines_shown_declare_what_the_examples_use() {
    // What a visible Rust line uses -> what the Cargo lines must say: the
    // README's (the quick start's) and those of the chapter itself.
    const NEEDS: [(&str, &str, &str); 6] = [
        ("tokio::signal", "tokio =", "\"signal\""),
        ("#[tokio::main", "tokio =", "\"rt-multi-thread\""),
        (
            "tracing_subscriber",
            "tracing-subscriber =",
            "\"env-filter\"",
        ),
        ("dynamo_es::testing", "dynamo-es =", "\"test-util\""),
        (".compressed(", "dynamo-es =", "\"compression\""),
        ("aws_config::", "aws-config =", ""),
    ];
    let readme_toml: String = readme_blocks("toml").concat();
    for document in documents() {
        let blocks = blocks_of(&document);
        let toml: String = readme_toml.clone()
            + &blocks
                .iter()
                .filter(|(info, _)| info == "toml")
                .map(|(_, body)| body.as_str())
                .collect::<String>();
        for (info, body) in &blocks {
            if !info.starts_with("rust") {
                continue;
            }
            let code = visible(body);
            for (uses, dependency, feature) in NEEDS {
                if !code.contains(uses) {
                    continue;
                }
                assert!(
                    toml.lines()
                        .any(|line| line.starts_with(dependency) && line.contains(feature)),
                    "{document}: a Rust block uses {uses}, but no Cargo line shown there or in \
                     the README declares {dependency} with {feature}"
                );
            }
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of the markdown file at `path`, headings in code blocks aside.
fn anchors(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut in_code = false;
    let mut anchors = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.push(anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

#[test]
fn every_relative_link_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for document in documents() {
        let text = read(&document);
        let dir = root
            .join(&document)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for (_, rest) in text
            .match_indices("](")
            .map(|(at, _)| text.split_at(at + 2))
        {
            let Some((target, _)) = rest.split_once(')') else {
                continue;
            };
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                root.join(&document)
            } else {
                dir.join(file)
            };
            assert!(
                path.exists(),
                "{document}: link to {target}: no {}",
                path.display()
            );
            if !fragment.is_empty() {
                assert!(
                    anchors(&path).iter().any(|a| a == fragment),
                    "{document}: link to {target}: no heading #{fragment} in {}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "the links were found ({checked})");
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchor(" Use `DynamoStore`, not `PersistedEventStore`"),
        "use-dynamostore-not-persistedeventstore"
    );
    assert_eq!(
        anchor(" Moving existing tables to another codec: `dynamo-es report` / `recode`"),
        "moving-existing-tables-to-another-codec-dynamo-es-report--recode"
    );
}

/// Issue 23, point 16: the quick start says what it did, and prints an
/// error with `Display` (`?` out of `main` prints the `Debug` form, a long
/// dump around the one useful sentence).
#[test]
fn the_quick_start_says_what_happened_and_prints_errors_with_display() {
    let program = quick_start_block("no_run");
    for (needed, why) in [
        (
            "async fn main() -> std::process::ExitCode",
            "main returns no Result, whose error would print with Debug",
        ),
        (
            "eprintln!(\"error: {err}\")",
            "it prints its error with Display",
        ),
    ] {
        assert!(
            program.contains(needed),
            "{why}: the quick start lacks {needed}"
        );
    }
    let says = program
        .lines()
        .filter(|line| line.trim_start().starts_with("println!(\""))
        .count();
    assert!(says >= 2, "each step says what happened");
}
