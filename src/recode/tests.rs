//! Tests of whole runs: the documented example kept in the guide, and
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
fn the_guide_holds_the_module_example_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/recode/mod.rs")).unwrap();
    let chapter =
        std::fs::read_to_string(root.join("docs/guide/recode-and-dictionaries.md")).unwrap();
    let example = module_example(&source);
    assert!(
        example.contains("recoder.report(&tables)") && example.contains("recoder.run(&tables)"),
        "{example}"
    );
    // The guide's block compiles as a doc test of its own (hidden set-up
    // lines aside, the same code).
    let shown = module_example(&format!(
        "//! ```rust,no_run\n{}",
        as_module_doc(&chapter, "```rust,no_run\n")
    ));
    assert_eq!(
        shown, example,
        "docs/guide/recode-and-dictionaries.md does not show the example of src/recode/mod.rs"
    );
}

/// The first block of `markdown` opened by `opening` (through its closing
/// fence), as `//!` lines.
fn as_module_doc(markdown: &str, opening: &str) -> String {
    let block = markdown
        .split_once(opening)
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .map(|(body, _)| body)
        .expect("the chapter has the block");
    let mut doc: String = block.lines().map(|line| format!("//! {line}\n")).collect();
    doc.push_str("//! ```\n");
    doc
}

#[cfg(all(feature = "test-util", feature = "compression"))]
mod emulator {
    use std::path::PathBuf;

    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::super::{Error, RecodeOptions, Recoder, Table};
    use crate::testing::{dynamodb, unique_name, EmbeddedDynamo, TestTables};
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

    /// Fresh tables with `count` views seeded, and their views table.
    async fn seeded_views(count: usize) -> (TestTables, [Table; 1]) {
        let db = dynamodb().await.unwrap();
        seed_views(&db, count).await;
        let tables = [Table::views(&db.views)];
        (db, tables)
    }

    fn checkpoint_path() -> PathBuf {
        std::env::temp_dir().join(format!("{}.json", unique_name("recode-unit")))
    }

    #[tokio::test]
    async fn a_report_keeps_no_checkpoint_and_the_run_after_it_resumes_its_own() {
        let (db, tables) = seeded_views(7).await;
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

    /// The error of a run refused by its checkpoint, as text.
    async fn refused(recoder: &Recoder, tables: &[Table]) -> String {
        match recoder.run(tables).await {
            Err(crate::Error::Recode(err)) => {
                assert!(matches!(*err, Error::CheckpointOtherTable { .. }), "{err}");
                err.to_string()
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_finished_checkpoint_is_refused_on_a_recreated_table_or_another_endpoint() {
        let (db, tables) = seeded_views(3).await;
        let checkpoint = checkpoint_path();
        let options = RecodeOptions::default().with_checkpoint(&checkpoint);
        let target = Codec::json().compressed(3);
        let recoder = Recoder::new(db.client.clone(), target.clone()).with_options(options.clone());
        let done = recoder.run(&tables).await.unwrap();
        assert!(done.complete);
        assert_eq!(done.tables[0].counts.items_recoded, 3);
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
        let identity = &saved["tables"][&db.views]["identity"];
        assert!(identity["table_id"].is_string(), "{saved}");
        assert!(
            identity["arn"].as_str().unwrap().ends_with(&db.views),
            "{saved}"
        );
        if std::env::var(crate::testing::ENDPOINT_ENV).is_err() {
            assert_eq!(identity["endpoint"], crate::testing::endpoint().unwrap());
        }
        assert_eq!(recoder.run(&tables).await.unwrap(), done, "same table");

        // Another endpoint with a table of the same name: refused, naming
        // the file, the table and the endpoints.
        let other = EmbeddedDynamo::start().unwrap();
        let client = other.client();
        crate::create_view_table(&client, &db.views).await.unwrap();
        let elsewhere = Recoder::new(client, target.clone()).with_options(options.clone());
        let message = refused(&elsewhere, &tables).await;
        let file = checkpoint.display().to_string();
        for part in [
            file.as_str(),
            db.views.as_str(),
            "endpoint",
            &other.endpoint(),
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        tokio::task::spawn_blocking(move || other.stop())
            .await
            .unwrap();

        // The same table deleted and created again: refused (a new table id).
        db.client
            .delete_table()
            .table_name(&db.views)
            .send()
            .await
            .unwrap();
        crate::create_view_table(&db.client, &db.views)
            .await
            .unwrap();
        seed_views(&db, 1).await;
        let message = refused(&recoder, &tables).await;
        assert!(message.contains("table id"), "{message}");
        assert!(!message.contains("endpoint"), "{message}");

        // Deleting the checkpoint starts over on the new table.
        std::fs::remove_file(&checkpoint).unwrap();
        let fresh = recoder.run(&tables).await.unwrap();
        assert_eq!(fresh.tables[0].counts.items_scanned, 1);
        std::fs::remove_file(&checkpoint).unwrap();
    }

    #[tokio::test]
    async fn payloads_the_target_would_grow_are_counted_as_in_another_format() {
        let (db, tables) = seeded_views(4).await;
        let compress = Recoder::new(db.client.clone(), Codec::json().compressed(3));
        let done = compress.run(&tables).await.unwrap();
        assert_eq!(done.tables[0].counts.items_recoded, 4);
        assert_eq!(done.items_other_format(), 0);

        // Back to plain JSON: larger, so left in zstd and counted.
        let back = Recoder::new(db.client.clone(), Codec::json());
        let kept = back.run(&tables).await.unwrap();
        let counts = kept.tables[0].counts;
        assert_eq!(
            (
                counts.items_recoded,
                counts.items_skipped,
                counts.items_other_format
            ),
            (0, 4, 4)
        );
        assert!(kept.to_string().contains("  in another format"), "{kept}");
        // Already as zstd-3 stores them: not another format.
        let again = compress.run(&tables).await.unwrap();
        assert_eq!(
            (
                again.tables[0].counts.items_skipped,
                again.items_other_format()
            ),
            (4, 0)
        );
        // With growth allowed they move.
        let moved = back
            .with_options(RecodeOptions::default().with_allow_growth(true))
            .run(&tables)
            .await
            .unwrap();
        assert_eq!(
            (
                moved.tables[0].counts.items_recoded,
                moved.items_other_format()
            ),
            (4, 0)
        );
    }
}
