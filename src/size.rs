//! DynamoDB's size and billing rules, computed exactly from the items we send.
//!
//! * An item's size is the sum, over its attributes, of the attribute name's
//!   UTF-8 length plus the value's size.
//! * Strings count their UTF-8 bytes; binary values their raw length.
//! * Numbers count one byte per two significant digits (leading and trailing
//!   zeros trimmed), plus one byte, plus one more when negative.
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
pub fn number_size(text: &str) -> usize {
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

/// The size DynamoDB bills for an item.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

/// Write capacity units to write an item of `size` bytes (doubled in a transaction).
pub fn write_units(size: usize, transactional: bool) -> u64 {
    let units = u64::try_from(size.div_ceil(1024).max(1)).unwrap_or(u64::MAX);
    if transactional {
        units.saturating_mul(2)
    } else {
        units
    }
}

/// Read capacity units for a strongly consistent read of `size` bytes
/// (one item, or the summed size of a query page); doubled in a transaction.
pub fn read_units(size: usize, transactional: bool) -> u64 {
    let units = u64::try_from(size.div_ceil(4096).max(1)).unwrap_or(u64::MAX);
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

    #[test]
    fn numbers_count_significant_digit_pairs() {
        assert_eq!(number_size("0"), 1);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("12"), 2);
        assert_eq!(number_size("123"), 3);
        assert_eq!(number_size("1000"), 2);
        assert_eq!(number_size("-123"), 4);
        assert_eq!(number_size("0.0012"), 2);
        assert_eq!(number_size("18446744073709551615"), 11);
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
