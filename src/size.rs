//! DynamoDB's size and billing rules, computed exactly from the items we send.
//!
//! Public for one documented use: estimating what your own items cost
//! before you write them (the examples and benchmarks report write and read
//! units this way), with the same rules the store checks its limits with.
//!
//! * An item's size is the sum, over its attributes, of the attribute name's
//!   UTF-8 length plus the value's size.
//! * Strings count their UTF-8 bytes; binary values their raw length.
//! * Numbers: DynamoDB documents them as variable length, up to 38 significant
//!   digits, with leading and trailing zeros trimmed, costing about one byte
//!   per two significant digits plus one byte, plus one more when negative.
//!   Precisely (see [`number_size`]): write the value out in plain decimal
//!   (any exponent applied), trim its leading and trailing zeros, and split
//!   the significant digits left at the decimal point into `i` digits before
//!   it and `f` digits after it. The size is `1 + ⌈i/2⌉ + ⌈f/2⌉`, plus 1 when
//!   the value is negative. Zero, however written (`0`, `-0`, `0.00`, `0e9`),
//!   is 1 byte and never negative. So `7` and `12` are 2 bytes, `123` is 3,
//!   `1.5` is 3 (one digit on each side of the point), `-1.5` is 4, `0.0015`
//!   and `1.5E-3` are 2, `1000`, `1e10` and `1e125` are 2, and `1001` is 3.
//! * Booleans and nulls count one byte; lists and maps three bytes plus one
//!   byte per element, plus their elements.
//!
//! Capacity units follow DynamoDB's billing: a write costs one WCU per started
//! kilobyte of the item, a strongly consistent read one RCU per started 4 KB,
//! and both double inside transactions.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// The largest item DynamoDB stores: 400 KB.
pub const MAX_ITEM_SIZE: usize = 409_600;
/// The most items one `TransactWriteItems` call may touch.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// The largest total size of the items in one transaction: 4 MB.
pub const MAX_TRANSACTION_SIZE: usize = 4_194_304;
/// The largest page a `Query` or `Scan` returns: 1 MB.
pub const MAX_PAGE_SIZE: usize = 1_048_576;
/// The longest partition key value: 2,048 bytes.
pub const MAX_PARTITION_KEY_SIZE: usize = 2048;

/// The size DynamoDB bills for one attribute value.
pub fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(values) => values.iter().map(String::len).sum(),
        AttributeValue::Ns(values) => values.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(values) => values.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// The size of a DynamoDB number, from its decimal text.
///
/// The number's significant digits (leading and trailing zeros trimmed, on
/// both sides of the decimal point together) pack two to a byte, separately
/// on each side of the decimal point of the value in plain decimal: with `i`
/// significant digits before the point and `f` after it, the size is
/// `1 + ⌈i/2⌉ + ⌈f/2⌉`, plus 1 for a negative value. The exponent only moves
/// the point: `1.5E-3` is `0.0015` (`i = 0`, `f = 2`, 2 bytes) and `1e125` is
/// a single `1` followed by zeros (`i = 1`, 2 bytes). Zero is 1 byte whatever
/// its sign or spelling.
///
/// This is the rule of the dynoxide emulator's `types::number_size`, which its
/// authors measured byte-exact against DynamoDB by bisecting the 400 KB item
/// limit, and `tests/size_dynoxide.rs` checks the two agree. Calculators that
/// instead pair digits by their position relative to the decimal point (as
/// Oracle's base-100 `NUMBER` does) give more for some values, such as 3
/// bytes for `12000` or `0.012`, where this gives 2; we follow the
/// measurement. Like dynoxide, surrounding whitespace is ignored and a
/// malformed text still gets a size (its stray characters are skipped); no
/// cap is applied at 38 digits, since DynamoDB rejects such numbers anyway.
pub fn number_size(text: &str) -> usize {
    let text = text.trim();
    let negative = text.starts_with('-');
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (coefficient, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((coefficient, exponent)) => (coefficient, parse_exponent(exponent)),
        None => (unsigned, 0),
    };
    let (integer, fraction) = coefficient.split_once('.').unwrap_or((coefficient, ""));
    let digits = || {
        integer
            .bytes()
            .chain(fraction.bytes())
            .filter(u8::is_ascii_digit)
    };
    let written = digits().count();
    let leading = digits().take_while(|&d| d == b'0').count();
    if leading == written {
        // Zero: no significant digits, and no sign byte even for `-0`.
        return 1;
    }
    let trailing = digits().rev().take_while(|&d| d == b'0').count();
    let significant = written - leading - trailing;

    // How many significant digits fall before the decimal point: negative for
    // a pure fraction, past the last significant digit for a value whose
    // trailing zeros were trimmed (`1000`, `1e10`), so it is clamped to them.
    let integer_digits = integer.bytes().filter(u8::is_ascii_digit).count();
    let point = to_i64(integer_digits)
        .saturating_sub(to_i64(leading))
        .saturating_add(exponent);
    let before = usize::try_from(point.clamp(0, to_i64(significant))).unwrap_or(0);
    let after = significant - before;

    1 + before.div_ceil(2) + after.div_ceil(2) + usize::from(negative)
}

