//! Running the built `dynamo-es` binary in tests.
//!
//! Invariant: the binary is configured only through the environment, as
//! aws-config reads it: test credentials and region, no instance metadata,
//! and no endpoint but the one a run names.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::process::Output;

use tokio::process::Command;

/// The built binary with test credentials and region, no instance
/// metadata and no endpoint: add arguments, an endpoint and pipes.
pub fn cli_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dynamo-es"));
    command
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Runs the binary with `args` against DynamoDB at `endpoint`.
pub async fn cli_at(args: &[impl AsRef<OsStr>], endpoint: &str) -> Output {
    cli_command()
        .args(args)
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .output()
        .await
        .unwrap()
}

/// Runs the binary with `args` against the embedded emulator.
pub async fn cli(args: &[impl AsRef<OsStr>]) -> Output {
    cli_at(args, &dynamo_es::testing::endpoint().unwrap()).await
}

/// The arguments of `dynamo-es projections <verb>` for `projection` in the
/// checkpoint table `table`; add more with `extend`.
pub fn projections_args<'a>(verb: &'a str, table: &'a str, projection: &'a str) -> Vec<&'a str> {
    vec![
        "projections",
        verb,
        "--checkpoint-table",
        table,
        "--projection",
        projection,
    ]
}
