//! [`DynamoViewRepository`]: cqrs-es's `ViewRepository` on DynamoDB, with
//! optimistic versions. **Invariant:** every write is conditional on the
//! version read (on no item, for version 0), so a stale writer never
//! overwrites a newer view; views written by
//! [`ViewProjection`](crate::projection::ViewProjection) also carry
//! [`LAST_SEQUENCE`], which reads return with the view.

use std::marker::PhantomData;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::{PersistenceError, ViewContext, ViewRepository};
use cqrs_es::{Aggregate, View};
use tracing::{field, Instrument};

use crate::codec::Codec;
use crate::error::{in_span, Error, Limit, Result};
use crate::item::{b, get_b, get_n, n, s, Item, LAST_SEQUENCE, PAYLOAD, VIEW_ID, VIEW_VERSION};
use crate::outcome::Attempts;
use crate::size::{item_size, MAX_ITEM_SIZE};
use crate::tables::requests::get_item;

/// A view repository on a DynamoDB table keyed by `ViewId`, compatible with
/// upstream `dynamo-es` view tables.
///
/// Updates are conditional puts on `ViewVersion`: a stale update fails with
/// an optimistic-lock error and never overwrites a newer view.
///
/// A view that is not stored yet: [`load`](ViewRepository::load) returns
/// `None`, but [`load_with_context`](ViewRepository::load_with_context)
/// returns `Some((V::default(), context))` with version 0, as upstream does,
/// and the first `update_view` with that context creates the item
/// (conditioned on it not existing yet). cqrs-es's `GenericQuery::load` is
/// built on `load_with_context`, so through it a missing view reads as
/// `Some(V::default())`; call this repository's `load` to tell a missing
/// view apart.
///
/// ```
/// # use cqrs_es::{Aggregate, View};
/// use dynamo_es::{Codec, DynamoViewRepository};
///
/// fn configure<V: View<A>, A: Aggregate>(client: aws_sdk_dynamodb::Client) -> DynamoViewRepository<V, A> {
///     DynamoViewRepository::new("account_summary", client).with_codec(Codec::json())
/// }
/// ```
#[derive(Debug)]
pub struct DynamoViewRepository<V, A> {
    table: String,
    client: Client,
    codec: Codec,
    /// The data keys personal data is sealed with (feature `encryption`).
    #[cfg(feature = "encryption")]
    keys: Option<crate::encryption::KeyStore>,
    _types: PhantomData<fn() -> (V, A)>,
}

impl<V, A> Clone for DynamoViewRepository<V, A> {
    fn clone(&self) -> Self {
        DynamoViewRepository {
            table: self.table.clone(),
            client: self.client.clone(),
            codec: self.codec.clone(),
            #[cfg(feature = "encryption")]
            keys: self.keys.clone(),
            _types: PhantomData,
        }
    }
}

