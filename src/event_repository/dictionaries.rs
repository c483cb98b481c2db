//! The repository's zstd dictionaries: which one writes each aggregate
//! type, and the cache every read resolves frames through.
//!
//! **Invariant:** every read path prefetches the dictionaries the items it
//! read reference before decoding them (one `GetItem` per dictionary and
//! process, none for items that reference none), snapshot reads included,
//! and the repository's codec reads through the same cache, shared by
//! every clone, looking up the dictionaries of the repository's own
//! snapshots table only (a clone on other tables, [`with_tables`], looks
//! up that clone's). A type without a dictionary is written exactly as
//! without this module.
//!
//! [`with_tables`]: DynamoEventRepository::with_tables

use std::borrow::Cow;

use crate::codec::Codec;
use crate::error::Result;
use crate::item::Item;
use crate::stream::PagePrep;

use super::DynamoEventRepository;

#[cfg(feature = "compression")]
use crate::dictionary::{Dictionary, DictionaryCache, DictionaryStore};

/// The dictionaries of one repository (and its clones).
#[derive(Debug, Clone, Default)]
pub(crate) struct Dictionaries {
    /// Every dictionary loaded, by table and id.
    #[cfg(feature = "compression")]
    cache: DictionaryCache,
    /// The dictionary each aggregate type is written with.
    #[cfg(feature = "compression")]
    writers: std::sync::Arc<std::collections::HashMap<String, Dictionary>>,
}

impl Dictionaries {
    /// `codec`, reading the dictionaries of `table` (the snapshots table)
    /// through this cache.
    pub(crate) fn attach(&self, codec: Codec, table: &str) -> Codec {
        #[cfg(feature = "compression")]
        let codec = codec.with_dictionaries(self.cache.for_table(table));
        let _ = table;
        codec
    }
}

impl DynamoEventRepository {
    /// Writes the events of `aggregate_type` (payload and metadata) with
    /// `dictionary`, whenever that makes them smaller; other types are
    /// written with the [codec](Self::with_codec) alone. Snapshots are not
    /// written with it. Every read of this repository reads dictionary
    /// payloads of any type, fetching each dictionary by id once.
    ///
    /// `dictionary` must be stored in this repository's snapshots table
    /// (from a [`DictionaryStore`] on it, as
    /// [`dictionary_store`](Self::dictionary_store) gives): every reader,
    /// this one included, decodes a payload with the dictionary of that
    /// table and of the id its frame names.
    ///
    /// Roll out readers before writers: see [`crate::dictionary`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use dynamo_es::dictionary::DictionaryStore;
    /// use dynamo_es::DynamoEventRepository;
    /// # let server = dynamo_es::testing::EmbeddedDynamo::start()?;
    /// # let client = server.client();
    /// # dynamo_es::create_event_tables(&client, "Events", "Snapshots").await?;
    /// # let store = DictionaryStore::new(client.clone(), "Snapshots");
    /// # let events: Vec<_> = (0..100).map(dynamo_es::testing::fixtures::small_event).map(|payload| {
    /// #     cqrs_es::persist::SerializedEvent::new("a".into(), 1, "Order".into(), "E".into(), "1".into(), payload, serde_json::json!({}))
    /// # }).collect();
    /// # let options = dynamo_es::dictionary::TrainOptions::default();
    /// # let id = store.put(dynamo_es::dictionary::train("Order", "Events", &events, &options)?).await?.id();
    /// let dictionary = store.get(id).await?;
    /// let repo = DynamoEventRepository::new(client).with_dictionary("Order", dictionary);
    /// assert_eq!(repo.dictionary_for("Order").map(|d| d.id()), Some(id));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_dictionary(mut self, aggregate_type: &str, dictionary: Dictionary) -> Self {
        self.dictionaries.cache.insert(dictionary.clone());
        std::sync::Arc::make_mut(&mut self.dictionaries.writers)
            .insert(aggregate_type.to_string(), dictionary);
        self
    }

    /// The dictionary events of `aggregate_type` are written with, if any.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn dictionary_for(&self, aggregate_type: &str) -> Option<&Dictionary> {
        self.dictionaries.writers.get(aggregate_type)
    }

    /// The dictionaries this repository (and its clones) loaded.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn dictionary_cache(&self) -> &DictionaryCache {
        &self.dictionaries.cache
    }

    /// Where this repository's dictionaries are stored: the snapshots table.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn dictionary_store(&self) -> DictionaryStore {
        DictionaryStore::new(self.client.clone(), &self.snapshot_table)
    }

    /// The codec events of `aggregate_type` are written with.
    pub(crate) fn codec_for(&self, aggregate_type: &str) -> Cow<'_, Codec> {
        #[cfg(feature = "compression")]
        if let Some(dictionary) = self.dictionaries.writers.get(aggregate_type) {
            return Cow::Owned(self.codec.clone().with_dictionary(dictionary));
        }
        let _ = aggregate_type;
        Cow::Borrowed(&self.codec)
    }

    /// Loads the dictionary a snapshot's stored payload references, before
    /// it is decoded: [`crate::Error::Item`] naming the snapshot's key if
    /// it is not stored or is corrupt.
    pub(crate) async fn prefetch_snapshot_dictionary(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        #[cfg(feature = "compression")]
        self.dictionaries
            .cache
            .prefetch_payload(
                &self.dictionary_store(),
                payload,
                || crate::item::aggregate_key(aggregate_type, aggregate_id),
                crate::item::PAYLOAD,
            )
            .await?;
        let _ = (aggregate_type, aggregate_id, payload);
        Ok(())
    }

    /// Loads the dictionaries `items` reference, before they are decoded.
    ///
    /// Items with no binary attribute starting with a dictionary frame (all
    /// of them, unless some type is written with a dictionary) return at
    /// once: a pass over each item's values, without hashing attribute
    /// names, is about a fifth of what the cache's lookup of `Payload` and
    /// `Metadata` cost (0.5M instructions in a 1,000-event load).
    pub(crate) async fn prefetch_dictionaries(&self, items: &[Item]) -> Result<()> {
        #[cfg(feature = "compression")]
        if items.iter().any(references_dictionary) {
            self.dictionaries
                .cache
                .prefetch(&self.dictionary_store(), items)
                .await?;
        }
        let _ = items;
        Ok(())
    }

    /// The same, for each page of a replay stream.
    pub(crate) fn page_prep(&self) -> PagePrep {
        #[cfg(feature = "compression")]
        {
            let cache = self.dictionaries.cache.clone();
            let store = self.dictionary_store();
            Some(std::sync::Arc::new(move |items: Vec<Item>| {
                let (cache, store) = (cache.clone(), store.clone());
                Box::pin(async move {
                    cache.prefetch(&store, &items).await?;
                    Ok(items)
                })
            }))
        }
        #[cfg(not(feature = "compression"))]
        None
    }
}

/// True if some binary attribute of `item` is a zstd frame naming a
/// dictionary: every item the cache's `prefetch` would load one for, and
/// possibly more (it looks at `Payload` and `Metadata` only).
#[cfg(feature = "compression")]
fn references_dictionary(item: &Item) -> bool {
    item.values().any(|value| {
        matches!(value, aws_sdk_dynamodb::types::AttributeValue::B(bytes)
            if crate::codec::dict::frame_dictionary_id(bytes.as_ref()).is_some())
    })
}
