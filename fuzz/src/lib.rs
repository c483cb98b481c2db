//! What the fuzz targets check, as plain functions.
//!
//! The cargo-fuzz targets in `fuzz_targets/` call these with libFuzzer's
//! inputs; `tests/corrupt.rs` includes this same file (`#[path]`) and runs
//! it on 100,000+ deterministic random and mutated inputs in every
//! `cargo test`, so the checks stay compiled and exercised on stable Rust.
//!
//! Only API available under every feature set is used here: in the test
//! suite `Codec::default()` is whatever the enabled features make it; the
//! fuzz crate enables `msgpack` and `compression` so every format is read.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::OnceLock;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_es::codec::Encoding;
use dynamo_es::item::{self, Item};
use dynamo_es::Codec;
use serde_json::json;

/// A cap small enough that fuzzed zstd frames hit it.
const SMALL_CAP: usize = 4096;

/// `Codec::decode` on arbitrary bytes: it never panics, every failure is a
/// data error, and whatever decodes re-encodes and decodes to the same value.
///
/// Decoding does not depend on the codec's format (every codec reads every
/// format), only on its size cap, so one default codec and one with a small
/// cap cover it.
pub fn decode(data: &[u8]) {
    let _ = Encoding::detect(data);
    let codec = Codec::default();
    let _ = codec.is_native(data);
    let _ = Codec::json().is_native(data);
    match codec.decode(data) {
        Ok(value) => {
            let encoded = codec
                .encode(&value)
                .unwrap_or_else(|err| panic!("decoded value does not encode: {err}"));
            let again = codec
                .decode(&encoded)
                .unwrap_or_else(|err| panic!("re-encoded value does not decode: {err}"));
            assert_eq!(again, value, "round trip through {}", codec.name());
            if let Ok(capped) = Codec::default()
                .with_max_decoded_size(SMALL_CAP)
                .decode(data)
            {
                assert_eq!(capped, value, "the cap changed the value");
            }
        }
        Err(err) => {
            assert!(err.is_data_error(), "not a data error: {err:?}");
            match Codec::default()
                .with_max_decoded_size(SMALL_CAP)
                .decode(data)
            {
                Ok(value) => panic!("only a smaller cap decodes it, to {value}"),
                Err(capped) => assert!(capped.is_data_error(), "not a data error: {capped:?}"),
            }
        }
    }
}

/// `item_to_event` on an item built from arbitrary bytes (see
/// [`item_from_bytes`]): it never panics, every failure is a data error whose
/// message names the item's key, and every event read back writes and reads
/// back unchanged.
pub fn item(data: &[u8]) {
    let item = item_from_bytes(data);
    let codec = Codec::default();
    match item::item_to_event(&item, &codec) {
        Ok(event) => {
            let (written, _) = item::event_to_item(&event, &codec)
                .unwrap_or_else(|err| panic!("event read back does not write: {err}"));
            let again = item::item_to_event(&written, &codec)
                .unwrap_or_else(|err| panic!("written event does not read: {err}"));
            assert_eq!(again, event);
        }
        Err(err) => {
            assert!(err.is_data_error(), "not a data error: {err:?}");
            let key = item::describe_key(&item);
            assert!(
                err.to_string().contains(&key),
                "error does not name the item {key}: {err}"
            );
        }
    }
}

/// Reads fuzz bytes front to back; past the end every read is zero.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    /// Up to `max` bytes, the count taken from the input.
    fn slice(&mut self, max: usize) -> &'a [u8] {
        let len = usize::from(self.byte()) % (max + 1);
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// The attributes an event item has, and one it should not.
const NAMES: [&str; 9] = [
    item::AGGREGATE_TYPE_AND_ID,
    item::AGGREGATE_ID_SEQUENCE,
    item::AGGREGATE_TYPE,
    item::AGGREGATE_ID,
    item::EVENT_TYPE,
    item::EVENT_VERSION,
    item::PAYLOAD,
    item::METADATA,
    "Unexpected",
];

