//! The dynamo-es demo: a bank account aggregate on DynamoDB (the one in
//! `dynamo_es::testing::aggregates`).
//!
//! Commands go through `CqrsFramework`, the aggregate is reloaded from its
//! snapshot, and a view is read back. It runs on an embedded DynamoDB
//! emulator (dynoxide) unless `AWS_ENDPOINT_URL_DYNAMODB` is set, and
//! prints what each codec stored, from the crate's own tracing spans.
//!
//! ```text
//! cargo run --example demo
//! ```

// Display-only arithmetic: byte counts and cents shown as floats.
#![allow(clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::{GenericQuery, ViewRepository};
use cqrs_es::{CqrsFramework, EventStore};
use dynamo_es::testing::aggregates::{AccountSummary, BankAccount, BankCommand};
use dynamo_es::{Codec, DynamoStore, SnapshotPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

// ---- A tracing layer that totals the crate's persist spans ---------------

#[derive(Debug, Default, Clone)]
struct Totals {
    commits: u64,
    items: u64,
    plain_bytes: u64,
    stored_bytes: u64,
    capacity: f64,
}

#[derive(Default)]
struct SpanFields {
    codec: String,
    counts: BTreeMap<&'static str, u64>,
    capacity: f64,
}

impl Visit for SpanFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "codec" {
            self.codec = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "codec" {
            self.codec = value.to_string();
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.counts.insert(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.counts
            .insert(field.name(), u64::try_from(value).unwrap_or_default());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "consumed_capacity" {
            self.capacity = value;
        }
    }
}

#[derive(Clone, Default)]
struct PersistTotals(Arc<Mutex<BTreeMap<String, Totals>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PersistTotals {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "dynamo_es.persist" {
            return;
        }
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(fields);
            }
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(fields) = extensions.get::<SpanFields>() else {
            return;
        };
        if !fields.counts.contains_key("items") {
            return;
        }
        let mut totals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = totals.entry(fields.codec.clone()).or_default();
        entry.commits += 1;
        let get = |name| fields.counts.get(name).copied().unwrap_or_default();
        entry.items += get("items");
        entry.plain_bytes += get("plain_bytes");
        entry.stored_bytes += get("stored_bytes");
        entry.capacity += fields.capacity;
    }
}

// ---- The demo -------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let totals = PersistTotals::default();
    let subscriber = tracing_subscriber::registry().with(totals.clone());
    tracing::subscriber::set_global_default(subscriber)?;

    match std::env::var(dynamo_es::testing::ENDPOINT_ENV) {
        Ok(endpoint) => println!("DynamoDB endpoint: {endpoint}"),
        Err(_) => println!(
            "DynamoDB endpoint: embedded dynoxide emulator at {}",
            dynamo_es::testing::endpoint()?
        ),
    }
    let db = dynamo_es::testing::dynamodb().await?;
    println!("tables: {}, {}, {}\n", db.events, db.snapshots, db.views);

    for codec in Codec::available() {
        let repo = db.repository().with_codec(codec.clone());
        let views = Arc::new(
            db.view_repository::<AccountSummary, BankAccount>()
                .with_codec(codec.clone()),
        );
        let query = GenericQuery::<_, AccountSummary, BankAccount>::new(views.clone());
        let cqrs = CqrsFramework::new(
            DynamoStore::<BankAccount>::new(repo.clone(), SnapshotPolicy::Every(10)),
            vec![Box::new(query)],
            (),
        );
        let id = format!("account-{}", codec.name());
        cqrs.execute(
            &id,
            BankCommand::Open {
                owner: "Ada Lovelace".into(),
            },
        )
        .await?;
        for i in 0..120i64 {
            let description = format!("card payment #{i:04} at Corner Coffee, Market Street");
            cqrs.execute(
                &id,
                BankCommand::Deposit {
                    cents: 2_500 + i,
                    description,
                },
            )
            .await?;
            if i % 3 == 0 {
                let description =
                    format!("transfer #{i:04} to savings, reference INV-{:06}", i * 37);
                cqrs.execute(
                    &id,
                    BankCommand::Withdraw {
                        cents: 1_000,
                        description,
                    },
                )
                .await?;
            }
        }
        if let Err(err) = cqrs
            .execute(
                &id,
                BankCommand::Withdraw {
                    cents: i64::MAX,
                    description: "too much".into(),
                },
            )
            .await
        {
            println!("[{}] rejected as expected: {err}", codec.name());
        }
        let store = DynamoStore::<BankAccount>::new(repo, SnapshotPolicy::Every(10));
        let context = store.load_aggregate(&id).await?;
        let summary = views.load(&id).await?.unwrap_or_default();
        println!(
            "[{}] reloaded {id}: sequence {}, snapshot v{}, balance {:.2}, {} statement lines; view: {} deposits, {} withdrawals, balance {:.2}",
            codec.name(),
            context.current_sequence,
            context.current_snapshot.unwrap_or_default(),
            context.aggregate.balance_cents as f64 / 100.0,
            context.aggregate.statement.len(),
            summary.deposits,
            summary.withdrawals,
            summary.balance_cents as f64 / 100.0,
        );
        assert_eq!(context.aggregate.balance_cents, summary.balance_cents);
    }

    println!("\nWhat each codec wrote (from the dynamo_es.persist tracing spans):\n");
    println!(
        "{:<16} {:>8} {:>8} {:>12} {:>12} {:>7} {:>10}",
        "codec", "commits", "items", "plain B", "stored B", "saved", "capacity"
    );
    let totals = totals.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (codec, t) in &totals {
        let saved = 100.0 * (1.0 - t.stored_bytes as f64 / t.plain_bytes.max(1) as f64);
        println!(
            "{codec:<16} {:>8} {:>8} {:>12} {:>12} {:>6.1}% {:>10.1}",
            t.commits, t.items, t.plain_bytes, t.stored_bytes, saved, t.capacity
        );
    }
    println!("\n(plain B: payloads as JSON; stored B: payloads as stored; capacity: units DynamoDB reported consumed)");
    Ok(())
}
