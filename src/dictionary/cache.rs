//! [`DictionaryCache`]: each dictionary loaded once per process.
//!
//! **Invariant:** a cache only ever holds dictionaries read from storage
//! (or just stored), each under its own id, and never forgets one: a
//! dictionary is immutable, so what was loaded stays right. Concurrent
//! loads of one id make one `GetItem`. Loading is async and decoding is
//! sync, so readers [`prefetch`](DictionaryCache::prefetch) the ids a page
//! of items references before decoding it; a page that references none
//! costs no read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::{Dictionary, DictionaryStore};
use crate::codec::dict::frame_dictionary_id;
use crate::error::Result;
use crate::item::{describe_key, Item, METADATA, PAYLOAD};

type Slot = Arc<OnceCell<Dictionary>>;

/// Dictionaries loaded by id, shared by every clone (and by the codecs
/// given it with [`Codec::with_dictionary_cache`](crate::Codec::with_dictionary_cache)).
///
/// ```
/// use dynamo_es::dictionary::DictionaryCache;
///
/// let cache = DictionaryCache::new();
/// assert!(cache.get(32_768).is_none());
/// assert_eq!(cache.len(), 0);
/// ```
#[derive(Clone, Default)]
pub struct DictionaryCache {
    slots: Arc<Mutex<HashMap<u32, Slot>>>,
}

impl fmt::Debug for DictionaryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DictionaryCache")
            .field("loaded", &self.ids())
            .finish()
    }
}

impl DictionaryCache {
    /// An empty cache.
    pub fn new() -> Self {
        DictionaryCache::default()
    }

    fn slot(&self, id: u32) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(id).or_default().clone()
    }

    /// The dictionary `id`, if loaded.
    pub fn get(&self, id: u32) -> Option<Dictionary> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.get(&id).and_then(|slot| slot.get().cloned())
    }

    /// The ids of the loaded dictionaries, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<u32> = slots
            .iter()
            .filter(|(_, slot)| slot.initialized())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// How many dictionaries are loaded.
    pub fn len(&self) -> usize {
        self.ids().len()
    }

    /// True if none is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `dictionary` (one from a [`DictionaryStore`]).
    pub fn insert(&self, dictionary: Dictionary) {
        // A slot already set holds the same dictionary: ids are unique.
        let _ = self.slot(dictionary.id()).set(dictionary);
    }

    /// The dictionary `id`, loaded from `store` on first use.
    pub async fn load(&self, store: &DictionaryStore, id: u32) -> Result<Dictionary> {
        let slot = self.slot(id);
        let dictionary = slot.get_or_try_init(|| store.get(id)).await?;
        Ok(dictionary.clone())
    }

    /// Loads every dictionary that the `Payload` and `Metadata` attributes
    /// of `items` reference and the cache does not hold yet, so that
    /// decoding them (sync) finds them. Items that reference none cost
    /// nothing.
    ///
    /// A dictionary that is not stored, or is corrupt, is
    /// [`crate::Error::Item`] naming the first item key and attribute
    /// referencing it, around a [`crate::dictionary::Error`] naming the id.
    pub async fn prefetch<'a>(
        &self,
        store: &DictionaryStore,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<()> {
        let mut wanted: Vec<(u32, &'a Item, &'static str)> = Vec::new();
        for item in items {
            for attribute in [PAYLOAD, METADATA] {
                let Some(aws_sdk_dynamodb::types::AttributeValue::B(bytes)) = item.get(attribute)
                else {
                    continue;
                };
                if let Some(id) = frame_dictionary_id(bytes.as_ref()) {
                    if self.get(id).is_none() && !wanted.iter().any(|(w, _, _)| *w == id) {
                        wanted.push((id, item, attribute));
                    }
                }
            }
        }
        for (id, item, attribute) in wanted {
            match self.load(store, id).await {
                Ok(_) => {}
                Err(err @ crate::Error::Dictionary(_)) => {
                    return Err(err.in_item(&describe_key(item), attribute))
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
