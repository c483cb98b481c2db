//! Personal data sealed per data subject, and forgetting a subject
//! (feature `encryption`), on the embedded emulator: an order names a
//! customer and a courier; after the customer is forgotten the order still
//! loads (DynamoStore, its snapshot, cqrs-es's PersistedEventStore, the
//! replay streams) with the customer's fields `Forgotten` and the
//! courier's intact, and no stored byte ever holds the customer's name or
//! e-mail. Key-table and KMS failures are typed, and nothing is written.
#![cfg(feature = "encryption")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use common::{typed, typed_aggregate};
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::encryption::{self, Forgot, KeyStore, LocalKek, Personal};
use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};
use dynamo_es::testing::{dynamodb, scan_all, unique_name, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore, SnapshotPolicy};
use serde::{Deserialize, Serialize};

const CUSTOMER: &str = "customer-7f3a";
const CUSTOMER_NAME: &str = "Ada Lovelace";
const CUSTOMER_EMAIL: &str = "ada.lovelace@example.com";
const COURIER: &str = "courier-19c2";
const COURIER_NAME: &str = "Grace Hopper";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    customer: Option<Personal<String>>,
    email: Option<Personal<String>>,
    courier: Option<Personal<String>>,
    notes: Vec<String>,
}

enum OrderCommand {
    Place {
        customer: String,
        name: String,
        email: String,
    },
    Assign {
        courier: String,
        name: String,
    },
    Note(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    Placed {
        customer: Personal<String>,
        email: Personal<String>,
        total_cents: u64,
    },
    CourierAssigned {
        courier: Personal<String>,
    },
    Noted {
        text: String,
    },
}

dynamo_es::domain_event!(OrderEvent, "1", Placed, CourierAssigned, Noted);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OrderError(String);

dynamo_es::command_aggregate!(Order, "Order", OrderCommand, OrderEvent, OrderError,
    handle(self, command, sink) {
        let event = match command {
            OrderCommand::Place {
                customer,
                name,
                email,
            } => OrderEvent::Placed {
                customer: Personal::new(customer.clone(), name),
                email: Personal::new(customer, email),
                total_cents: 4_250,
            },
            OrderCommand::Assign { courier, name } => OrderEvent::CourierAssigned {
                courier: Personal::new(courier, name),
            },
            OrderCommand::Note(text) => OrderEvent::Noted { text },
        };
        sink.write(event, self).await;
        Ok(())
    }
    apply(self, event) {
        match event {
            OrderEvent::Placed {
                customer, email, ..
            } => {
                self.customer = Some(customer);
                self.email = Some(email);
            }
            OrderEvent::CourierAssigned { courier } => self.courier = Some(courier),
            OrderEvent::Noted { text } => self.notes.push(text),
        }
    }
);

type Cqrs = CqrsFramework<Order, DynamoStore<Order>>;

fn place() -> OrderCommand {
    OrderCommand::Place {
        customer: CUSTOMER.into(),
        name: CUSTOMER_NAME.into(),
        email: CUSTOMER_EMAIL.into(),
    }
}

fn assign() -> OrderCommand {
    OrderCommand::Assign {
        courier: COURIER.into(),
        name: COURIER_NAME.into(),
    }
}

fn local_kek() -> LocalKek {
    LocalKek::new("test-kek", [7; 32]).unwrap()
}

/// Fresh tables, a key table and a key store on it.
async fn setup() -> (TestTables, KeyStore) {
    let db = dynamodb().await.unwrap();
    let table = unique_name("keys");
    dynamo_es::tables::create_key_table(&db.client, &table)
        .await
        .unwrap();
    let keys = KeyStore::new(db.client.clone(), &table, local_kek());
    (db, keys)
}

/// `setup`, and a repository on its tables that writes with `codec` and
/// seals with its key store.
async fn sealing_with(codec: Codec) -> (TestTables, KeyStore, DynamoEventRepository) {
    let (db, keys) = setup().await;
    let repo = db
        .repository()
        .with_codec(codec)
        .with_encryption(keys.clone());
    (db, keys, repo)
}

fn cqrs(repo: DynamoEventRepository, policy: SnapshotPolicy) -> Cqrs {
    CqrsFramework::new(DynamoStore::new(repo, policy), vec![], ())
}

/// Every stored byte of every item of `tables`, raw and (payloads) decoded,
/// holds neither the customer's name nor e-mail, nor the courier's name.
async fn assert_no_plaintext(client: &Client, tables: &[&str]) {
    for table in tables {
        for item in scan_all(client, table).await.unwrap() {
            for (name, value) in &item {
                let bytes: Vec<u8> = match value {
                    AttributeValue::S(s) => s.clone().into_bytes(),
                    AttributeValue::B(b) => b.as_ref().to_vec(),
                    other => format!("{other:?}").into_bytes(),
                };
                let mut texts = vec![String::from_utf8_lossy(&bytes).into_owned()];
                if let AttributeValue::B(b) = value {
                    if let Ok(decoded) = Codec::default().decode(b.as_ref()) {
                        texts.push(decoded.to_string());
                    }
                }
                for text in texts {
                    for secret in [CUSTOMER_NAME, CUSTOMER_EMAIL, COURIER_NAME] {
                        assert!(
                            !text.contains(secret),
                            "{table} item {:?} attribute {name} holds {secret}",
                            item.get("AggregateTypeAndId")
                        );
                    }
                }
            }
        }
    }
}

/// The encryption error inside `err`.
fn encryption_error<E: std::error::Error>(err: &AggregateError<E>) -> &encryption::Error {
    match typed_aggregate(err) {
        dynamo_es::Error::Encryption(inner) => inner,
        other => panic!("not an encryption error: {other:?}"),
    }
}

fn known(value: &Option<Personal<String>>) -> Option<&str> {
    value.as_ref().and_then(Personal::value).map(String::as_str)
}

fn forgotten(value: &Option<Personal<String>>, subject: &str) -> bool {
    matches!(value, Some(Personal::Forgotten { subject: s }) if s == subject)
}

#[tokio::test]
async fn a_forgotten_customer_reads_forgotten_and_the_courier_stays_under_every_codec() {
    for codec in Codec::available() {
        let (db, keys, repo) = sealing_with(codec.clone()).await;
        let cqrs = cqrs(repo.clone(), SnapshotPolicy::Every(2));
        cqrs.execute("o-1", place()).await.unwrap();
        cqrs.execute("o-1", assign()).await.unwrap();
        cqrs.execute("o-1", OrderCommand::Note("ring twice".into()))
            .await
            .unwrap();
        let tables = [db.events.as_str(), db.snapshots.as_str(), keys.table()];
        assert_no_plaintext(&db.client, &tables).await;
        assert_eq!(
            scan_all(&db.client, &db.snapshots).await.unwrap().len(),
            1,
            "{codec}: a snapshot was taken before the forget"
        );

        let store = DynamoStore::<Order>::new(repo.clone(), SnapshotPolicy::Every(2));
        let before = store.load_aggregate("o-1").await.unwrap();
        assert_eq!(known(&before.aggregate.customer), Some(CUSTOMER_NAME));
        assert_eq!(known(&before.aggregate.email), Some(CUSTOMER_EMAIL));

        assert_eq!(keys.forget(CUSTOMER).await.unwrap(), Forgot::KeyDestroyed);
        assert_eq!(
            keys.forget(CUSTOMER).await.unwrap(),
            Forgot::AlreadyForgotten
        );

        // Through the snapshot taken before the forget, and through a cold
        // key cache (another process).
        let cold = KeyStore::new(db.client.clone(), keys.table(), local_kek());
        for repo in [repo.clone(), repo.clone().with_encryption(cold)] {
            let store = DynamoStore::<Order>::new(repo.clone(), SnapshotPolicy::Every(2));
            let order = store.load_aggregate("o-1").await.unwrap().aggregate;
            assert!(forgotten(&order.customer, CUSTOMER), "{codec}: {order:?}");
            assert!(forgotten(&order.email, CUSTOMER), "{codec}: {order:?}");
            assert_eq!(known(&order.courier), Some(COURIER_NAME), "{codec}");
            assert_eq!(order.notes, ["ring twice"]);

            for persisted in [
                PersistedEventStore::<_, Order>::new_event_store(repo.clone()),
                PersistedEventStore::<_, Order>::new_snapshot_store(repo.clone(), 2),
            ] {
                let order = persisted.load_aggregate("o-1").await.unwrap().aggregate;
                assert!(forgotten(&order.customer, CUSTOMER), "{codec}: {order:?}");
                assert_eq!(known(&order.courier), Some(COURIER_NAME), "{codec}");
            }
        }

        // The replay streams (and so every projection rebuilt from them).
        let mut stream = repo.stream_all_events::<Order>().await.unwrap();
        let mut seen = 0;
        while let Some(event) = stream.next::<Order>(&[]).await {
            if let OrderEvent::Placed { customer, .. } = event.unwrap().payload {
                assert!(customer.is_forgotten());
            }
            seen += 1;
        }
        assert_eq!(seen, 3);

        // Commands go on (a new snapshot holds the forgotten markers).
        cqrs.execute("o-1", OrderCommand::Note("left at the door".into()))
            .await
            .unwrap();
        let order = DynamoStore::<Order>::new(repo.clone(), SnapshotPolicy::Every(2))
            .load_aggregate("o-1")
            .await
            .unwrap()
            .aggregate;
        assert!(forgotten(&order.customer, CUSTOMER));
        assert_eq!(order.notes.len(), 2);

        // No new key for a forgotten subject: refused, nothing written.
        let err = cqrs.execute("o-2", place()).await.unwrap_err();
        let inner = encryption_error(&err);
        assert!(
            matches!(inner, encryption::Error::SubjectForgotten { .. }),
            "{inner:?}"
        );
        assert!(repo.get_events::<Order>("o-2").await.unwrap().is_empty());
        assert_no_plaintext(&db.client, &tables).await;
    }
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_item_does_not_open() {
    let (db, _, repo) = sealing_with(Codec::json()).await;
    let cqrs = cqrs(repo.clone(), SnapshotPolicy::Never);
    cqrs.execute("o-1", place()).await.unwrap();
    cqrs.execute("o-2", place()).await.unwrap();
    let items = scan_all(&db.client, &db.events).await.unwrap();
    let of = |id: &str| {
        items
            .iter()
            .find(|item| item["AggregateTypeAndId"] == AttributeValue::S(format!("Order:{id}")))
            .unwrap()
            .clone()
    };
    let mut target = of("o-2");
    target.insert("Payload".into(), of("o-1")["Payload"].clone());
    dynamo_es::testing::put_item(&db.client, &db.events, target)
        .await
        .unwrap();
    let err = repo.get_events::<Order>("o-2").await.unwrap_err();
    let typed = typed(&err);
    assert!(
        matches!(
            typed,
            dynamo_es::Error::Encryption(inner) if matches!(**inner, encryption::Error::Authentication { .. })
        ),
        "{typed:?}"
    );
    assert!(typed.is_data_error());
    assert!(
        typed.to_string().contains("event 1 of Order:o-2"),
        "{typed}"
    );
    // The original still opens.
    assert_eq!(repo.get_events::<Order>("o-1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_key_store_personal_data_is_refused_and_nothing_is_written() {
    let db = dynamodb().await.unwrap();
    let cqrs = cqrs(db.repository(), SnapshotPolicy::Never);
    let err = cqrs.execute("o-1", place()).await.unwrap_err();
    let inner = encryption_error(&err);
    assert!(
        matches!(inner, encryption::Error::NoKeyStore { .. }),
        "{inner:?}"
    );
    assert!(scan_all(&db.client, &db.events).await.unwrap().is_empty());
}

/// A command on a repository whose data keys cannot be had fails with the
/// typed error `check` accepts, and writes nothing.
async fn assert_refused(
    db: &TestTables,
    keys: KeyStore,
    check: impl Fn(&encryption::Error) -> bool,
) -> AggregateError<OrderError> {
    let repo = db.repository().with_encryption(keys);
    let err = cqrs(repo, SnapshotPolicy::Never)
        .execute("o-1", place())
        .await
        .unwrap_err();
    let inner = encryption_error(&err);
    assert!(check(inner), "{inner:?}");
    assert!(scan_all(&db.client, &db.events).await.unwrap().is_empty());
    err
}

#[tokio::test]
async fn key_table_throttling_is_typed_and_nothing_is_written() {
    let db = dynamodb().await.unwrap();
    let http = Scripted::replying([
        Canned::throughput_exceeded(),
        Canned::throughput_exceeded(),
        Canned::throughput_exceeded(),
    ]);
    let keys = KeyStore::new(
        client_on(http.clone(), quick_retries(3), short_timeouts()),
        "Keys",
        local_kek(),
    );
    let err = assert_refused(&db, keys, |err| {
        matches!(err, encryption::Error::KeyTable { source, operation: "reading", .. }
            if matches!(**source, dynamo_es::Error::Throttled { operation: "GetItem", .. }))
    })
    .await;
    // As transient as a throttled events table.
    assert!(
        matches!(err, AggregateError::DatabaseConnectionError(_)),
        "{err:?}"
    );
    assert_eq!(http.operations(), ["GetItem", "GetItem", "GetItem"]);
}

fn kms_client(http: &Scripted) -> encryption::aws_sdk_kms::Client {
    use encryption::aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    let config = encryption::aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(quick_retries(1))
        .http_client(http.clone())
        .build();
    encryption::aws_sdk_kms::Client::from_conf(config)
}

#[tokio::test]
async fn kms_errors_are_typed_and_nothing_is_written() {
    let (db, keys) = setup().await;
    let http = Scripted::replying([Canned::new(
        400,
        serde_json::json!({
            "__type": "AccessDeniedException",
            "message": "User is not authorized to perform kms:GenerateDataKey"
        }),
    )]);
    let kms = encryption::KmsKek::new(kms_client(&http), "alias/personal-data");
    let keys = KeyStore::new(db.client.clone(), keys.table(), kms);
    assert_refused(&db, keys.clone(), |err| {
        matches!(err, encryption::Error::Kek { operation: "KMS GenerateDataKey", message, .. }
            if message.contains("AccessDenied") && message.contains("grant kms:GenerateDataKey"))
    })
    .await;
    assert!(scan_all(&db.client, keys.table()).await.unwrap().is_empty());
}

#[tokio::test]
async fn kms_wraps_and_unwraps_with_the_subject_as_encryption_context() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let (db, keys) = setup().await;
    let http = Scripted::replying([
        Canned::ok(serde_json::json!({
            "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/k",
            "Plaintext": b64(&[9; 32]),
            "CiphertextBlob": b64(b"wrapped-by-kms"),
        })),
        Canned::ok(serde_json::json!({
            "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/k",
            "Plaintext": b64(&[9; 32]),
        })),
    ]);
    let kek = || encryption::KmsKek::new(kms_client(&http), "alias/personal-data");
    let writer = KeyStore::new(db.client.clone(), keys.table(), kek());
    let repo = db.repository().with_encryption(writer);
    cqrs(repo.clone(), SnapshotPolicy::Never)
        .execute("o-1", place())
        .await
        .unwrap();
    // Another process: its cold cache unwraps the stored key with Decrypt.
    let reader = KeyStore::new(db.client.clone(), keys.table(), kek());
    let events = repo
        .with_encryption(reader)
        .get_events::<Order>("o-1")
        .await
        .unwrap();
    let event: OrderEvent = serde_json::from_value(events[0].payload.clone()).unwrap();
    assert!(
        matches!(event, OrderEvent::Placed { customer, .. } if customer.value().map(String::as_str) == Some(CUSTOMER_NAME))
    );
    let requests = http.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(
            request.body["EncryptionContext"],
            serde_json::json!({ "subject": CUSTOMER })
        );
    }
    assert_eq!(
        requests[1].body["CiphertextBlob"],
        serde_json::json!(b64(b"wrapped-by-kms"))
    );
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OrderView {
    customer: Option<Personal<String>>,
    courier: Option<Personal<String>>,
    events: usize,
}

impl cqrs_es::View<Order> for OrderView {
    fn update(&mut self, event: &cqrs_es::EventEnvelope<Order>) {
        match &event.payload {
            OrderEvent::Placed { customer, .. } => self.customer = Some(customer.clone()),
            OrderEvent::CourierAssigned { courier } => self.courier = Some(courier.clone()),
            OrderEvent::Noted { .. } => {}
        }
        self.events += 1;
    }
}

#[tokio::test]
async fn views_are_sealed_and_read_forgotten_fields_after_a_forget() {
    use cqrs_es::persist::{ViewContext, ViewRepository};
    let (db, keys) = setup().await;
    let views = db
        .view_repository::<OrderView, Order>()
        .with_encryption(keys.clone());
    let view = OrderView {
        customer: Some(Personal::new(CUSTOMER, CUSTOMER_NAME.to_string())),
        courier: Some(Personal::new(COURIER, COURIER_NAME.to_string())),
        events: 2,
    };
    views
        .update_view(view, ViewContext::new("o-1".into(), 0))
        .await
        .unwrap();
    assert_no_plaintext(&db.client, &[db.views.as_str()]).await;
    let read = views.load("o-1").await.unwrap().unwrap();
    assert_eq!(known(&read.customer), Some(CUSTOMER_NAME));

    keys.forget(CUSTOMER).await.unwrap();
    let (read, context) = views.load_with_context("o-1").await.unwrap().unwrap();
    assert!(forgotten(&read.customer, CUSTOMER), "{read:?}");
    assert_eq!(known(&read.courier), Some(COURIER_NAME));
    // The view is written back with the forgotten marker: no key needed.
    views.update_view(read, context).await.unwrap();
    assert!(forgotten(
        &views.load("o-1").await.unwrap().unwrap().customer,
        CUSTOMER
    ));

    // A view without a key store refuses to store personal data.
    let plain = db.view_repository::<OrderView, Order>();
    let err = plain
        .update_view(
            OrderView {
                courier: Some(Personal::new(COURIER, COURIER_NAME.to_string())),
                ..OrderView::default()
            },
            ViewContext::new("o-2".into(), 0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            typed(&err),
            dynamo_es::Error::Encryption(inner) if matches!(**inner, encryption::Error::NoKeyStore { .. })
        ),
        "{err:?}"
    );
    assert_no_plaintext(&db.client, &[db.views.as_str()]).await;
}

/// The insert record of each event item of `table`, in key order.
async fn insert_records(db: &TestTables) -> Vec<dynamo_es::projection::ChangeRecord> {
    let mut items = scan_all(&db.client, &db.events).await.unwrap();
    items.sort_by_key(|item| format!("{:?}", item["AggregateIdSequence"]));
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| dynamo_es::projection::ChangeRecord {
            shard_id: "shard-0".into(),
            sequence_number: format!("{i:021}"),
            event_name: dynamo_es::projection::ChangeKind::Insert,
            created: None,
            keys: item
                .iter()
                .filter(|(name, _)| {
                    ["AggregateTypeAndId", "AggregateIdSequence"].contains(&name.as_str())
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            new_image: Some(item),
        })
        .collect()
}

#[tokio::test]
async fn the_projection_decoder_opens_and_forgets_like_the_store() {
    use dynamo_es::projection::EventDecoder;
    let (db, keys) = setup().await;
    let repo = db.repository().with_encryption(keys.clone());
    let cqrs = cqrs(repo.clone(), SnapshotPolicy::Never);
    cqrs.execute("o-1", place()).await.unwrap();
    cqrs.execute("o-1", assign()).await.unwrap();
    let records = insert_records(&db).await;
    assert_eq!(records.len(), 2);

    // Without the batch's keys loaded, a typed error, never a guess.
    let cold = KeyStore::new(db.client.clone(), keys.table(), local_kek());
    let decoder = EventDecoder::<Order>::from_repository(&repo).with_encryption(cold);
    let err = decoder.decode(&records[0]).unwrap_err();
    assert!(err.to_string().contains("not loaded"), "{err}");

    decoder.prefetch(&records).await.unwrap();
    let placed = decoder.decode(&records[0]).unwrap().unwrap();
    assert!(
        matches!(&placed.payload, OrderEvent::Placed { customer, .. } if customer.value().map(String::as_str) == Some(CUSTOMER_NAME))
    );

    keys.forget(CUSTOMER).await.unwrap();
    // The repository's decoder shares its key store: the forget shows at once.
    let decoder = EventDecoder::<Order>::from_repository(&repo);
    decoder.prefetch(&records).await.unwrap();
    let decoded: Vec<_> = records
        .iter()
        .map(|record| decoder.decode(record).unwrap().unwrap().payload)
        .collect();
    assert!(matches!(&decoded[0], OrderEvent::Placed { customer, .. } if customer.is_forgotten()));
    assert!(
        matches!(&decoded[1], OrderEvent::CourierAssigned { courier } if courier.value().map(String::as_str) == Some(COURIER_NAME))
    );

    // A projection into a view (sealed too) runs over the whole stream
    // after the forget.
    let views = db
        .view_repository::<OrderView, Order>()
        .with_encryption(keys.clone());
    let dispatcher = dynamo_es::projection::Dispatcher::new(EventDecoder::from_repository(&repo))
        .with_projection(dynamo_es::projection::ViewProjection::new(views.clone()));
    let report = dispatcher.dispatch(&records).await.unwrap();
    assert_eq!(report.events, 2, "{report:?}");
    let view = cqrs_es::persist::ViewRepository::load(&views, "o-1")
        .await
        .unwrap()
        .unwrap();
    assert!(forgotten(&view.customer, CUSTOMER), "{view:?}");
    assert_eq!(known(&view.courier), Some(COURIER_NAME));
    assert_eq!(view.events, 2);
    assert_no_plaintext(&db.client, &[db.views.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_runs_over_the_stream_after_a_forget() {
    use dynamo_es::projection::ViewProjection;
    use dynamo_es::projection::{stream_arn, CheckpointStore, Dispatcher, EventDecoder, Projector};
    let (db, keys) = setup().await;
    dynamo_es::tables::enable_stream(&db.client, &db.events)
        .await
        .unwrap();
    let arn = stream_arn(&db.client, &db.events).await.unwrap();
    let repo = db.repository().with_encryption(keys.clone());
    let cqrs = cqrs(repo.clone(), SnapshotPolicy::Every(2));
    cqrs.execute("o-1", place()).await.unwrap();
    cqrs.execute("o-1", assign()).await.unwrap();
    assert_eq!(keys.forget(CUSTOMER).await.unwrap(), Forgot::KeyDestroyed);

    // The projector, from the stream's first record, into a sealed view.
    let views = db
        .view_repository::<OrderView, Order>()
        .with_encryption(keys.clone());
    let dispatcher = Dispatcher::new(EventDecoder::from_repository(&repo))
        .with_projection(ViewProjection::new(views.clone()));
    let leases = unique_name("leases");
    dynamo_es::tables::create_checkpoint_table(&db.client, &leases)
        .await
        .unwrap();
    let streams = dynamo_es::testing::streams::client_for(&dynamo_es::testing::endpoint().unwrap());
    let projector = Projector::new(
        streams,
        &arn,
        CheckpointStore::new(db.client.clone(), &leases, "orders"),
        dispatcher,
    )
    .with_idle_backoff(
        std::time::Duration::from_millis(5),
        std::time::Duration::from_millis(40),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(projector.run(async move {
        let _ = stopped.await;
    }));
    let started = std::time::Instant::now();
    let view = loop {
        let view = cqrs_es::persist::ViewRepository::load(&views, "o-1")
            .await
            .unwrap();
        match view {
            Some(view) if view.events == 2 => break view,
            _ => {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(60)
                        && !running.is_finished(),
                    "the projector stopped or never projected both events"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    assert!(forgotten(&view.customer, CUSTOMER), "{view:?}");
    assert_eq!(known(&view.courier), Some(COURIER_NAME));
}

/// An event whose personal value is a 128-bit integer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wide {
    amount: Personal<u128>,
    balance: Personal<i128>,
}

impl cqrs_es::DomainEvent for Wide {
    fn event_type(&self) -> String {
        "Wide".to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[allow(missing_docs)]
mod wide {
    crate::common::counting_aggregate!(
        WideLedger,
        "WideLedger",
        super::Wide,
        crate::common::AccountError,
        applied,
        Ok(())
    );
}
use wide::WideLedger;

#[tokio::test]
async fn a_personal_integer_beyond_64_bits_is_refused_and_one_within_round_trips() {
    let (db, keys) = setup().await;
    let repo = db.repository().with_encryption(keys.clone());
    let store = DynamoStore::<WideLedger>::new(repo, SnapshotPolicy::Never);
    let wide = |amount: u128, balance: i128| Wide {
        amount: Personal::new(CUSTOMER, amount),
        balance: Personal::new(CUSTOMER, balance),
    };
    for (amount, balance) in [
        (u128::MAX, 0),
        (0, i128::MIN),
        (u128::from(u64::MAX) + 1, 0),
    ] {
        let context = store.load_aggregate("w-1").await.unwrap();
        let err = store
            .commit(vec![wide(amount, balance)], context, Default::default())
            .await
            .expect_err("refused");
        let err = typed_aggregate(&err);
        assert!(
            matches!(err, dynamo_es::Error::Encryption(inner)
                if matches!(**inner, encryption::Error::Malformed { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("u128 or i128"), "{err}");
        assert!(scan_all(&db.client, &db.events).await.unwrap().is_empty());
    }
    // At the edges of 64 bits, exact.
    let edge = wide(u128::from(u64::MAX), i128::from(i64::MIN));
    let context = store.load_aggregate("w-1").await.unwrap();
    store
        .commit(vec![edge.clone()], context, Default::default())
        .await
        .unwrap();
    let events = store.load_events("w-1").await.unwrap();
    assert_eq!(events[0].payload, edge);
}

/// Needs a second codec to recode to.
#[cfg(any(feature = "msgpack", feature = "compression"))]
#[tokio::test]
async fn recode_copies_the_ciphertext_untouched() {
    use dynamo_es::recode::{RecodeOptions, Recoder};
    let (db, _, repo) = sealing_with(Codec::json()).await;
    let cqrs = cqrs(repo.clone(), SnapshotPolicy::Every(2));
    cqrs.execute("o-1", place()).await.unwrap();
    cqrs.execute("o-1", assign()).await.unwrap();
    let payloads = |items: Vec<dynamo_es::item::Item>| -> Vec<(Vec<u8>, serde_json::Value)> {
        let mut payloads: Vec<_> = items
            .iter()
            .map(|item| {
                let AttributeValue::B(bytes) = &item["Payload"] else {
                    panic!("no binary payload")
                };
                let bytes = bytes.as_ref().to_vec();
                let value = Codec::default().decode(&bytes).unwrap();
                (bytes, value)
            })
            .collect();
        payloads.sort_by_key(|(_, value)| value.to_string());
        payloads
    };
    let events_before = payloads(scan_all(&db.client, &db.events).await.unwrap());
    let target = Codec::available().pop().unwrap();
    assert_ne!(
        target,
        Codec::json(),
        "the build has another codec to recode to"
    );
    Recoder::new(db.client.clone(), target)
        .with_options(RecodeOptions::default().with_allow_growth(true))
        .run(&db.recode_tables())
        .await
        .unwrap();
    let events_after = payloads(scan_all(&db.client, &db.events).await.unwrap());
    assert_eq!(events_before.len(), 2);
    for ((bytes_before, before), (bytes_after, after)) in events_before.iter().zip(&events_after) {
        assert_ne!(bytes_before, bytes_after, "recoded");
        assert_eq!(before, after, "the sealed values are copied as they were");
        assert!(before.to_string().contains("\"sealed\""));
    }
    assert_no_plaintext(&db.client, &[db.events.as_str(), db.snapshots.as_str()]).await;
    let order = DynamoStore::<Order>::new(repo, SnapshotPolicy::Every(2))
        .load_aggregate("o-1")
        .await
        .unwrap()
        .aggregate;
    assert_eq!(known(&order.customer), Some(CUSTOMER_NAME));
    assert_eq!(known(&order.courier), Some(COURIER_NAME));
}

/// Event 1 of `Order:{id}` whose payload is `value`.
fn event(id: &str, value: Personal<String>) -> SerializedEvent {
    SerializedEvent::new(
        id.into(),
        1,
        "Order".into(),
        "Placed".into(),
        "1".into(),
        serde_json::to_value(value).unwrap(),
        serde_json::json!({}),
    )
}

/// Event 1 of `Order:o-1` carrying the customer's name, sealed by `keys`.
async fn sealed_customer_name(keys: &KeyStore) -> [SerializedEvent; 1] {
    let mut events = [event(
        "o-1",
        Personal::new(CUSTOMER, CUSTOMER_NAME.to_string()),
    )];
    keys.seal_events(&mut events).await.unwrap();
    events
}

/// The personal value the one (opened) event of `events` carries.
fn payload_of([event]: [SerializedEvent; 1]) -> Personal<String> {
    serde_json::from_value(event.payload).unwrap()
}

/// A key item of the key table as DynamoDB's JSON, for a canned response.
fn item_json(item: &dynamo_es::item::Item) -> serde_json::Value {
    use base64::Engine as _;
    let value = |value: &AttributeValue| match value {
        AttributeValue::S(s) => serde_json::json!({ "S": s }),
        AttributeValue::N(n) => serde_json::json!({ "N": n }),
        AttributeValue::B(b) => {
            serde_json::json!({ "B": base64::engine::general_purpose::STANDARD.encode(b.as_ref()) })
        }
        other => panic!("unexpected {other:?}"),
    };
    item.iter()
        .map(|(name, v)| (name.clone(), value(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn a_writer_that_loses_the_key_creation_race_uses_the_winners_key() {
    let (db, keys) = setup().await;
    let mut winner = sealed_customer_name(&keys).await;
    let stored = scan_all(&db.client, keys.table()).await.unwrap();
    assert_eq!(stored.len(), 1);
    // The loser: its read finds no item, its conditional put loses, its
    // second read finds the winner's.
    let http = Scripted::replying([
        Canned::ok(serde_json::json!({})),
        Canned::dynamo_error("ConditionalCheckFailedException", serde_json::json!({})),
        Canned::ok(serde_json::json!({ "Item": item_json(&stored[0]) })),
    ]);
    let loser = KeyStore::new(
        client_on(http.clone(), quick_retries(1), short_timeouts()),
        "Keys",
        local_kek(),
    );
    let mut own = [event("o-2", Personal::new(CUSTOMER, "x".to_string()))];
    loser.seal_events(&mut own).await.unwrap();
    assert_eq!(http.operations(), ["GetItem", "PutItem", "GetItem"]);
    // The loser opens what the winner sealed: one key.
    loser.open_events(&mut winner).await.unwrap();
    let opened = payload_of(winner);
    assert_eq!(opened.value().map(String::as_str), Some(CUSTOMER_NAME));
}

#[tokio::test]
async fn another_process_reads_a_forgotten_subject_until_its_cache_lets_the_key_go() {
    let (db, keys) = setup().await;
    let sealed = |subject: &str| {
        let keys = keys.clone();
        let subject = subject.to_string();
        async move {
            let mut events = [event(&subject, Personal::new(&subject, "v".to_string()))];
            keys.seal_events(&mut events).await.unwrap();
            let [event] = events;
            event
        }
    };
    let a = sealed("subject-a").await;
    let b = sealed("subject-b").await;
    let read = |store: &KeyStore, sealed: &SerializedEvent| {
        let (store, mut events) = (store.clone(), [sealed.clone()]);
        async move {
            store.open_events(&mut events).await.unwrap();
            payload_of(events)
        }
    };
    let small = KeyStore::new(db.client.clone(), keys.table(), local_kek()).with_cache_capacity(1);
    let fresh = KeyStore::new(db.client.clone(), keys.table(), local_kek())
        .with_max_age(std::time::Duration::ZERO);
    assert!(!read(&small, &a).await.is_forgotten());
    assert!(!read(&fresh, &a).await.is_forgotten());

    // Forgotten by another process (`keys`).
    keys.forget("subject-a").await.unwrap();
    assert!(!read(&small, &a).await.is_forgotten(), "cached");
    assert!(read(&fresh, &a).await.is_forgotten(), "max age 0");
    // Loading b evicts a from the one-entry cache.
    assert!(!read(&small, &b).await.is_forgotten());
    assert!(read(&small, &a).await.is_forgotten(), "evicted");
    assert!(small.is_forgotten("subject-a").await.unwrap());
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_cli_forgets_subjects_and_its_dry_run_writes_nothing() {
    let (db, keys) = setup().await;
    let mut events = sealed_customer_name(&keys).await;
    let args = |dry_run: bool| {
        let mut args = vec![
            "forget",
            "--keys-table",
            keys.table(),
            CUSTOMER,
            "never-seen",
        ];
        if dry_run {
            args.push("--dry-run");
        }
        args
    };
    let out = common::cli(&args(true)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!(
            "[1/2] {CUSTOMER}: has a data key: forgetting would destroy it"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("[2/2] never-seen: has no data key"),
        "{stdout}"
    );
    assert_eq!(scan_all(&db.client, keys.table()).await.unwrap().len(), 1);
    assert!(!keys.is_forgotten(CUSTOMER).await.unwrap());

    let out = common::cli(&args(false)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("[1/2] {CUSTOMER}: forgotten")),
        "{stdout}"
    );
    // This process cached the key: a fresh store sees the tombstones.
    let fresh = KeyStore::new(db.client.clone(), keys.table(), local_kek());
    assert!(fresh.is_forgotten(CUSTOMER).await.unwrap());
    assert!(fresh.is_forgotten("never-seen").await.unwrap());
    fresh.open_events(&mut events).await.unwrap();
    assert!(payload_of(events).is_forgotten());
}

#[tokio::test]
async fn the_hot_cache_serves_opened_states_and_stores_only_sealed_ones() {
    let (db, keys) = setup().await;
    let repo = db.repository().with_encryption(keys.clone());
    let cache = dynamo_es::HotCache::new(100, 1 << 20);
    let store = |cache: dynamo_es::HotCache| {
        DynamoStore::<Order>::new(repo.clone(), SnapshotPolicy::Always).with_cache(cache)
    };
    let first = CqrsFramework::new(store(cache.clone()), vec![], ());
    first.execute("o-hot", place()).await.unwrap();
    first
        .execute("o-hot", OrderCommand::Note("one".into()))
        .await
        .unwrap();
    // A second store on the same cache has no state handed over by a
    // commit of its own: it decodes the cached snapshot payload, which
    // must be the opened one (a sealed one does not deserialize).
    let second = store(cache);
    let loaded = second.load_aggregate("o-hot").await.unwrap();
    assert_eq!(known(&loaded.aggregate.customer), Some(CUSTOMER_NAME));
    assert_eq!(loaded.aggregate.notes, ["one"]);
    let tables = [db.events.as_str(), db.snapshots.as_str(), keys.table()];
    assert_no_plaintext(&db.client, &tables).await;
}