/// The exponent written after `e`: saturating when it overflows an `i64`, and
/// 0 when it does not parse at all (as dynoxide reads it).
fn parse_exponent(text: &str) -> i64 {
    match text.parse::<i64>() {
        Ok(exponent) => exponent,
        Err(err) => match err.kind() {
            std::num::IntErrorKind::PosOverflow => i64::MAX,
            std::num::IntErrorKind::NegOverflow => i64::MIN,
            _ => 0,
        },
    }
}

fn to_i64(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The size DynamoDB bills for an item.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

/// Write capacity units to write an item of `size` bytes (doubled in a transaction).
pub fn write_units(size: usize, transactional: bool) -> u64 {
    capacity_units(size, 1024, transactional)
}

/// Read capacity units for a strongly consistent read of `size` bytes
/// (one item, or the summed size of a query page); doubled in a transaction.
pub fn read_units(size: usize, transactional: bool) -> u64 {
    capacity_units(size, 4096, transactional)
}

/// `size` in units of `unit` bytes, rounded up (at least one), doubled in a
/// transaction.
fn capacity_units(size: usize, unit: usize, transactional: bool) -> u64 {
    let units = u64::try_from(size.div_ceil(unit).max(1)).unwrap_or(u64::MAX);
    if transactional {
        units.saturating_mul(2)
    } else {
        units
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    /// `(rule, [(text, size)])`: numbers sized as DynamoDB sizes them.
    #[rustfmt::skip]
    const NUMBER_SIZES: &[(&str, &[(&str, usize)])] = &[
        ("integers count significant digit pairs", &[
            ("0", 1), ("7", 2), ("12", 2), ("123", 3), ("1234", 3), ("12345", 4),
            ("18446744073709551615", 11), ("99999999999999999999999999999999999999", 20),
        ]),
        ("decimals pair digits on each side of the point", &[
            ("1.5", 3), ("12.5", 3), ("1.25", 3), ("12.34", 3), ("123.45", 4), ("123.456", 5),
            ("10.5", 3), ("1.05", 3), ("0.5", 2), (".5", 2), ("0.25", 2), ("0.125", 3),
            ("0.0012", 2), ("0.012", 2), ("0.0105", 3), ("3.14159265358979", 9),
            ("9.9999999999999999999999999999999999999", 21),
        ]),
        ("negative numbers cost one more byte", &[
            ("-7", 3), ("-42", 3), ("-123", 4), ("-1.5", 4), ("-0.0015", 3), ("+1.5", 3),
            ("-9.9999999999999999999999999999999999999", 22),
        ]),
        ("leading and trailing zeros are trimmed", &[
            ("0042", 2), ("1000", 2), ("1001", 3), ("12000", 2), ("1.500", 3), ("001.500", 3),
            ("100.5", 4), ("-000.000150", 3),
        ]),
        ("exponents only move the decimal point", &[
            ("1e10", 2), ("1E+10", 2), ("1e125", 2), ("1.5E-3", 2), ("1.5e0", 3), ("1.5e1", 2),
            ("9.9999999999999999999999999999999999999E+125", 20), ("15e-1", 3), ("12345e-2", 4),
            ("1E-130", 2), ("-1E-130", 3), ("1.23e1", 3), ("0.00123e5", 3), ("1e0010", 2),
            // Exponents past an i64 saturate rather than wrap or read as zero.
            ("1.5e99999999999999999999", 2), ("1.5e-99999999999999999999", 2),
        ]),
        ("malformed text still gets a size", &[
            ("", 1), ("-", 1), (" 1.5 ", 3), ("1e", 2), ("1.2.3", 3)
        ]),
    ];

    #[test]
    fn numbers_are_sized_by_significant_digit_pairs() {
        for (rule, cases) in NUMBER_SIZES {
            for &(text, size) in *cases {
                assert_eq!(number_size(text), size, "{rule}: {text}");
            }
        }
        assert_eq!(number_size("1.5e-3"), number_size("0.0015"));
    }

    #[test]
    fn zero_is_one_byte_whatever_its_sign_or_spelling() {
        for zero in [
            "0", "-0", "+0", "00", "0.0", "-0.000", ".0", "0.", "0e5", "-0E-130",
        ] {
            assert_eq!(number_size(zero), 1, "{zero}");
        }
    }

    #[test]
    fn items_count_names_and_values() {
        let item = HashMap::from([
            (
                "AggregateTypeAndId".to_string(),
                AttributeValue::S("Order:ü1".into()),
            ),
            (
                "AggregateIdSequence".to_string(),
                AttributeValue::N("42".into()),
            ),
            (
                "Payload".to_string(),
                AttributeValue::B(Blob::new(vec![0; 1000])),
            ),
        ]);
        assert_eq!(item_size(&item), 18 + 9 + 19 + 2 + 7 + 1000);
    }

    #[test]
    fn capacity_units_round_up() {
        assert_eq!(write_units(1, false), 1);
        assert_eq!(write_units(1024, false), 1);
        assert_eq!(write_units(1025, false), 2);
        assert_eq!(write_units(1025, true), 4);
        assert_eq!(read_units(4096, false), 1);
        assert_eq!(read_units(4097, false), 2);
        assert_eq!(read_units(409_600, true), 200);
    }
}
