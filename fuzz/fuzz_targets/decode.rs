//! `Codec::decode` on arbitrary bytes (see `dynamo_es_fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dynamo_es_fuzz::decode(data));
