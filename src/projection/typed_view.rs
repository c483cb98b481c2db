//! [`TypedViews`]: typed views keyed by any string, for a
//! [`TransactionalProjection`](super::TransactionalProjection) that would
//! rather not build items by hand.
//!
//! **Invariant:** a view is one item of a view table (`ViewId` S, the key;
//! `Payload` B, the view encoded by the codec; `ViewVersion` N, bumped by
//! every write); a transactional write of a view is conditional on the
//! version it was read at, so two sources never overwrite each other's
//! changes (a failed version condition is retried by the
//! [`Transactional`](super::Transactional) adapter, reading again); a view
//! that does not fit in one item is refused before anything is written
//! ([`Error::ViewTooLarge`]).

use std::marker::PhantomData;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Error;
use crate::codec::Codec;
use crate::item::{b, get_b, get_n, n, s, Item, PAYLOAD, VIEW_ID, VIEW_VERSION};
use crate::size::{item_size, MAX_ITEM_SIZE};
use crate::tables::requests::get_item;

/// Views of type `V` in a view table (as [`create_view_table`](crate::create_view_table)
/// creates it), keyed by any string, written with a [`Codec`] (reads
/// accept every format).
///
/// A transactional handler loads the views it changes with
/// [`load_versioned`](Self::load_versioned) and returns a
/// [`save_write`](Self::save_write) of each, conditional on the version
/// it read: when another source (a rebuild overlapping the live stream)
/// changed the view meanwhile, the transaction is refused and the
/// [`Transactional`](super::Transactional) adapter calls the handler again
/// with fresh reads. [`save`](Self::save) writes one directly (outside a
/// projection).
///
/// ```
/// use dynamo_es::projection::TypedViews;
/// use dynamo_es::Codec;
///
/// #[derive(serde::Serialize, serde::Deserialize, Default)]
/// struct CustomerOrders { orders: Vec<String> }
///
/// fn views(client: dynamo_es::aws_sdk_dynamodb::Client) -> TypedViews<CustomerOrders> {
///     TypedViews::new(client, "customer_orders").with_codec(Codec::json())
/// }
/// ```
pub struct TypedViews<V> {
    client: Client,
    table: String,
    codec: Codec,
    _view: PhantomData<fn() -> V>,
}

impl<V> Clone for TypedViews<V> {
    fn clone(&self) -> Self {
        TypedViews {
            client: self.client.clone(),
            table: self.table.clone(),
            codec: self.codec.clone(),
            _view: PhantomData,
        }
    }
}

impl<V> std::fmt::Debug for TypedViews<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedViews")
            .field("table", &self.table)
            .field("codec", &self.codec.name())
            .finish_non_exhaustive()
    }
}

impl<V: Serialize + DeserializeOwned> TypedViews<V> {
    /// The views in `table`, written with [`Codec::default()`].
    pub fn new(client: Client, table: &str) -> Self {
        TypedViews {
            client,
            table: table.to_string(),
            codec: Codec::default(),
            _view: PhantomData,
        }
    }

    /// Writes views with `codec`.
    pub fn with_codec(self, codec: Codec) -> Self {
        TypedViews { codec, ..self }
    }

    /// The view table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The view at `key`, if stored (a consistent `GetItem`).
    pub async fn load(&self, key: &str) -> Result<Option<V>, Error> {
        Ok(self.load_versioned(key).await?.map(|(view, _)| view))
    }

    /// The view at `key` and its version, if stored (a consistent
    /// `GetItem`): hand the version to [`save_write`](Self::save_write).
    pub async fn load_versioned(&self, key: &str) -> Result<Option<(V, u64)>, Error> {
        let Some(item) = get_item(&self.client, &self.table, (VIEW_ID, key)).await? else {
            return Ok(None);
        };
        let version = match item.get(VIEW_VERSION) {
            Some(_) => get_n(&item, key, VIEW_VERSION)?,
            None => 0,
        };
        let bytes = get_b(&item, key, PAYLOAD)?;
        let view = self
            .codec
            .decode_deserialize::<V>(bytes)
            .map_err(|err| err.in_item(key, PAYLOAD))?;
        Ok(Some((view, version)))
    }

    /// Stores `view` at `key`, whatever is stored (an `UpdateItem` that
    /// bumps the version).
    pub async fn save(&self, key: &str, view: &V) -> Result<(), Error> {
        let payload = self.payload(key, view)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key(VIEW_ID, s(key))
            .update_expression("SET #payload = :payload ADD #version :one")
            .expression_attribute_names("#payload", PAYLOAD)
            .expression_attribute_names("#version", VIEW_VERSION)
            .expression_attribute_values(":payload", b(payload))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|err| crate::Error::from_sdk_on("UpdateItem", &self.table, err))?;
        Ok(())
    }

    /// The write storing `view` at `key` as the next version after `read`
    /// (the version [`load_versioned`](Self::load_versioned) returned;
    /// `None` if no view was stored), conditional on the stored version
    /// still being `read`: for a transactional handler to return.
    pub fn save_write(
        &self,
        key: &str,
        view: &V,
        read: Option<u64>,
    ) -> Result<TransactWriteItem, Error> {
        let payload = self.payload(key, view)?;
        let update = Update::builder()
            .table_name(&self.table)
            .key(VIEW_ID, s(key))
            .update_expression("SET #payload = :payload, #dynamo_es_view_version = :next")
            .expression_attribute_names("#payload", PAYLOAD)
            .expression_attribute_names(VERSION_PLACEHOLDER, VIEW_VERSION)
            .expression_attribute_values(":payload", b(payload))
            .expression_attribute_values(":next", n(read.unwrap_or_default() + 1));
        let update = match read {
            None => update.condition_expression("attribute_not_exists(#dynamo_es_view_version)"),
            Some(read) => update
                .condition_expression("#dynamo_es_view_version = :read")
                .expression_attribute_values(":read", n(read)),
        };
        let update = update.build().map_err(crate::Error::from)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The `Delete` of the view at `key`, for a transactional handler to
    /// return.
    pub fn delete_write(&self, key: &str) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(VIEW_ID, s(key))
            .build()
            .map_err(crate::Error::from)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The encoded `view` at `key`; [`Error::ViewTooLarge`] if its item
    /// would exceed 400 KB.
    fn payload(&self, key: &str, view: &V) -> Result<Vec<u8>, Error> {
        let payload = self
            .codec
            .encode_serialize(view)
            .map_err(|err| err.naming_payload(|| format!("view {key}")))?;
        let rest = Item::from([
            (VIEW_ID.to_string(), s(key)),
            (VIEW_VERSION.to_string(), n(u64::MAX)),
        ]);
        let bytes = item_size(&rest) + PAYLOAD.len() + payload.len();
        if bytes > MAX_ITEM_SIZE {
            return Err(Error::ViewTooLarge {
                table: self.table.clone(),
                key: key.to_string(),
                bytes,
            });
        }
        Ok(payload)
    }
}

/// The placeholder of the version attribute in a view's conditional write:
/// the [`Transactional`](super::Transactional) adapter recognizes a failed
/// condition on it as a concurrent change (read again and retry), not as a
/// refusal.
pub(super) const VERSION_PLACEHOLDER: &str = "#dynamo_es_view_version";
