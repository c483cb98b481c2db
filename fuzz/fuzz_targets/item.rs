//! `dynamo_es::item::item_to_event` on DynamoDB items built from arbitrary
//! bytes (see `dynamo_es_fuzz::item`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dynamo_es_fuzz::item(data));
