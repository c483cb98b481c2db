//! The README's projector example is the one `cargo test --doc` compiles in
//! the `projection` module docs, and the Projections table is the shared one.

#![allow(clippy::expect_used)]

use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// `code` as module-doc lines (`//! ` before each line, `//!` alone on
/// empty ones).
fn as_module_doc(code: &str) -> String {
    code.lines()
        .map(|line| match line {
            "" => "//!\n".to_string(),
            line => format!("//! {line}\n"),
        })
        .collect()
}

#[test]
fn the_readme_shows_the_compiled_projector_example_verbatim() {
    let readme = read("README.md");
    let section = readme
        .split_once("## Projections\n")
        .expect("README.md has a Projections section")
        .1;
    let example = section
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .expect("the Projections section shows a rust example")
        .0;
    assert!(example.contains("Projector::new(") && example.contains("ViewProjection::new("));
    let compiled = format!("//! ```no_run\n{}//! ```\n", as_module_doc(example));
    assert!(
        read("src/projection/mod.rs").contains(&compiled),
        "the README's projector example is not src/projection/mod.rs's no_run example verbatim"
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