/// Numbers as DynamoDB may hand them back, valid or not for a sequence.
const NUMBERS: [&str; 12] = [
    "0",
    "1",
    "3",
    "-1",
    "3.5",
    "1e3",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "",
    " 7",
    "0x10",
];

/// Builds an event item from fuzz bytes: a valid item (one of five payloads,
/// one large enough to be compressed, encoded with `Codec::default()`),
/// then edits the bytes dictate: remove an
/// attribute, set one to a value of any DynamoDB type, set one to raw bytes,
/// or flip bytes inside a binary attribute.
pub fn item_from_bytes(data: &[u8]) -> Item {
    static PAYLOADS: OnceLock<(Vec<Vec<u8>>, Vec<u8>)> = OnceLock::new();
    let (payloads, metadata) = PAYLOADS.get_or_init(|| {
        let codec = Codec::default();
        let payloads = [
            json!({"Deposited": {"amount": -100}}),
            json!({"Noted": {"text": "ü€𝄞 \"quoted\" \\ text"}}),
            json!([1, 2.5, null, true, "x", {"nested": [[]]}]),
            json!({"Deposited": {"amount": u64::MAX}}),
            json!({"Noted": {"text": "x".repeat(1030)}}),
        ]
        .iter()
        .map(|value| codec.encode(value).unwrap_or_default())
        .collect();
        let metadata = codec.encode(&json!({"user": "fuzz"})).unwrap_or_default();
        (payloads, metadata)
    });
    let mut bytes = Bytes(data);
    let sequence = usize::from(bytes.byte());
    // Mostly small payloads; one in sixteen is the compressible one.
    let choice = match usize::from(bytes.byte()) % 16 {
        15 => payloads.len() - 1,
        other => other % (payloads.len() - 1),
    };
    let payload = payloads[choice].clone();
    let mut item = Item::from([
        (
            item::AGGREGATE_TYPE_AND_ID.to_string(),
            item::s(item::aggregate_key("Account", "fuzz-1")),
        ),
        (item::AGGREGATE_ID_SEQUENCE.to_string(), item::n(sequence)),
        (item::AGGREGATE_TYPE.to_string(), item::s("Account")),
        (item::AGGREGATE_ID.to_string(), item::s("fuzz-1")),
        (item::EVENT_TYPE.to_string(), item::s("Deposited")),
        (item::EVENT_VERSION.to_string(), item::s("1.0")),
        (item::PAYLOAD.to_string(), item::b(payload)),
        (item::METADATA.to_string(), item::b(metadata.clone())),
    ]);
    while !bytes.is_empty() {
        let op = bytes.byte();
        let name = NAMES[usize::from(op >> 2) % NAMES.len()];
        match op & 3 {
            0 => {
                item.remove(name);
            }
            1 => {
                let value = attribute_value(&mut bytes, 0);
                item.insert(name.to_string(), value);
            }
            2 => {
                item.insert(name.to_string(), item::b(bytes.slice(255).to_vec()));
            }
            _ => {
                if let Some(AttributeValue::B(blob)) = item.get(name) {
                    let mut payload = blob.clone().into_inner();
                    let at = usize::from(bytes.byte());
                    let with = bytes.byte();
                    if !payload.is_empty() {
                        let len = payload.len();
                        payload[at % len] ^= with;
                    } else {
                        payload.push(with);
                    }
                    item.insert(name.to_string(), item::b(payload));
                }
            }
        }
    }
    item
}

