//! [`KeyStore`]: each data subject's data key, in a key table (one item per
//! subject), wrapped by a [`KeyEncryptionKey`], and cached per process.
//!
//! **Invariant:** a subject has at most one data key, ever: it is created
//! by a conditional `PutItem` (`attribute_not_exists(Subject)`), and a
//! writer that loses the race uses the winner's. [`KeyStore::forget`]
//! replaces the key item with a tombstone, so no key is created for that
//! subject again; a missing item is never read as forgotten. A key that
//! cannot be had (throttled, KMS error) is an error: nothing is ever
//! written in plaintext instead.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::error::Error;
use super::kek::KeyEncryptionKey;
use super::seal::{KeySet, KeyState};
use super::table::{
    key_table_failed, Forgot, CREATED_AT, FORGOTTEN_AT, KEK_ID, SUBJECT, WRAPPED_KEY,
};

/// The default key table name.
pub const DEFAULT_KEY_TABLE: &str = "PersonalDataKeys";
/// The default bound of the per-process key cache, in subjects.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Data keys per subject: the key table, the key-encryption key and a
/// bounded cache shared by clones.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use dynamo_es::encryption::{KeyStore, LocalKek};
/// # let server = dynamo_es::testing::EmbeddedDynamo::start()?;
/// # let client = server.client();
/// dynamo_es::tables::create_key_table(&client, "PersonalDataKeys").await?;
/// let kek = LocalKek::new("test-kek", [7; 32])?;
/// let keys = KeyStore::new(client, "PersonalDataKeys", kek);
/// keys.forget("customer-17").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KeyStore {
    /// One pointer: repositories holding a store stay small.
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    client: Client,
    table: String,
    kek: Arc<dyn KeyEncryptionKey>,
    cache: Arc<Mutex<Cache>>,
    max_age: Option<Duration>,
}

#[derive(Debug)]
struct Cache {
    entries: HashMap<String, (KeyState, Instant)>,
    order: VecDeque<String>,
    capacity: usize,
}

impl KeyStore {
    /// Keys of `table`, wrapped by `kek`, with a cache of
    /// [`DEFAULT_CACHE_CAPACITY`] subjects and no maximum age.
    pub fn new(client: Client, table: &str, kek: impl KeyEncryptionKey + 'static) -> Self {
        KeyStore {
            inner: Arc::new(Inner {
                client,
                table: table.to_string(),
                kek: Arc::new(kek),
                cache: Arc::new(Mutex::new(Cache {
                    entries: HashMap::new(),
                    order: VecDeque::new(),
                    capacity: DEFAULT_CACHE_CAPACITY,
                })),
                max_age: None,
            }),
        }
    }

