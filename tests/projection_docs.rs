//! The guide's projector example (`docs/guide/projections.md`) is the one
//! `cargo test --doc` compiles in the `projection` module docs, and the
//! Projections table is the shared one.

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
fn the_guide_shows_the_compiled_projector_example_verbatim() {
    let chapter = read("docs/guide/projections.md");
    let example = chapter
        .split("```rust,no_run\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```\n").map(|(body, _)| body))
        .find(|body| body.contains("Projector::new("))
        .expect("docs/guide/projections.md shows a rust,no_run projector example");
    assert!(example.contains("ViewProjection::new("));
    let compiled = format!("//! ```no_run\n{}//! ```\n", as_module_doc(example));
    assert!(
        read("src/projection/mod.rs").contains(&compiled),
        "the guide's projector example is not src/projection/mod.rs's no_run example verbatim"
    );
}

#[test]
fn the_projections_table_is_shared_by_the_guide_and_the_crate_docs() {
    let table = read("docs/tables/projections.md");
    let table = table.trim_end();
    assert!(table.starts_with("| | in-process queries | projector | AWS Lambda |"));
    assert_eq!(read("docs/guide/projections.md").matches(table).count(), 1);
    assert!(
        !read("README.md").contains(table),
        "the README links the chapter instead"
    );
    assert!(read("src/lib.rs").contains("docs/tables/projections.md\")]"));
}

#[test]
fn the_guide_shows_the_compiled_transactional_example_verbatim() {
    let chapter = read("docs/guide/projections.md");
    let example = chapter
        .split("```rust,no_run\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```\n").map(|(body, _)| body))
        .find(|body| body.contains("Transactional::new("))
        .expect("docs/guide/projections.md shows a rust,no_run transactional example");
    assert!(example.contains("TransactionalProjection<A> for"));
    let compiled = format!("//! ```no_run\n{}//! ```\n", as_module_doc(example));
    assert!(
        read("src/projection/transactional/mod.rs").contains(&compiled),
        "the guide's transactional example is not src/projection/transactional/mod.rs's no_run example verbatim"
    );
}