/// A DynamoDB attribute value of a type the bytes choose.
fn attribute_value(bytes: &mut Bytes<'_>, depth: u8) -> AttributeValue {
    let text = |bytes: &mut Bytes<'_>| String::from_utf8_lossy(bytes.slice(32)).into_owned();
    let number =
        |bytes: &mut Bytes<'_>| NUMBERS[usize::from(bytes.byte()) % NUMBERS.len()].to_string();
    match bytes.byte() % 10 {
        0 => AttributeValue::S(text(bytes)),
        1 => AttributeValue::N(number(bytes)),
        2 => AttributeValue::B(Blob::new(bytes.slice(64))),
        3 => AttributeValue::Bool(bytes.byte().is_multiple_of(2)),
        4 => AttributeValue::Null(true),
        5 => AttributeValue::Ss(vec![text(bytes), text(bytes)]),
        6 => AttributeValue::Ns(vec![number(bytes)]),
        7 => AttributeValue::Bs(vec![Blob::new(bytes.slice(16))]),
        8 if depth < 3 => AttributeValue::L(vec![attribute_value(bytes, depth + 1)]),
        9 if depth < 3 => AttributeValue::M(HashMap::from([(
            text(bytes),
            attribute_value(bytes, depth + 1),
        )])),
        _ => AttributeValue::Null(false),
    }
}

/// A zstd frame holding `content` in one raw block, with its size declared.
/// Written by hand so it exists whether or not `compression` is enabled.
pub fn zstd_raw_frame(content: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD];
    // Frame header: 8-byte content size, a 128 KiB window.
    frame.push(0xC0);
    frame.push(0x38);
    frame.extend_from_slice(&u64::try_from(content.len()).unwrap_or(0).to_le_bytes());
    let size = u32::try_from(content.len()).unwrap_or(0);
    // Last block, raw, `size` bytes.
    frame.extend_from_slice(&((size << 3) | 1).to_le_bytes()[..3]);
    frame.extend_from_slice(content);
    frame
}

/// A zstd "bomb": `blocks` run-length blocks of 128 KiB of `byte` each
/// (four bytes apiece, compressed), declaring `declared` as the content
/// size, or nothing (so only a streaming, capped decoder can stop it).
pub fn zstd_bomb(blocks: usize, byte: u8, declared: Option<u64>) -> Vec<u8> {
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD];
    match declared {
        Some(size) => {
            frame.push(0xC0);
            frame.push(0x38);
            frame.extend_from_slice(&size.to_le_bytes());
        }
        None => {
            frame.push(0x00);
            frame.push(0x38);
        }
    }
    for index in 0..blocks {
        let last = u32::from(index + 1 == blocks);
        // Run-length block of 128 KiB.
        let header = ((128 * 1024u32) << 3) | (1 << 1) | last;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(byte);
    }
    frame
}

/// MessagePack nested `depth` arrays deep, behind this crate's tag.
pub fn deep_msgpack(depth: usize) -> Vec<u8> {
    let mut bytes = vec![0xC1, 0x02];
    bytes.extend(std::iter::repeat_n(0x91, depth));
    bytes.push(0xC0);
    bytes
}

/// Valid (and a few hostile) payloads to start mutating from: every
/// format this build writes, plus hand-made zstd frames and deep nesting.
pub fn payload_seeds() -> Vec<Vec<u8>> {
    let values = [
        json!({"Deposited": {"amount": 42}}),
        json!({"Noted": {"text": "a note with ü and 𝄞 and \"quotes\""}}),
        json!({"total": -7, "applied": 3, "notes": ["a", "b", "c"], "f": 1.5e-300}),
        json!([
            null,
            true,
            false,
            0,
            -0.0,
            18446744073709551615u64,
            i64::MIN,
            "",
            {},
            []
        ]),
        json!({"entries": (0..12).map(|i| json!({"i": i, "memo": "card payment"})).collect::<Vec<_>>()}),
    ];
    let mut seeds = Vec::new();
    for value in &values {
        let json = serde_json::to_vec(value).unwrap_or_default();
        seeds.push(zstd_raw_frame(&json));
        seeds.push(json);
        for codec in [Codec::default(), Codec::default().with_min_compress_size(0)] {
            if let Ok(bytes) = codec.encode(value) {
                seeds.push(bytes);
            }
        }
    }
    seeds.push(b"[".repeat(200));
    seeds.push(zstd_bomb(2, b' ', None));
    seeds.push(zstd_bomb(2, b'[', Some(1 << 40)));
    seeds.push(deep_msgpack(200));
    seeds.push(vec![0xC1, 0x7F, b'{', b'}']);
    seeds.push(Vec::new());
    seeds
}
