//! The README and the crate docs share their tables: each table lives once,
//! in `docs/tables/`, is included into the crate docs with `include_str!`,
//! and must stand verbatim in the README.

use std::path::Path;

const TABLES: [(&str, &str); 4] = [
    ("features.md", "src/lib.rs"),
    ("limits.md", "src/lib.rs"),
    ("formats.md", "src/codec/mod.rs"),
    ("msgpack.md", "src/codec/mod.rs"),
];

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn every_shared_table_is_in_the_readme_and_the_crate_docs() {
    let readme = read("README.md");
    for (table, source) in TABLES {
        let text = read(&format!("docs/tables/{table}"));
        let text = text.trim_end();
        assert!(text.starts_with('|'), "{table} is a table");
        assert!(
            readme.contains(text),
            "README.md does not hold docs/tables/{table} verbatim"
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
    // The rows that used to be copied by hand stand once in each document.
    let readme = read("README.md");
    for (table, _) in TABLES {
        let text = read(&format!("docs/tables/{table}"));
        let header = text.lines().next().unwrap_or_default();
        assert_eq!(
            readme.matches(header).count(),
            1,
            "{table} header in README.md"
        );
    }
    for source in ["src/lib.rs", "src/codec/mod.rs"] {
        assert!(
            !read(source).contains("//! | limit |") && !read(source).contains("//! | feature |"),
            "{source} writes a shared table out by hand"
        );
    }
}
