//! The embedded emulator served to other processes, as `dynamo-es local`
//! runs it: your program, the projector, the AWS CLI and `dynamo-es` itself
//! talk to it like to DynamoDB, with no Docker and no AWS account.
//!
//! [`LocalDynamo`] runs [dynoxide] on `127.0.0.1:PORT` (in memory, or on a
//! SQLite file that a later run reopens) and serves DynamoDB and DynamoDB
//! Streams on that one endpoint. [`LocalDynamo::environment`] lists the
//! variables that point the AWS SDKs (and so this crate and the AWS CLI)
//! at it.
//!
//! ```no_run
//! # async fn demo() -> dynamo_es::Result<()> {
//! use dynamo_es::testing::local::LocalDynamo;
//!
//! let local = LocalDynamo::start(0, None)?; // 0: any free port
//! let stream_arn = local.create_tables("Events", "Snapshots").await?;
//! for (name, value) in local.environment() {
//!     println!("export {name}={value}");
//! }
//! local.shut_down().await;
//! # Ok(()) }
//! ```
//!
//! **Invariant:** it listens on the loopback interface only, and the
//! environment it prints names the endpoint it actually listens on (the
//! port picked, with port 0).
//!
//! [dynoxide]: https://crates.io/crates/dynoxide-rs

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::Client;

use super::{client_for, EmbeddedDynamo};
use crate::error::{Error, Result};
use crate::tables::{create_event_tables_with, enable_stream, TableOptions};

/// The port `dynamo-es local` serves on unless told otherwise: DynamoDB
/// Local's.
pub const DEFAULT_PORT: u16 = 8000;

/// The region the printed environment names (the emulator serves any).
pub const REGION: &str = "us-east-1";

/// The access key id and secret the printed environment names: the
/// emulator checks that requests are signed, not by whom.
pub const CREDENTIALS: &str = "local";

/// The emulator, serving DynamoDB and DynamoDB Streams on
/// `http://127.0.0.1:PORT` until it is stopped (or dropped).
#[derive(Debug)]
pub struct LocalDynamo {
    server: EmbeddedDynamo,
    database: Option<PathBuf>,
}

impl LocalDynamo {
    /// Starts serving on `127.0.0.1:port` (`0` picks a free port; see
    /// [`endpoint`](Self::endpoint)), on the SQLite file `database`
    /// (created if missing; its tables and items are there again on the
    /// next start), or in memory without one.
    ///
    /// A port in use is an [`Error::Io`] of kind `AddrInUse` that says so.
    pub fn start(port: u16, database: Option<&Path>) -> Result<Self> {
        let bind = format!("127.0.0.1:{port}");
        let server = EmbeddedDynamo::start_on(database, &bind).map_err(|err| match err {
            Error::Io(err) if err.kind() == ErrorKind::AddrInUse => Error::Io(std::io::Error::new(
                ErrorKind::AddrInUse,
                format!(
                    "{err}: another server listens there (DynamoDB Local, or another \
                     emulator); stop it, or serve on another port (0 picks a free one)"
                ),
            )),
            err => err,
        })?;
        Ok(LocalDynamo {
            server,
            database: database.map(Path::to_path_buf),
        })
    }

    /// The endpoint, `http://127.0.0.1:PORT`, of DynamoDB and of DynamoDB
    /// Streams alike.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// The port it listens on (the one picked, if started with `0`).
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// The SQLite file holding the data, or `None` in memory.
    pub fn database(&self) -> Option<&Path> {
        self.database.as_deref()
    }

    /// The environment variables that point the AWS SDKs at it, in the
    /// order to print them: `AWS_ENDPOINT_URL_DYNAMODB` and
    /// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS` (a Streams client built from the
    /// same SDK configuration would otherwise go to AWS), `AWS_REGION`, and
    /// dummy `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let endpoint = self.endpoint();
        vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.clone()),
            ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", endpoint),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", CREDENTIALS.to_string()),
            ("AWS_SECRET_ACCESS_KEY", CREDENTIALS.to_string()),
        ]
    }

    /// A DynamoDB client for it (see [`client_for`]).
    pub fn client(&self) -> Client {
        client_for(&self.endpoint())
    }

    /// A DynamoDB Streams client for it (see
    /// [`streams::client_for`](super::streams::client_for)).
    pub fn streams_client(&self) -> aws_sdk_dynamodbstreams::Client {
        super::streams::client_for(&self.endpoint())
    }

    /// Creates the events table `events` with a `NEW_IMAGE` stream (for
    /// projections) and the snapshots table `snapshots`, as
    /// [`create_event_tables_with`] does (existing tables are checked and
    /// kept), and returns the stream's ARN.
    pub async fn create_tables(&self, events: &str, snapshots: &str) -> Result<String> {
        let client = self.client();
        let options = TableOptions::default().with_stream(true);
        create_event_tables_with(&client, events, snapshots, options).await?;
        enable_stream(&client, events).await
    }

    /// Stops serving (open connections are cut) and waits for the server's
    /// thread, on a blocking task.
    pub async fn shut_down(self) {
        self.server.shut_down().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn it_serves_both_apis_on_the_port_it_prints_and_refuses_a_port_in_use() {
        let local = LocalDynamo::start(0, None).unwrap();
        let port = local.port();
        assert_ne!(port, 0, "a port was picked");
        let endpoint = format!("http://127.0.0.1:{port}");
        assert_eq!(local.endpoint(), endpoint);
        let environment = local.environment();
        assert_eq!(
            environment[0],
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.clone())
        );
        assert_eq!(
            environment[1],
            ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", endpoint)
        );

        let arn = local.create_tables("Events", "Snapshots").await.unwrap();
        let described = local
            .streams_client()
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .unwrap();
        assert!(described.stream_description.is_some());
        // Twice is fine: the tables are checked and kept.
        assert_eq!(
            local.create_tables("Events", "Snapshots").await.unwrap(),
            arn
        );

        let err = LocalDynamo::start(port, None).unwrap_err();
        let Error::Io(io) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(io.kind(), ErrorKind::AddrInUse);
        let message = err.to_string();
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(message.contains("another port"), "{message}");
        local.shut_down().await;
    }
}
