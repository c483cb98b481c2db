//! Why a dictionary could not be stored, loaded, used or trained.
//!
//! **Invariant:** every error names the dictionary id it is about (or,
//! before an id exists, the aggregate type being trained) and the table.
//! Errors about a payload are wrapped by the caller in
//! [`crate::Error::Item`], which names the item key and attribute.

/// A dictionary error, boxed in [`crate::Error::Dictionary`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No dictionary with this id is stored in the table: a payload
    /// references a dictionary that was deleted, or is read from another
    /// table than the one its dictionaries live in.
    #[error("zstd dictionary {id} is not stored in table {table}")]
    NotFound {
        /// The dictionary id the payload's frame header names.
        id: u32,
        /// The table searched.
        table: String,
    },
    /// A payload references a dictionary this reader has not loaded: the
    /// codec has no dictionary cache, or the cache was not asked to load
    /// the dictionaries of the items before they were decoded
    /// ([`DictionaryCache::prefetch`](crate::dictionary::DictionaryCache::prefetch)).
    #[error("zstd dictionary {id} is not loaded; prefetch it from its table before decoding")]
    NotLoaded {
        /// The dictionary id the payload's frame header names.
        id: u32,
    },
    /// A payload naming dictionary `id` does not decode with this table's
    /// dictionary `id`: its zstd content checksum does not match. It was
    /// written with another table's dictionary of the same id (ids are
    /// unique per table only), or it is damaged. Nothing was decoded.
    #[error("a payload naming zstd dictionary {id} does not match dictionary {id} of table {table} (content checksum differs): it was written with another table's dictionary {id}, or is damaged; read it through a repository on the tables it was written to (with_tables), or with the dictionaries table it was written with")]
    Mismatch {
        /// The dictionary id the payload's frame header names.
        id: u32,
        /// The table whose dictionary `id` was tried.
        table: String,
    },
    /// A stored dictionary item is damaged: an attribute missing or of the
    /// wrong type, bytes not hashing to the stored hash, a header naming
    /// another id, or bytes zstd refuses.
    #[error("zstd dictionary {id} in table {table} is corrupt: {reason}")]
    Corrupt {
        /// The dictionary id.
        id: u32,
        /// The table it was read from.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// Every id tried for a new dictionary was already taken by another
    /// dictionary. Nothing was overwritten.
    #[error("could not store a zstd dictionary in table {table}: ids {first} and {attempts} others were taken")]
    IdCollision {
        /// The first id tried.
        first: u32,
        /// How many other ids were tried.
        attempts: u32,
        /// The table.
        table: String,
    },
    /// zstd's trainer refused the sample (typically: too few or too small
    /// samples for the dictionary size asked).
    #[error("training a zstd dictionary for {aggregate_type} failed: {reason}")]
    Training {
        /// The aggregate type trained for.
        aggregate_type: String,
        /// zstd's reason, and the sample's size.
        reason: String,
    },
    /// The sample holds too few events to train on and to hold some out.
    #[error("only {found} events of {aggregate_type} found in table {table}; at least {needed} are needed to train a dictionary")]
    TooFewEvents {
        /// The aggregate type trained for.
        aggregate_type: String,
        /// The events table scanned.
        table: String,
        /// Events found.
        found: usize,
        /// Events needed.
        needed: usize,
    },
    /// A dictionary size outside what zstd and a DynamoDB item allow.
    #[error("dictionary size {size} bytes: expected {min} to {max}")]
    Size {
        /// The size asked for.
        size: usize,
        /// The smallest size allowed.
        min: usize,
        /// The largest size allowed (it must fit in one DynamoDB item).
        max: usize,
    },
}

impl From<Error> for crate::Error {
    fn from(err: Error) -> Self {
        crate::Error::Dictionary(Box::new(err))
    }
}
