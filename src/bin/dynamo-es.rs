//! The `dynamo-es` command-line tool.
fn main() {}
