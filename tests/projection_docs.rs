//! The guide's projector example (`docs/guide/projections.md`) is the one
//! `cargo test --doc` compiles in the `projection` module docs, and the
//! Projections table is the shared one.

#![allow(clippy::expect_used)]

mod docs_support;

use docs_support::{block_containing, read};

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

/// The guide's `rust,no_run` block containing `needle` shows `shown` and
/// stands verbatim, as a `no_run` crate-doc example, in `source`.
fn assert_guide_example_compiled(needle: &str, shown: &str, source: &str) {
    let example = block_containing("docs/guide/projections.md", "rust,no_run", needle);
    assert!(example.contains(shown), "the example shows no {shown:?}");
    let compiled = format!("//! ```no_run\n{}//! ```\n", as_module_doc(&example));
    assert!(
        read(source).contains(&compiled),
        "the guide's example with {needle:?} is not {source}'s no_run example verbatim"
    );
}

#[test]
fn the_guide_shows_the_compiled_projector_example_verbatim() {
    assert_guide_example_compiled(
        "Projector::new(",
        "ViewProjection::new(",
        "src/projection/mod.rs",
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
    assert_guide_example_compiled(
        "Transactional::new(",
        "TransactionalProjection<A> for",
        "src/projection/transactional/mod.rs",
    );
}
