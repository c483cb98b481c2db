//! The README's projector example is the one `cargo test --doc` compiles in
//! the `projection` module docs, and the Projections table is the shared one.

#![allow(clippy::expect_used)]

use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The `no_run` example of the projection module docs, without `//! `.
fn module_example() -> String {
    let source = read("src/projection/mod.rs");
    let body = source
        .split_once("//! ```no_run\n")
        .expect("the projection module docs have a no_run example")
        .1
        .split_once("//! ```\n")
        .expect("closed")
        .0;
    body.lines()
        .map(|line| {
            let text = line
                .strip_prefix("//! ")
                .or_else(|| line.strip_prefix("//!"))
                .unwrap_or_else(|| panic!("not a module-doc line: {line:?}"));
            format!("{text}\n")
        })
        .collect()
}

#[test]
fn the_readme_shows_the_compiled_projector_example_verbatim() {
    let example = module_example();
    assert!(example.contains("Projector::new(") && example.contains("ViewProjection::new("));
    let readme = read("README.md");
    let section = readme
        .split_once("## Projections\n")
        .expect("README.md has a Projections section")
        .1;
    assert!(
        section.contains(&format!("```rust\n{example}```\n")),
        "README.md's Projections section does not show src/projection/mod.rs's example verbatim"
    );
}

#[test]
fn the_projections_table_is_shared_by_the_readme_and_the_crate_docs() {
    let table = read("docs/tables/projections.md");
    let table = table.trim_end();
    assert!(table.starts_with("| | in-process queries | projector | AWS Lambda |"));
    assert_eq!(read("README.md").matches(table).count(), 1);
    assert!(read("src/lib.rs").contains("docs/tables/projections.md\")]"));
}