    /// Keeps at most `subjects` keys in this process (at least 1); the
    /// oldest loaded is dropped first. Clones share the cache.
    pub fn with_cache_capacity(self, subjects: usize) -> Self {
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.capacity = subjects.max(1);
        }
        self
    }

    /// Reloads a cached key once it is older than `max_age`: the longest
    /// another process goes on reading a subject after it was forgotten
    /// here ([`forget`](Self::forget) evicts this process's entry only).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        Arc::make_mut(&mut self.inner).max_age = Some(max_age);
        self
    }

    /// The key table.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Forgets `subject`: its key item becomes a tombstone (one `PutItem`),
    /// so every value sealed under its key reads as
    /// [`Personal::Forgotten`](super::Personal::Forgotten) from then on, and
    /// no new key is created for it. This process's cache drops the key at
    /// once; other processes keep it until it leaves their cache (see
    /// [`with_max_age`](Self::with_max_age)).
    pub async fn forget(&self, subject: &str) -> crate::Result<Forgot> {
        let forgot = super::table::forget(&self.inner.client, &self.inner.table, subject).await?;
        self.store(subject, KeyState::Forgotten);
        Ok(forgot)
    }

    /// True if `subject` was forgotten (read from the cache, or the table).
    pub async fn is_forgotten(&self, subject: &str) -> crate::Result<bool> {
        let keys = self.keys_for([subject.to_string()].into(), false).await?;
        Ok(matches!(keys.get(subject), Some(KeyState::Forgotten)))
    }

    /// Drops `subject`'s key from this process's cache.
    pub fn evict(&self, subject: &str) {
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.entries.remove(subject);
            cache.order.retain(|s| s != subject);
        }
    }

    /// The keys of `subjects`, from the cache or the table; with `create`,
    /// a subject without a key item gets one (a write), else it is
    /// [`Error::KeyMissing`] (a read).
    pub(crate) async fn keys_for(
        &self,
        subjects: BTreeSet<String>,
        create: bool,
    ) -> crate::Result<KeySet> {
        let mut keys = KeySet::with_capacity(subjects.len());
        for subject in subjects {
            let state = match self.cached(&subject) {
                Some(state) => state,
                None => {
                    // Boxed behind `dyn`: the SDK's futures are deep, and
                    // every read and write path awaits this one. Erased,
                    // its `Send` is proved here, once: a caller's future
                    // (a command spawned on tokio) holds no nested type of
                    // it, so the caller's crate needs no higher
                    // `recursion_limit` with the feature on.
                    let load: Pin<Box<dyn Future<Output = crate::Result<KeyState>> + Send + '_>> =
                        Box::pin(self.load(&subject, create));
                    let state = load.await?;
                    self.store(&subject, state.clone());
                    state
                }
            };
            keys.insert(subject, state);
        }
        Ok(keys)
    }

    /// The cached keys of `subjects`, without a request:
    /// [`Error::NotLoaded`] naming the first one not in the cache.
    pub(crate) fn cached_keys(&self, subjects: BTreeSet<String>) -> Result<KeySet, Error> {
        subjects
            .into_iter()
            .map(|subject| match self.cached(&subject) {
                Some(state) => Ok((subject, state)),
                None => Err(Error::NotLoaded {
                    table: self.inner.table.clone(),
                    subject,
                }),
            })
            .collect()
    }

    fn cached(&self, subject: &str) -> Option<KeyState> {
        let cache = self.inner.cache.lock().ok()?;
        let (state, loaded) = cache.entries.get(subject)?;
        match (state, self.inner.max_age) {
            // A tombstone is final.
            (KeyState::Active(_), Some(max_age)) if loaded.elapsed() > max_age => None,
            (state, _) => Some(state.clone()),
        }
    }

    fn store(&self, subject: &str, state: KeyState) {
        let Ok(mut cache) = self.inner.cache.lock() else {
            return;
        };
        if cache
            .entries
            .insert(subject.to_string(), (state, Instant::now()))
            .is_none()
        {
            cache.order.push_back(subject.to_string());
        }
        while cache.entries.len() > cache.capacity {
            let Some(oldest) = cache.order.pop_front() else {
                break;
            };
            cache.entries.remove(&oldest);
        }
    }

    /// Reads `subject`'s key item (strongly consistent) and unwraps its key;
    /// creates one if there is none and `create`.
    async fn load(&self, subject: &str, create: bool) -> crate::Result<KeyState> {
        if let Some(item) = self.read(subject).await? {
            return self.state_of(subject, &item).await;
        }
        if !create {
            return Err(Error::KeyMissing {
                table: self.inner.table.clone(),
                subject: subject.to_string(),
            }
            .into());
        }
        let generated = self.inner.kek.generate(subject).await?;
        let put = self
            .inner
            .client
            .put_item()
            .table_name(&self.inner.table)
            .item(SUBJECT, AttributeValue::S(subject.to_string()))
            .item(WRAPPED_KEY, AttributeValue::B(generated.wrapped.into()))
            .item(KEK_ID, AttributeValue::S(self.inner.kek.id().to_string()))
            .item(
                CREATED_AT,
                AttributeValue::N(super::table::now().to_string()),
            )
            .condition_expression("attribute_not_exists(#subject)")
            .expression_attribute_names("#subject", SUBJECT)
            .send()
            .await;
        match put {
            Ok(_) => {
                tracing::debug!(table = %self.inner.table, subject, "data key created");
                Ok(KeyState::Active(Arc::new(
                    generated.plaintext.data_key(subject)?,
                )))
            }
            // Another writer created it (or forgot the subject) first.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                match self.read(subject).await? {
                    Some(item) => self.state_of(subject, &item).await,
                    None => Err(Error::KeyItem {
                        table: self.inner.table.clone(),
                        subject: subject.to_string(),
                        reason: "the key item's creation conflicted but no item is stored".into(),
                    }
                    .into()),
                }
            }
            Err(err) => Err(key_table_failed(
                &self.inner.table,
                "creating",
                "PutItem",
                subject,
                err,
            )),
        }
    }

    async fn read(&self, subject: &str) -> crate::Result<Option<HashMap<String, AttributeValue>>> {
        super::table::subject_item(&self.inner.client, &self.inner.table, subject).await
    }

    async fn state_of(
        &self,
        subject: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> crate::Result<KeyState> {
        if item.contains_key(FORGOTTEN_AT) {
            return Ok(KeyState::Forgotten);
        }
        let malformed = |reason: String| Error::KeyItem {
            table: self.inner.table.clone(),
            subject: subject.to_string(),
            reason,
        };
        let Some(AttributeValue::B(wrapped)) = item.get(WRAPPED_KEY) else {
            return Err(malformed(format!("no binary {WRAPPED_KEY} and no {FORGOTTEN_AT}")).into());
        };
        let plain = self.inner.kek.unwrap(subject, wrapped.as_ref()).await?;
        Ok(KeyState::Active(Arc::new(plain.data_key(subject)?)))
    }
}
