//! zstd with a trained dictionary: compression with a codec's own
//! [`Dictionary`], decompression with the one a frame names, found in the
//! codec's own or in the [`DictionarySource`] its caller handed it. The
//! codec never fetches a dictionary: [`crate::dictionary`] does, and hands
//! them down.
//!
//! **Invariant:** a frame written here records its dictionary's id in the
//! `Dictionary_ID` field of its header, its content size and zstd's
//! content checksum, so it is read back by that id alone, the
//! decompression bound is checked against the declared size before
//! anything is allocated, and a decode with another dictionary of the same
//! id (another table's) is [`dictionary::Error::Mismatch`], never another
//! value. A frame that names a dictionary is only ever decoded with the
//! dictionary of that id in the reader's table (see [`Readers`]): one the
//! reader has not loaded is [`dictionary::Error::NotLoaded`], never
//! garbage. Frames written before checksums (by earlier versions) carry
//! none: what protects them is that table and id, as the cache keys them.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, ResetDirective};

use super::dictionary::{Dictionary, EncoderAt};
use crate::error::dictionary;
use crate::error::{Error, Result};

thread_local! {
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

fn corrupt(reason: impl fmt::Display) -> Error {
    Error::Corrupt {
        format: "zstd",
        reason: reason.to_string(),
    }
}

/// Runs `work` with this thread's zstd context in `key`, made on first use.
fn in_context<C: 'static, R>(
    key: &'static std::thread::LocalKey<RefCell<Option<C>>>,
    create: fn() -> Option<C>,
    work: impl FnOnce(&mut C) -> Result<R>,
) -> Result<R> {
    key.with(|cell| {
        let mut slot = cell.borrow_mut();
        let context = match slot.as_mut() {
            Some(context) => context,
            None => slot.insert(create().ok_or_else(|| corrupt("zstd could not make a context"))?),
        };
        work(context)
    })
}

/// The dictionary a codec writes with, digested at the codec's level.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) dictionary: Dictionary,
    level: i32,
    encoder: EncoderAt,
}

impl Writer {
    /// `dictionary` at `level` (its own digest at the default level if zstd
    /// would not make another, which it does not refuse for bytes it
    /// digested once).
    pub(crate) fn new(dictionary: &Dictionary, level: i32) -> Self {
        match dictionary.encoder_at(level) {
            Some(encoder) => Writer {
                dictionary: dictionary.clone(),
                level,
                encoder,
            },
            None => Writer {
                dictionary: dictionary.clone(),
                level: super::DEFAULT_COMPRESSION_LEVEL,
                encoder: EncoderAt::Shared(dictionary.clone()),
            },
        }
    }

    /// Compresses `raw` with the dictionary, reusing this thread's
    /// context: one frame with its content size and content checksum.
    pub(crate) fn compress(&self, raw: &[u8]) -> Result<Vec<u8>> {
        in_context(&CCTX, CCtx::try_create, |cctx| {
            let zstd = |code| corrupt(zstd_safe::get_error_name(code));
            // Whatever a failed call left behind goes; the context never
            // keeps a reference to the dictionary past this call.
            cctx.reset(ResetDirective::SessionAndParameters)
                .map_err(zstd)?;
            cctx.set_parameter(CParameter::ChecksumFlag(true))
                .map_err(zstd)?;
            cctx.ref_cdict(self.encoder.cdict()).map_err(zstd)?;
            let mut out = Vec::with_capacity(zstd_safe::compress_bound(raw.len()));
            let compressed = cctx.compress2(&mut out, raw).map_err(zstd);
            let released = cctx
                .reset(ResetDirective::SessionAndParameters)
                .map_err(zstd);
            compressed?;
            released?;
            Ok(out)
        })
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("dictionary", &self.dictionary.id())
            .field("level", &self.level)
            .finish()
    }
}

impl PartialEq for Writer {
    fn eq(&self, other: &Self) -> bool {
        self.dictionary == other.dictionary && self.level == other.level
    }
}

impl Eq for Writer {}