impl<V, A> DynamoViewRepository<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    /// A repository on the view table `table`, writing with [`Codec::default()`].
    pub fn new(table: &str, client: Client) -> Self {
        DynamoViewRepository {
            table: table.to_string(),
            client,
            codec: Codec::default(),
            #[cfg(feature = "encryption")]
            keys: None,
            _types: PhantomData,
        }
    }

    /// Writes views with `codec`. Reads accept every format regardless.
    pub fn with_codec(self, codec: Codec) -> Self {
        DynamoViewRepository { codec, ..self }
    }

    /// Seals the [`Personal`](crate::encryption::Personal) values of every
    /// view written, under their subjects' keys and bound to the view id,
    /// and opens them on every read; a view of a forgotten subject reads
    /// with its fields [`Personal::Forgotten`](crate::encryption::Personal).
    /// Without it, a view holding personal data is refused.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn with_encryption(self, keys: crate::encryption::KeyStore) -> Self {
        DynamoViewRepository {
            keys: Some(keys),
            ..self
        }
    }

    /// The view table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The codec views are written with.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    async fn read(&self, view_id: &str) -> Result<Option<(V, i64)>> {
        Ok(self
            .read_tracked(view_id)
            .await?
            .map(|stored| (stored.view, stored.version)))
    }

    /// The stored view with its version and the last event sequence a
    /// [`ViewProjection`](crate::projection::ViewProjection) applied to it
    /// (0 if none is recorded).
    pub(crate) async fn read_tracked(&self, view_id: &str) -> Result<Option<StoredView<V>>> {
        let span = tracing::debug_span!(
            "dynamo_es.load_view",
            table = %self.table,
            view_id,
            version = field::Empty,
            stored_bytes = field::Empty,
            error = field::Empty,
        );
        in_span("loading the view", self.read_item(view_id))
            .instrument(span)
            .await
    }

    async fn read_item(&self, view_id: &str) -> Result<Option<StoredView<V>>> {
        let Some(item) = get_item(&self.client, &self.table, (VIEW_ID, view_id)).await? else {
            tracing::trace!("no view stored");
            return Ok(None);
        };
        let version: i64 = get_n(&item, view_id, VIEW_VERSION)?;
        let last_sequence: usize = match item.get(LAST_SEQUENCE) {
            Some(_) => get_n(&item, view_id, LAST_SEQUENCE)?,
            None => 0,
        };
        let bytes = get_b(&item, view_id, PAYLOAD)?;
        let span = tracing::Span::current();
        span.record("version", version);
        span.record("stored_bytes", bytes.len());
        let view = self
            .decode_view(view_id, bytes)
            .await
            .map_err(|err| err.in_item(view_id, PAYLOAD))?;
        tracing::trace!(version, stored_bytes = bytes.len(), "view loaded");
        Ok(Some(StoredView {
            view,
            version,
            last_sequence,
        }))
    }

    /// A stored view, its personal data opened.
    async fn decode_view(&self, view_id: &str, bytes: &[u8]) -> Result<V> {
        #[cfg(feature = "encryption")]
        if let Some(keys) = &self.keys {
            let binding = crate::encryption::Binding::view(view_id);
            let (value, held) =
                crate::encryption::opened_value(keys, &self.codec, bytes, binding).await?;
            if held {
                return Ok(serde_json::from_value(value)?);
            }
        }
        let _ = view_id;
        self.codec.decode_deserialize::<V>(bytes)
    }

    /// A view's payload, its personal data sealed (refused without a key
    /// store).
    async fn encode_view(&self, view_id: &str, view: &V) -> Result<Vec<u8>> {
        #[cfg(feature = "encryption")]
        {
            let binding = crate::encryption::Binding::view(view_id);
            match crate::encryption::sealed_value(self.keys.as_ref(), view, binding).await? {
                Some(value) => self.codec.encode(&value),
                None => self.codec.encode_serialize(view),
            }
        }
        #[cfg(not(feature = "encryption"))]
        {
            let _ = view_id;
            self.codec.encode_serialize(view)
        }
    }

    async fn write(&self, view: V, context: ViewContext) -> Result<()> {
        self.write_tracked(&view, &context.view_instance_id, context.version, None)
            .await
    }

    /// Stores `view` as version `version + 1`, conditionally on the stored
    /// version being `version` (on no view being stored if it is 0), with
    /// `last_sequence` as the last applied event sequence if given. A lost
    /// condition is [`Error::Conflict`].
    pub(crate) async fn write_tracked(
        &self,
        view: &V,
        view_id: &str,
        version: i64,
        last_sequence: Option<usize>,
    ) -> Result<()> {
        let context = ViewContext::new(view_id.to_string(), version);
        let view_id = context.view_instance_id;
        let span = tracing::debug_span!(
            "dynamo_es.update_view",
            table = %self.table,
            view_id = %view_id,
            version = context.version + 1,
            stored_bytes = field::Empty,
            codec = %self.codec.name(),
            consumed_capacity = field::Empty,
            error = field::Empty,
        );
        let result = async {
            let payload = self
                .encode_view(&view_id, view)
                .await
                .map_err(|err| err.naming_payload(|| format!("view {view_id}")))?;
            let stored_bytes = payload.len();
            tracing::Span::current().record("stored_bytes", stored_bytes);
            let mut item = Item::from([
                (VIEW_ID.to_string(), s(&view_id)),
                (VIEW_VERSION.to_string(), n(context.version + 1)),
                (PAYLOAD.to_string(), b(payload)),
            ]);
            if let Some(last_sequence) = last_sequence {
                item.insert(LAST_SEQUENCE.to_string(), n(last_sequence));
            }
            let size = item_size(&item);
            if size > MAX_ITEM_SIZE {
                return Err(Error::LimitExceeded {
                    aggregate: view_id.clone(),
                    subject: "view".into(),
                    limit: Limit::ItemSize,
                    size,
                    max: MAX_ITEM_SIZE,
                });
            }
            let request = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            let request = if context.version == 0 {
                request.condition_expression("attribute_not_exists(ViewVersion)")
            } else {
                request
                    .condition_expression("ViewVersion = :expected")
                    .expression_attribute_values(":expected", n(context.version))
            };
            let attempts = Attempts::default();
            let result = request
                .customize()
                .config_override(
                    aws_sdk_dynamodb::config::Builder::default()
                        .interceptor(attempts.interceptor()),
                )
                .send()
                .await;
            match result {
                Ok(out) => {
                    let units = out
                        .consumed_capacity()
                        .and_then(|c| c.capacity_units())
                        .unwrap_or_default();
                    tracing::Span::current().record("consumed_capacity", units);
                    tracing::debug!(
                        table = %self.table,
                        view_id = %view_id,
                        version = context.version + 1,
                        stored_bytes,
                        consumed_capacity = units,
                        "view stored"
                    );
                    Ok(())
                }
                Err(err) => {
                    if matches!(
                        err.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) && !attempts.lost()
                    {
                        Err(Error::Conflict {
                            key: view_id.clone(),
                            table: self.table.clone(),
                        })
                    } else {
                        // After a lost attempt, a failed version condition
                        // may be that attempt's own write: unknown.
                        Err(attempts.classify(Error::from_sdk_on("PutItem", &self.table, err)))
                    }
                }
            }
        };
        in_span("view update", result).instrument(span).await
    }
}

/// A stored view, its version, and the last event sequence applied to it.
pub(crate) struct StoredView<V> {
    pub(crate) view: V,
    pub(crate) version: i64,
    pub(crate) last_sequence: usize,
}

impl<V, A> ViewRepository<V, A> for DynamoViewRepository<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    /// The stored view, or `None` if there is none.
    async fn load(&self, view_id: &str) -> Result<Option<V>, PersistenceError> {
        Ok(self.read(view_id).await?.map(|(view, _)| view))
    }

    /// The view and its version. A view that is not stored yet is returned as
    /// `Some((V::default(), context))` with version 0, never `None`; updating
    /// it with that context creates it (and fails with an optimistic-lock
    /// error if another writer created it first).
    async fn load_with_context(
        &self,
        view_id: &str,
    ) -> Result<Option<(V, ViewContext)>, PersistenceError> {
        let (view, version) = self.read(view_id).await?.unwrap_or_default();
        Ok(Some((view, ViewContext::new(view_id.to_string(), version))))
    }

    async fn update_view(&self, view: V, context: ViewContext) -> Result<(), PersistenceError> {
        Ok(self.write(view, context).await?)
    }
}
