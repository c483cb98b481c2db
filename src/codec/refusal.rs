//! Payloads refused at write time, because a reader would refuse them.
//!
//! **Invariant:** what a write path accepts, every read path reads: typed
//! reads, `serde_json::Value` reads, the projection decoder and recode. A
//! payload one of them would refuse or misread is refused before anything
//! is sent, with [`Error::Refused`] naming the payload (the event and
//! aggregate, the snapshot, the view), the [`Cause`] and the fix:
//!
//! * a map holding the same key twice (JSON readers refuse it, MessagePack
//!   readers would keep one value);
//! * arrays and maps nested [`MAX_DEPTH`] levels deep or deeper (serde_json's
//!   recursion limit, and the limit of this crate's own readers);
//! * a payload that decodes to more than the codec's
//!   [`max_decoded_size`](super::Codec::max_decoded_size).

use crate::error::Error;

pub use super::model::MAX_DEPTH;

/// Why a payload was refused at write time.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// A map holds the same key twice, as serde writes a
    /// `#[serde(flatten)]` field over a map holding a key named like
    /// another field.
    #[error(
        "a map holds the key {key} twice (a #[serde(flatten)] field over a map that holds a \
         key named like another field?); JSON readers refuse that and MessagePack readers \
         would keep one of the values: rename the field or the map key"
    )]
    DuplicateKey {
        /// The key, as JSON spells it (quoted).
        key: String,
    },
    /// Arrays and maps nested `max` levels deep or deeper.
    #[error(
        "arrays and maps are nested {max} levels deep or deeper, and every reader refuses \
         that (serde_json's recursion limit, dynamo_es::codec::MAX_DEPTH): keep payloads \
         within {} levels of nesting",
        max - 1
    )]
    TooDeep {
        /// [`MAX_DEPTH`].
        max: usize,
    },
    /// The payload decodes to more bytes than the codec lets a reader
    /// produce.
    #[error(
        "it decodes to {size} bytes, over the codec's max_decoded_size of {max}, so every read \
         of it would fail: raise the limit with Codec::with_max_decoded_size on every writer \
         and reader of the table, or write smaller payloads"
    )]
    DecodedTooLarge {
        /// The payload's size once decoded.
        size: usize,
        /// The codec's `max_decoded_size`.
        max: usize,
    },
}

/// A payload refused at write time: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{payload} was not written: {cause}")]
pub struct Refused {
    /// What was refused, e.g. `event 3 (payload) of Account:acct-1`, or
    /// `payload` when the codec was called directly.
    pub payload: String,
    /// Why.
    pub cause: Cause,
}

/// What the codec calls a payload it refuses before its caller names it.
const UNNAMED: &str = "payload";

impl From<Cause> for Error {
    fn from(cause: Cause) -> Self {
        Error::Refused(Box::new(Refused {
            payload: UNNAMED.to_string(),
            cause,
        }))
    }
}

impl Error {
    /// Names the payload of a [`Error::Refused`] the codec returned (once:
    /// a name already given is kept); other errors are returned as they are.
    pub(crate) fn naming_payload(self, payload: impl FnOnce() -> String) -> Self {
        match self {
            Error::Refused(mut refused) if refused.payload == UNNAMED => {
                refused.payload = payload();
                Error::Refused(refused)
            }
            other => other,
        }
    }
}

/// The first key that occurs twice among `entries` (their keys read by
/// `key`), if any: compared pairwise in small maps, sorted in larger ones,
/// so a check costs little beside building the map.
pub(crate) fn duplicate_key<'e, E, K: ?Sized + Ord>(
    entries: &'e [E],
    key: impl Fn(&'e E) -> &'e K,
) -> Option<&'e K> {
    /// Up to this many entries, pairwise comparison beats sorting.
    const PAIRWISE: usize = 16;
    if entries.len() < 2 {
        return None;
    }
    if entries.len() <= PAIRWISE {
        let mut rest = entries;
        while let [first, tail @ ..] = rest {
            let first = key(first);
            if tail.iter().any(|other| key(other) == first) {
                return Some(first);
            }
            rest = tail;
        }
        return None;
    }
    let mut keys: Vec<&K> = entries.iter().map(key).collect();
    keys.sort_unstable();
    keys.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_in_small_and_large_maps() {
        fn first(entries: &[(String, u8)]) -> Option<&str> {
            duplicate_key(entries, |(key, _)| key.as_str())
        }
        for len in [0, 1, 2, 5, 16, 17, 40] {
            let mut entries: Vec<(String, u8)> = (0..len).map(|i| (format!("k{i}"), 0)).collect();
            assert_eq!(first(&entries), None, "{len}");
            if len > 0 {
                let expected = format!("k{}", len / 2);
                entries.push((expected.clone(), 1));
                assert_eq!(first(&entries), Some(expected.as_str()), "{len}");
            }
        }
    }
}
