//! The README's usage example is the crate docs' quick start: the program
//! `cargo test --doc` compiles (a `no_run` doc test in `src/lib.rs`) and its
//! `Cargo.toml` lines must stand verbatim in the README, and the dependency
//! line must name this crate, not upstream's `dynamo-es = "0.5"`.

use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

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
    let readme = read("README.md");
    let opening = format!("```{fence}\n");
    readme
        .split(opening.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once("```\n").map(|(body, _)| body.to_string()))
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
    for block in readme_blocks("toml") {
        for line in block.lines() {
            let line = line.trim_start_matches("# ").trim();
            if !line.starts_with("dynamo-es") {
                continue;
            }
            assert!(
                !line.contains("\"0.5") && !line.contains("\"=0.5"),
                "README.md: {line} resolves to upstream dynamo-es"
            );
            assert!(
                line.contains("git =") || line.contains("path =") || line == published,
                "README.md: {line} is neither this repository nor {published}"
            );
        }
    }
}

/// Issue 23, point 16: the quick start says what it did, and prints an
/// error with `Display` (`?` out of `main` prints the `Debug` form, a long
/// dump around the one useful sentence).
#[test]
fn the_quick_start_says_what_happened_and_prints_errors_with_display() {
    let program = quick_start_block("no_run");
    assert!(
        program.contains("async fn main() -> std::process::ExitCode"),
        "main does not return a Result, whose error would print with Debug"
    );
    assert!(program.contains("eprintln!(\"error: {err}\")"));
    let says = program
        .lines()
        .filter(|line| line.trim_start().starts_with("println!(\""))
        .count();
    assert!(says >= 2, "each step says what happened");
}
