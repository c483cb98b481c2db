//! Which table a checkpoint belongs to: where the table is served, and which
//! incarnation of it.
//!
//! A checkpoint file names its tables only by name, and a name says nothing
//! of where the table lives: the same `recode.json` run against another
//! endpoint, another region or account, or a table deleted and created
//! again would resume (or, finished, report) progress made on another
//! table. So a checkpoint records, per table, a [`TableIdentity`] when the
//! table starts, and a run is refused when the table it reaches is not
//! that one.
//!
//! The endpoint is the endpoint URL the client was configured with (none
//! for AWS's own regional endpoints, which the region decides): the SDK
//! keeps it in the endpoint parameters of each request, read here from the
//! `DescribeTable` call that also gives the table's ARN (its region and
//! account), its id (a new one for every table created, even under the same
//! name) and its creation time.

use std::fmt;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::endpoint::Params;
use aws_sdk_dynamodb::config::http::HttpRequest;
use aws_sdk_dynamodb::config::ConfigBag;
use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::endpoint::EndpointResolverParams;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::intercept::{Hooked, Hooks, Interceptor};

/// What a table in a checkpoint is: where it is served, and which
/// incarnation of it. A field the endpoint does not give is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TableIdentity {
    /// The endpoint URL the client was configured with, `None` for AWS's
    /// own endpoint of the region.
    pub endpoint: Option<String>,
    /// The client's region.
    pub region: Option<String>,
    /// `TableArn`: its region, account and name.
    pub arn: Option<String>,
    /// `TableId`: a new one for every table created.
    pub table_id: Option<String>,
    /// `CreationDateTime`, in RFC 3339.
    pub created: Option<String>,
}

impl TableIdentity {
    /// The identity of `table` as `client` reaches it (one `DescribeTable`).
    pub async fn of(client: &Client, table: &str) -> Result<Self> {
        let seen = SeenEndpoint::default();
        let out = client
            .describe_table()
            .table_name(table)
            .customize()
            .interceptor(Interceptor(seen.clone()))
            .send()
            .await
            .map_err(|err| Error::from_sdk_on("DescribeTable", table, err))?;
        let Seen { endpoint, region } = seen.get();
        let description = out.table();
        Ok(TableIdentity {
            endpoint,
            region: region.or_else(|| client.config().region().map(|r| r.to_string())),
            arn: description.and_then(|t| t.table_arn()).map(str::to_string),
            table_id: description.and_then(|t| t.table_id()).map(str::to_string),
            created: description
                .and_then(|t| t.creation_date_time())
                .map(timestamp),
        })
    }

    /// What differs from `found`, field by field (empty if nothing does).
    pub fn differences(&self, found: &TableIdentity) -> Vec<String> {
        let fields = [
            ("endpoint", &self.endpoint, &found.endpoint),
            ("region", &self.region, &found.region),
            ("table ARN", &self.arn, &found.arn),
            ("table id", &self.table_id, &found.table_id),
            ("creation time", &self.created, &found.created),
        ];
        fields
            .into_iter()
            .filter(|(_, stored, found)| stored != found)
            .map(|(name, stored, found)| {
                format!(
                    "{name} {} in the checkpoint, {} now",
                    Shown(stored),
                    Shown(found)
                )
            })
            .collect()
    }
}

#[cfg(test)]
impl TableIdentity {
    /// Table `T` of account `000000000000` on a local endpoint, for tests.
    pub(super) fn example() -> Self {
        TableIdentity {
            endpoint: Some("http://127.0.0.1:8000".into()),
            region: Some("us-east-1".into()),
            arn: Some("arn:aws:dynamodb:us-east-1:000000000000:table/T".into()),
            table_id: Some("6a1c".into()),
            created: Some("2025-01-02T03:04:05Z".into()),
        }
    }
}

/// An optional field as the error message shows it.
struct Shown<'a>(&'a Option<String>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => f.write_str(value),
            None => f.write_str("(none)"),
        }
    }
}

/// `time` in RFC 3339, or as seconds since the epoch if it has no such form.
fn timestamp(time: &DateTime) -> String {
    time.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| format!("{}.{:09}", time.secs(), time.subsec_nanos()))
}

/// `url` without a trailing `/`, so `http://host:8000/` and
/// `http://host:8000` are the same endpoint.
fn normalized(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The configured endpoint URL and region of a request.
#[derive(Debug, Clone, Default)]
struct Seen {
    endpoint: Option<String>,
    region: Option<String>,
}

/// Records the [`Seen`] endpoint of the first attempt of the request it is
/// attached to, from the SDK's endpoint parameters.
#[derive(Debug, Clone, Default)]
struct SeenEndpoint(Arc<Mutex<Option<Seen>>>);

impl SeenEndpoint {
    /// What was seen (nothing if no request was about to be sent).
    fn get(&self) -> Seen {
        self.0
            .lock()
            .ok()
            .and_then(|seen| seen.clone())
            .unwrap_or_default()
    }
}

impl Hooks for SeenEndpoint {
    const NAME: &'static str = "dynamo_es::recode::SeenEndpoint";

    fn read_request(&self, _: &HttpRequest, cfg: &mut ConfigBag) -> Hooked {
        let params = cfg
            .load::<EndpointResolverParams>()
            .and_then(|params| params.get::<Params>());
        if let (Some(params), Ok(mut seen)) = (params, self.0.lock()) {
            seen.get_or_insert_with(|| Seen {
                endpoint: params.endpoint().map(normalized),
                region: params.region().map(str::to_string),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_field_that_differs() {
        assert!(TableIdentity::example()
            .differences(&TableIdentity::example())
            .is_empty());
        let recreated = TableIdentity {
            table_id: Some("9f2e".into()),
            created: None,
            ..TableIdentity::example()
        };
        assert_eq!(
            TableIdentity::example().differences(&recreated),
            vec![
                "table id 6a1c in the checkpoint, 9f2e now".to_string(),
                "creation time 2025-01-02T03:04:05Z in the checkpoint, (none) now".to_string(),
            ]
        );
        assert_eq!(normalized("http://h:1/"), "http://h:1");
        assert_eq!(
            timestamp(&DateTime::from_secs(1_735_787_045)),
            "2025-01-02T03:04:05Z"
        );
    }
}
