//! Tests of whole runs: the documented example kept in the README, and
//! runs on the embedded emulator (with `test-util`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The visible lines of the first example in `source`'s `//!` docs.
fn module_example(source: &str) -> String {
    let mut lines = source
        .lines()
        .map_while(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .skip_while(|line| !line.starts_with("```"))
        .skip(1);
    let mut example = String::new();
    for line in lines.by_ref() {
        if line.starts_with("```") {
            return example;
        }
        if line != "#" && !line.starts_with("# ") {
            example.push_str(line);
            example.push('\n');
        }
    }
    panic!("the module docs have no closed example")
}

#[test]
fn the_readme_holds_the_module_example_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/recode/mod.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = module_example(&source);
    assert!(
        example.contains("recoder.report(&tables)") && example.contains("recoder.run(&tables)"),
        "{example}"
    );
    let fenced = format!("```rust,ignore\n{example}```\n");
    assert!(
        readme.contains(&fenced),
        "README.md does not show the example of src/recode/mod.rs verbatim:\n{fenced}"
    );
}

#[cfg(all(feature = "test-util", feature = "compression"))]
mod emulator {
    use std::path::PathBuf;

    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::super::{RecodeOptions, Recoder, Table};
    use crate::testing::{dynamodb, unique_name, TestTables};
    use crate::Codec;

    /// `count` views of pretty-printed JSON over 1 KB, which zstd shrinks.
    async fn seed_views(db: &TestTables, count: usize) {
        for k in 0..count {
            let payload =
                serde_json::to_vec_pretty(&vec![vec![format!("view {k}"); 16]; 16]).unwrap();
            assert!(payload.len() > 1024);
            db.client
                .put_item()
                .table_name(&db.views)
                .item("ViewId", AttributeValue::S(format!("v{k}")))
                .item("ViewVersion", AttributeValue::N("1".into()))
                .item("Payload", AttributeValue::B(Blob::new(payload)))
                .send()
                .await
                .unwrap();
        }
    }

    fn checkpoint_path() -> PathBuf {
        std::env::temp_dir().join(format!("{}.json", unique_name("recode-unit")))
    }

    #[tokio::test]
    async fn a_report_keeps_no_checkpoint_and_the_run_after_it_resumes_its_own() {
        let db = dynamodb().await.unwrap();
        seed_views(&db, 7).await;
        let tables = [Table::views(&db.views)];
        let checkpoint = checkpoint_path();
        let options = || {
            RecodeOptions::default()
                .with_segments(2)
                .with_page_size(2)
                .with_checkpoint(&checkpoint)
        };
        let recoder =
            Recoder::new(db.client.clone(), Codec::json().compressed(3)).with_options(options());

        let report = recoder.report(&tables).await.unwrap();
        assert!(report.complete && report.tables[0].dry_run);
        assert_eq!(report.tables[0].counts.items_recoded, 7);
        assert!(!checkpoint.exists(), "a dry run writes no checkpoint");

        // An interrupted run, then a report in between: the report neither
        // reads nor disturbs the run's checkpoint.
        let partial = recoder
            .clone()
            .with_options(options().with_max_items(2))
            .run(&tables)
            .await
            .unwrap();
        assert!(!partial.complete);
        let saved = std::fs::read(&checkpoint).unwrap();
        let again = recoder.report(&tables).await.unwrap();
        assert!(again.complete && again.tables[0].dry_run);
        assert_eq!(
            again.tables[0].counts.items_scanned, 7,
            "a report scans the whole table, not from the run's checkpoint"
        );
        assert_eq!(std::fs::read(&checkpoint).unwrap(), saved);

        // The run resumes its own progress and does what the report said.
        let done = recoder.run(&tables).await.unwrap();
        assert!(done.complete && !done.tables[0].dry_run);
        assert_eq!(done.tables[0].counts.items_recoded, 7);
        assert_eq!(
            done.tables[0].counts.bytes_after,
            report.tables[0].counts.bytes_after
        );
        // Finished: a rerun returns the stored report without scanning.
        assert_eq!(recoder.run(&tables).await.unwrap(), done);
        // A dry run through the options is the same as report().
        let dry = recoder
            .clone()
            .with_options(options().with_dry_run(true))
            .run(&tables)
            .await
            .unwrap();
        assert_eq!(dry.tables[0].counts.items_recoded, 0, "already recoded");
        assert_eq!(recoder.run(&tables).await.unwrap(), done);
        std::fs::remove_file(&checkpoint).unwrap();
    }
}
