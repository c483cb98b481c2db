//! `size::number_size` against the dynoxide emulator's own number sizing.
//!
//! dynoxide's `types::number_size` is public, so most checks call it directly:
//! a table of edge cases, an exhaustive range of generated decimals, and
//! property tests over well-formed and malformed texts. The emulator checks
//! then confirm, through the wire, that items built to our computed size land
//! exactly on DynamoDB's 400 KB limit and on a 1 KB write-capacity boundary,
//! so an off-by-one in either direction fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use aws_sdk_dynamodb::Client;
use dynamo_es::size::{item_size, number_size, MAX_ITEM_SIZE};
use proptest::prelude::*;

/// Numbers whose sizes are easy to get wrong: decimals, signs, zeros,
/// exponents, and the edges of DynamoDB's range and precision.
const EDGE_CASES: &[&str] = &[
    "0",
    "-0",
    "+0",
    "0.0",
    "-0.000",
    "00",
    ".0",
    "0.",
    "0e5",
    "-0E-130",
    "7",
    "-7",
    "+7",
    "12",
    "-42",
    "123",
    "-123",
    "1234",
    "12345",
    "0042",
    "1000",
    "1001",
    "12000",
    "100.5",
    "1.5",
    "-1.5",
    "+1.5",
    ".5",
    "5.",
    "0.5",
    "12.5",
    "1.25",
    "12.34",
    "123.45",
    "123.456",
    "10.5",
    "1.05",
    "0.25",
    "0.125",
    "0.0012",
    "0.012",
    "0.0105",
    "1.500",
    "001.500",
    "-000.000150",
    "3.14159265358979",
    "1e10",
    "1E+10",
    "1e0010",
    "1e125",
    "-1e125",
    "1.5E-3",
    "1.5e-3",
    "-1.5E-3",
    "1.5e0",
    "1.5e1",
    "15e-1",
    "12345e-2",
    "1.23e1",
    "0.00123e5",
    "1E-130",
    "-1E-130",
    "18446744073709551615",
    "-9223372036854775808",
    "99999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999",
    "9.9999999999999999999999999999999999999",
    "-9.9999999999999999999999999999999999999",
    "0.99999999999999999999999999999999999999",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1.2345678901234567890123456789012345678E-100",
    "12345678901234567890.123456789012345678",
];

#[test]
fn edge_cases_match_dynoxide() {
    for &text in EDGE_CASES {
        assert_eq!(
            number_size(text),
            dynoxide::types::number_size(text),
            "number_size({text:?})"
        );
    }
}

#[test]
fn edge_cases_are_numbers_dynamodb_accepts() {
    for &text in EDGE_CASES {
        assert!(
            dynoxide::types::validate_dynamo_number(text).is_ok(),
            "{text:?} is not a valid DynamoDB number"
        );
    }
}

/// Every integer in -2,000..=2,000 at every scale from 0 to 7 decimal places,
/// written plainly, with trailing zeros, and in scientific notation.
#[test]
fn generated_decimal_range_matches_dynoxide() {
    let mut checked = 0usize;
    for unscaled in -2_000i64..=2_000 {
        let sign = if unscaled < 0 { "-" } else { "" };
        let digits = unscaled.unsigned_abs().to_string();
        for scale in 0..=7usize {
            let plain = if scale == 0 {
                digits.clone()
            } else {
                let padded = format!("{digits:0>width$}", width = scale + 1);
                let (integer, fraction) = padded.split_at(padded.len() - scale);
                format!("{integer}.{fraction}")
            };
            let texts = [
                format!("{sign}{plain}"),
                format!("{sign}{plain}000"),
                format!("{sign}{digits}e-{scale}"),
                format!("{sign}{digits}E{scale}"),
                format!("{sign}0.{digits}e{scale}"),
            ];
            for text in &texts {
                assert_eq!(
                    number_size(text),
                    dynoxide::types::number_size(text),
                    "number_size({text:?})"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4_001 * 8 * 5);
}

/// Well-formed DynamoDB number texts: a sign, a coefficient with zeros
/// likely at either end and either side of the point, and an exponent.
fn number_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", "-", "+"]),
        "0{0,3}[0-9]{0,20}0{0,6}",
        prop::option::of("0{0,6}[0-9]{0,20}0{0,3}"),
        prop::option::of((
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "-", "+"]),
            "0{0,2}",
            0u32..200,
        )),
    )
        .prop_filter(
            "a coefficient needs a digit",
            |(_, integer, fraction, _)| {
                !integer.is_empty() || fraction.as_ref().is_some_and(|f| !f.is_empty())
            },
        )
        .prop_map(|(sign, integer, fraction, exponent)| {
            let mut text = format!("{sign}{integer}");
            if let Some(fraction) = fraction {
                text.push('.');
                text.push_str(&fraction);
            }
            if let Some((e, exponent_sign, zeros, exponent)) = exponent {
                text.push_str(&format!("{e}{exponent_sign}{zeros}{exponent}"));
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn well_formed_numbers_match_dynoxide(text in number_text()) {
        prop_assert_eq!(number_size(&text), dynoxide::types::number_size(&text), "{:?}", text);
    }

    #[test]
    fn numberish_texts_match_dynoxide(text in "[-+ .eE0-9]{0,30}") {
        prop_assert_eq!(number_size(&text), dynoxide::types::number_size(&text), "{:?}", text);
    }

    #[test]
    fn arbitrary_texts_match_dynoxide(text in any::<String>()) {
        prop_assert_eq!(number_size(&text), dynoxide::types::number_size(&text), "{:?}", text);
    }
}

/// Numbers the emulator checks: the shapes of the edge cases, with many for
/// which the old sizing (one byte per two significant digits, ignoring the
/// decimal point, and a sign byte on `-0`) was one byte low or high.
const EMULATOR_CASES: &[&str] = &[
    "0",
    "-0",
    "-0.000",
    "7",
    "-42",
    "1001",
    "1.5",
    "-1.5",
    "-7.5",
    "123.456",
    "12345.6",
    "1.234e2",
    "123.45",
    "1.25",
    "10.5",
    "0.0015",
    "1.5E-3",
    "1e125",
    "-1E-130",
    "100.5",
    "3.14159265358979",
    "9.9999999999999999999999999999999999999",
    "-9.9999999999999999999999999999999999999E+125",
];

const KEY: &str = "AggregateTypeAndId";

/// An item holding `number`, padded with a binary attribute so that our
/// `item_size` says it is exactly `size` bytes.
fn item_of_size(id: &str, number: &str, size: usize) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (KEY.to_string(), AttributeValue::S(id.to_string())),
        ("Number".to_string(), AttributeValue::N(number.to_string())),
        ("Pad".to_string(), AttributeValue::B(Blob::new(Vec::new()))),
    ]);
    let padding = size - item_size(&item);
    item.insert(
        "Pad".to_string(),
        AttributeValue::B(Blob::new(vec![0xA5; padding])),
    );
    assert_eq!(item_size(&item), size);
    item
}

