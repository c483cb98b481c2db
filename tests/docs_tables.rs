//! The guide and the crate docs share their tables: each table lives once,
//! in `docs/tables/`, is included into the crate docs with `include_str!`,
//! and must stand verbatim in the guide chapter that explains it.

mod docs_support;

use docs_support::read;
use std::path::Path;

/// Each shared table (in `docs/tables/`), the guide chapter showing it (in
/// `docs/guide/`), and the source whose crate docs include it.
const TABLES: [(&str, &str, &str); 4] = [
    ("features.md", "getting-started.md", "src/lib.rs"),
    ("limits.md", "codecs-and-limits.md", "src/lib.rs"),
    ("formats.md", "codecs-and-limits.md", "src/codec/mod.rs"),
    ("msgpack.md", "codecs-and-limits.md", "src/codec/mod.rs"),
];

/// The README and every guide chapter, concatenated.
fn all_docs() -> String {
    let mut text = read("README.md");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guide");
    let mut chapters: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    chapters.sort();
    for chapter in chapters {
        text.push_str(
            &std::fs::read_to_string(&chapter)
                .unwrap_or_else(|err| panic!("{}: {err}", chapter.display())),
        );
    }
    text
}

#[test]
fn every_shared_table_is_in_its_guide_chapter_and_the_crate_docs() {
    for (table, chapter, source) in TABLES {
        let chapter = format!("docs/guide/{chapter}");
        let text = read(&format!("docs/tables/{table}"));
        let text = text.trim_end();
        assert!(text.starts_with('|'), "{table} is a table");
        assert!(
            read(&chapter).contains(text),
            "{chapter} does not hold docs/tables/{table} verbatim"
        );
        let include = format!("docs/tables/{table}\")]");
        assert!(
            read(source).contains(&include),
            "{source} does not include docs/tables/{table}"
        );
    }
}

#[test]
fn no_table_is_written_out_twice() {
    // The rows that used to be copied by hand stand once in the README and
    // the guide together.
    let docs = all_docs();
    for (table, _, _) in TABLES {
        let text = read(&format!("docs/tables/{table}"));
        let header = text.lines().next().unwrap_or_default();
        assert_eq!(
            docs.matches(header).count(),
            1,
            "{table} header in README.md and docs/guide/"
        );
    }
    for source in ["src/lib.rs", "src/codec/mod.rs"] {
        assert!(
            !read(source).contains("//! | limit |") && !read(source).contains("//! | feature |"),
            "{source} writes a shared table out by hand"
        );
    }
}
