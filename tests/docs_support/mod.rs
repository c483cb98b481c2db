//! Reading the crate's docs in tests: a file of the crate, its fenced code
//! blocks, and the one block of a kind that holds a given text.
#![allow(dead_code)]

use std::path::Path;

/// The file at `path`, relative to the crate root.
pub fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The fenced blocks of the Markdown file at `path`: each one's info
/// string (after "```", trimmed) and body (its lines, each ending in a
/// newline).
pub fn blocks_of(path: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in read(path).lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{path}: an unclosed code block");
    blocks
}

/// The body of the first block of `path` opened by "```{fence}" that
/// contains `needle`; panics naming what is missing if there is none.
pub fn block_containing(path: &str, fence: &str, needle: &str) -> String {
    blocks_of(path)
        .into_iter()
        .find(|(info, body)| info == fence && body.contains(needle))
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("{path} shows no ```{fence} block containing {needle:?}"))
}
