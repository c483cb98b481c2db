//! zstd compression over a serialized payload, with reused contexts and a
//! hard cap on what decompression may allocate.

use std::cell::RefCell;
use std::io::Read;

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe;

use crate::error::{Error, Result};

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

fn corrupt(reason: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        format: "zstd",
        reason: reason.to_string(),
    }
}

/// Compresses `raw` at `level`, reusing this thread's compression context.
pub(super) fn compress(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some((current, compressor)) => {
                if *current != level {
                    compressor.set_compression_level(level)?;
                    *current = level;
                }
                compressor
            }
            None => &mut slot.insert((level, Compressor::new(level)?)).1,
        };
        Ok(compressor.compress(raw)?)
    })
}

/// The content size the first frame of `bytes` declares (if it does), and
/// that frame's length.
pub(super) fn frame_sizes(bytes: &[u8]) -> Result<(Option<u64>, usize)> {
    let declared =
        zstd_safe::get_frame_content_size(bytes).map_err(|_| corrupt("bad frame header"))?;
    let frame_len = zstd_safe::find_frame_compressed_size(bytes).map_err(|code| {
        corrupt(format!(
            "truncated or invalid frame: {}",
            zstd_safe::get_error_name(code)
        ))
    })?;
    Ok((declared, frame_len))
}

/// The buffer for a frame declaring `size` bytes, if that is at most `max`.
pub(super) fn capacity(size: u64, max: usize) -> Result<usize> {
    match usize::try_from(size) {
        Ok(capacity) if capacity <= max => Ok(capacity),
        _ => Err(Error::DecodedTooLarge { size, max }),
    }
}

/// `out`, if it holds the `capacity` bytes its frame declared.
pub(super) fn exactly(out: Vec<u8>, capacity: usize) -> Result<Vec<u8>> {
    if out.len() == capacity {
        Ok(out)
    } else {
        Err(corrupt(format!(
            "frame declared {capacity} bytes but held {}",
            out.len()
        )))
    }
}

/// Decompresses one zstd frame of at most `max` bytes of content.
///
/// A frame that declares its size (ours always do) is checked before any
/// allocation and decoded into a buffer of exactly that size; a frame that
/// does not, or several concatenated frames, are streamed with a hard cap.
pub(super) fn decompress(bytes: &[u8], max: usize) -> Result<Vec<u8>> {
    let (declared, frame_len) = frame_sizes(bytes)?;
    let max_u64 = u64::try_from(max).unwrap_or(u64::MAX);
    match declared {
        Some(size) if frame_len == bytes.len() => {
            let capacity = capacity(size, max)?;
            DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                let decompressor = match slot.as_mut() {
                    Some(decompressor) => decompressor,
                    None => slot.insert(Decompressor::new()?),
                };
                exactly(
                    decompressor.decompress(bytes, capacity).map_err(corrupt)?,
                    capacity,
                )
            })
        }
        Some(size) if size > max_u64 => Err(Error::DecodedTooLarge { size, max }),
        _ => {
            let decoder = zstd::stream::read::Decoder::with_buffer(bytes).map_err(corrupt)?;
            let mut out = Vec::new();
            decoder
                .take(max_u64.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(corrupt)?;
            if out.len() > max {
                Err(Error::DecodedTooLarge {
                    size: u64::try_from(out.len()).unwrap_or(u64::MAX),
                    max,
                })
            } else {
                Ok(out)
            }
        }
    }
}