async fn put(
    client: &Client,
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<f64, String> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .map(|output| {
            output
                .consumed_capacity()
                .and_then(|capacity| capacity.capacity_units())
                .expect("consumed capacity")
        })
        .map_err(|err| format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(err)))
}

/// An item our sizing puts at exactly 400 KB is stored; one byte more is
/// refused as too large. If `number_size` were one low, the first item would
/// really be over the limit; one high, the second would really fit.
#[tokio::test]
async fn emulator_item_limit_lands_on_our_computed_size() {
    let tables = dynamo_es::testing::dynamodb().await.unwrap();
    for (i, &number) in EMULATOR_CASES.iter().enumerate() {
        let at_limit = item_of_size(&format!("limit-{i}"), number, MAX_ITEM_SIZE);
        put(&tables.client, &tables.snapshots, at_limit)
            .await
            .unwrap_or_else(|err| panic!("{number}: exactly 400 KB refused: {err}"));

        let over = item_of_size(&format!("over-{i}"), number, MAX_ITEM_SIZE + 1);
        let err = put(&tables.client, &tables.snapshots, over)
            .await
            .expect_err(&format!("{number}: 400 KB + 1 byte accepted"));
        assert!(
            err.contains("Item size has exceeded the maximum allowed size"),
            "{number}: refused for another reason: {err}"
        );
    }
}

/// A write of an item our sizing puts at exactly 1,024 bytes costs one WCU,
/// and one of 1,025 bytes two: the emulator's billing sizes the number as we
/// do too.
#[tokio::test]
async fn emulator_write_capacity_turns_at_our_computed_size() {
    let tables = dynamo_es::testing::dynamodb().await.unwrap();
    for (i, &number) in EMULATOR_CASES.iter().enumerate() {
        let one_kb = item_of_size(&format!("kb-{i}"), number, 1024);
        let units = put(&tables.client, &tables.snapshots, one_kb)
            .await
            .unwrap();
        assert_eq!(units, 1.0, "{number}: 1,024 bytes");

        let over = item_of_size(&format!("kb-over-{i}"), number, 1025);
        let units = put(&tables.client, &tables.snapshots, over).await.unwrap();
        assert_eq!(units, 2.0, "{number}: 1,025 bytes");
    }
}

/// The emulator cases really do tell the old and new sizing apart.
#[test]
fn emulator_cases_include_numbers_the_old_sizing_got_wrong() {
    fn old_number_size(text: &str) -> usize {
        let negative = text.starts_with('-');
        let mantissa = text
            .trim_start_matches(['-', '+'])
            .split(['e', 'E'])
            .next()
            .unwrap_or_default();
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
        significant.div_ceil(2) + 1 + usize::from(negative)
    }
    let differing: Vec<&str> = EMULATOR_CASES
        .iter()
        .copied()
        .filter(|n| old_number_size(n) != number_size(n))
        .collect();
    assert!(differing.contains(&"1.5"), "{differing:?}");
    assert!(differing.contains(&"-0"), "{differing:?}");
    assert!(differing.len() >= 8, "{differing:?}");
}
