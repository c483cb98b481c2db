//! Refusing a table passed in the wrong role (`--view-table Events`)
//! before a run reads an item of it.
//!
//! **Invariant:** a table whose key schema (from `DescribeTable`) is not
//! the one of its role is refused, naming the role it looks like; a table
//! that cannot be described is not judged here (the run then reports why,
//! with the library's error), so nothing is refused on a guess.

use std::fmt;

use aws_sdk_dynamodb::types::KeyType;
use aws_sdk_dynamodb::Client;
use dynamo_es::recode::{Table, TableKind};

/// The tables dynamo-es uses, by key schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Events,
    Snapshots,
    Views,
    Checkpoints,
}

impl Role {
    /// The role of the key schema `hash` (+ `range`), if it is one of
    /// dynamo-es's.
    fn of(hash: Option<&str>, range: Option<&str>) -> Option<Role> {
        match (hash?, range) {
            ("AggregateTypeAndId", Some("AggregateIdSequence")) => Some(Role::Events),
            ("AggregateTypeAndId", None) => Some(Role::Snapshots),
            ("ViewId", None) => Some(Role::Views),
            ("LeaseKey", None) => Some(Role::Checkpoints),
            _ => None,
        }
    }

    fn of_kind(kind: TableKind) -> Role {
        match kind {
            TableKind::Events => Role::Events,
            TableKind::Snapshots => Role::Snapshots,
            TableKind::Views => Role::Views,
        }
    }

    /// How the role is named and passed.
    fn phrase(self) -> &'static str {
        match self {
            Role::Events => "an events table (--events-table)",
            Role::Snapshots => "a snapshots table (--snapshots-table)",
            Role::Views => "a view table (--view-table)",
            Role::Checkpoints => "a projections checkpoint table (projections --checkpoint-table)",
        }
    }

    /// The key schema of the role.
    fn schema(self) -> &'static str {
        match self {
            Role::Events => "HASH AggregateTypeAndId, RANGE AggregateIdSequence",
            Role::Snapshots => "HASH AggregateTypeAndId only",
            Role::Views => "HASH ViewId",
            Role::Checkpoints => "HASH LeaseKey",
        }
    }
}

/// A table whose key schema is not the one of the role it was passed in.
#[derive(Debug)]
pub struct WrongRole {
    table: String,
    passed_as: Role,
    schema: String,
    looks_like: Option<Role>,
}

impl fmt::Display for WrongRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table {} was passed as {} but its key schema is {}",
            self.table,
            self.passed_as.phrase(),
            self.schema
        )?;
        match self.looks_like {
            Some(role) => write!(f, ": it looks like {}", role.phrase())?,
            None => write!(f, ": it is not a dynamo-es table")?,
        }
        write!(
            f,
            " ({} has {}); nothing was read",
            self.passed_as.phrase(),
            self.passed_as.schema()
        )
    }
}

impl std::error::Error for WrongRole {}

/// Describes each table and refuses the first whose key schema does not
/// fit its role. Stops checking (without an error) at the first table that
/// cannot be described.
pub async fn check(client: &Client, tables: &[Table]) -> Result<(), WrongRole> {
    for table in tables {
        let Ok(out) = client.describe_table().table_name(&table.name).send().await else {
            return Ok(());
        };
        let Some(description) = out.table() else {
            continue;
        };
        let key = |key_type: KeyType| {
            description
                .key_schema()
                .iter()
                .find(|k| *k.key_type() == key_type)
                .map(|k| k.attribute_name().to_string())
        };
        let (hash, range) = (key(KeyType::Hash), key(KeyType::Range));
        let found = Role::of(hash.as_deref(), range.as_deref());
        let passed_as = Role::of_kind(table.kind);
        if found != Some(passed_as) {
            let schema = match (&hash, &range) {
                (Some(hash), Some(range)) => format!("HASH {hash}, RANGE {range}"),
                (Some(hash), None) => format!("HASH {hash}"),
                _ => "unknown".to_string(),
            };
            return Err(WrongRole {
                table: table.name.clone(),
                passed_as,
                schema,
                looks_like: found,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_schemas_name_their_role() {
        assert_eq!(
            Role::of(Some("AggregateTypeAndId"), Some("AggregateIdSequence")),
            Some(Role::Events)
        );
        assert_eq!(
            Role::of(Some("AggregateTypeAndId"), None),
            Some(Role::Snapshots)
        );
        assert_eq!(Role::of(Some("ViewId"), None), Some(Role::Views));
        assert_eq!(Role::of(Some("ViewId"), Some("X")), None);
        assert_eq!(Role::of(Some("pk"), None), None);
    }
}