/// Where a codec finds the dictionaries that the frames it reads name:
/// those of one table (or other scope), by id, at hand before decoding
/// (decoding is synchronous). [`TableDictionaries`](crate::dictionary::TableDictionaries),
/// a [`DictionaryCache`](crate::dictionary::DictionaryCache) for one table,
/// is one; implement it to hand a codec dictionaries kept elsewhere.
pub trait DictionarySource: Send + Sync + fmt::Debug {
    /// The table (or other scope) whose dictionaries these are: a
    /// dictionary id is unique there only.
    fn table(&self) -> &str;

    /// The dictionary `id` of that table, if it is at hand. `None` makes
    /// the decode [`dictionary::Error::NotLoaded`]: load what a batch of
    /// payloads names before decoding it.
    fn dictionary(&self, id: u32) -> Option<Dictionary>;
}

/// The [`DictionarySource`] a codec reads with, if any. It does not make a
/// codec another codec: any two compare equal.
#[derive(Clone, Default)]
pub(crate) struct Readers(pub(crate) Option<Arc<dyn DictionarySource>>);

impl Readers {
    /// The table whose dictionaries are read, if any.
    pub(crate) fn table(&self) -> Option<&str> {
        self.0.as_ref().map(|source| source.table())
    }
}

impl fmt::Debug for Readers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(source) => write!(f, "{source:?}"),
            None => f.write_str("no dictionary source"),
        }
    }
}

impl PartialEq for Readers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Readers {}

/// zstd's error for a frame whose content does not match its checksum
/// (zstd returns `-code` as a `size_t`).
const CHECKSUM_WRONG: usize =
    0usize.wrapping_sub(zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_checksum_wrong as usize);

/// The dictionary id a stored zstd frame names, if it names one.
pub(crate) fn frame_dictionary_id(bytes: &[u8]) -> Option<u32> {
    if bytes.starts_with(&super::encoding::ZSTD_MAGIC) {
        zstd_safe::get_dict_id_from_frame(bytes).map(|id| id.get())
    } else {
        None
    }
}

/// Decompresses one frame compressed with `dictionary`, of at most `max`
/// bytes. The frame must declare its content size (every frame this crate
/// writes does) and be the whole payload.
pub(crate) fn decompress(bytes: &[u8], dictionary: &Dictionary, max: usize) -> Result<Vec<u8>> {
    let (declared, frame_len) = super::zstd::frame_sizes(bytes)?;
    if frame_len != bytes.len() {
        return Err(corrupt("bytes after the dictionary frame"));
    }
    let Some(size) = declared else {
        return Err(corrupt("a dictionary frame without its content size"));
    };
    let capacity = super::zstd::capacity(size, max)?;
    in_context(&DCTX, DCtx::try_create, |dctx| {
        let mut out = Vec::with_capacity(capacity);
        dctx.decompress_using_ddict(&mut out, bytes, dictionary.decoder())
            .map_err(|code| {
                if code == CHECKSUM_WRONG {
                    return dictionary::Error::Mismatch {
                        id: dictionary.id(),
                        table: dictionary.table().to_string(),
                    }
                    .into();
                }
                corrupt(format!(
                    "dictionary {}: {}",
                    dictionary.id(),
                    zstd_safe::get_error_name(code)
                ))
            })?;
        super::zstd::exactly(out, capacity)
    })
}

/// The dictionary `id`: the writer's (if the codec reads no table's
/// dictionaries, or the writer's is that table's), or the one `readers`
/// loaded for their table.
pub(crate) fn find(id: u32, writer: Option<&Writer>, readers: &Readers) -> Result<Dictionary> {
    let table = readers.table();
    if let Some(writer) = writer.filter(|w| {
        w.dictionary.id() == id && table.is_none_or(|table| table == w.dictionary.table())
    }) {
        return Ok(writer.dictionary.clone());
    }
    readers
        .0
        .as_ref()
        .and_then(|source| source.dictionary(id))
        .ok_or_else(|| dictionary::Error::NotLoaded { id }.into())
}
