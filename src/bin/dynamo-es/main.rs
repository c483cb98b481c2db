//! The `dynamo-es` command-line tool: the entry point, one run of a parsed
//! command, and its exit code.
//!
//! `dynamo-es report` measures what moving existing tables to another codec
//! would save, writing nothing; `dynamo-es recode` rewrites them, safely
//! against concurrent writers, resumable from a checkpoint. See
//! [`dynamo_es::recode`] for what exactly is read and written. The modules:
//! `args` the command line, `progress` the progress bars, `output`
//! what a run prints, `projections` `dynamo-es projections status` and `reset`.

mod args;
#[cfg(feature = "compression")]
mod dictionary;
mod output;
mod progress;
mod projections;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use clap::Parser;
use dynamo_es::recode::{RecodeOptions, Recoder, Report, StopHandle};

use crate::args::{Cli, Command, Target, Timeout};
use crate::progress::Bars;

/// The SDK configuration of the clients, like the AWS CLI's: credentials, region and
/// endpoint from the environment and profile, overridden by the flags; the
/// timeouts and attempts of the flags (with their defaults), so a
/// DynamoDB that never answers fails the run instead of holding it.
async fn sdk_config(cli: &Cli) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts(cli))
        .retry_config(RetryConfig::standard().with_max_attempts(cli.max_attempts));
    if let Some(region) = &cli.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint_url) = &cli.endpoint_url {
        loader = loader.endpoint_url(endpoint_url);
    }
    loader.load().await
}

/// The DynamoDB Streams client: its own endpoint if
/// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS` sets one, else DynamoDB's when one
/// is given (a local emulator serves both), else AWS.
fn streams_client(cli: &Cli, config: &aws_config::SdkConfig) -> aws_sdk_dynamodbstreams::Client {
    let mut builder = aws_sdk_dynamodbstreams::config::Builder::from(config);
    let own = std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB_STREAMS").is_some();
    let dynamodb = cli
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok());
    if let (false, Some(url)) = (own, dynamodb) {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_dynamodbstreams::Client::from_conf(builder.build())
}

/// The SDK timeouts of the flags; a zero one is disabled.
fn timeouts(cli: &Cli) -> TimeoutConfig {
    let mut builder = TimeoutConfig::builder();
    builder = match cli.connect_timeout {
        Timeout(Some(d)) => builder.connect_timeout(d),
        Timeout(None) => builder.disable_connect_timeout(),
    };
    builder = match cli.attempt_timeout {
        Timeout(Some(d)) => builder.operation_attempt_timeout(d),
        Timeout(None) => builder.disable_operation_attempt_timeout(),
    };
    builder = match cli.operation_timeout {
        Timeout(Some(d)) => builder.operation_timeout(d),
        Timeout(None) => builder.disable_operation_timeout(),
    };
    builder.build()
}

/// True if `err` or one of its causes is a timeout of the SDK.
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("timeout") || text.contains("timed out") {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Runs a parsed command, prints its report to `out` and its notes to
/// stderr.
async fn execute(
    command: &Command,
    client: Client,
    stop: StopHandle,
    out: &mut dyn Write,
) -> Result<Report, Box<dyn std::error::Error>> {
    let Some((args, dry_run)) = command.run_args() else {
        return Err("not a report or recode".into());
    };
    let checkpoint = command.checkpoint();
    let tables = args.tables();
    let bars = Arc::new(Bars::new(!args.no_progress, &client, &tables).await);
    let mut options = RecodeOptions::default()
        .with_segments(args.segments)
        .with_items_per_second(args.rate)
        .with_page_size(args.page_size)
        .with_allow_growth(args.allow_growth)
        .with_dry_run(dry_run)
        .with_stop(stop);
    if let Some(checkpoint) = checkpoint {
        options = options.with_checkpoint(checkpoint);
    }
    let progress = bars.clone();
    options = options.with_progress(move |p| progress.update(p));
    let recoder = match &args.codec {
        Target::Codec(codec) => Recoder::new(client.clone(), codec.clone()),
        Target::Upstream => Recoder::to_upstream(client.clone()),
    }
    .with_options(options);
    #[cfg(feature = "compression")]
    let recoder = args.dictionaries.apply(recoder, &client, &tables).await?;
    let result = recoder.run(&tables).await;
    bars.clear();
    let report = result?;
    output::print_report(&report, args.json, out)?;
    let run = output::Run {
        target: &args.codec,
        checkpoint,
        dry_run,
        allow_growth: args.allow_growth,
    };
    for note in output::notes(&report, &run) {
        eprintln!("{note}");
    }
    Ok(report)
}

/// 0: done; 3: stopped before the end (resumable); 4: some items could
/// not be decoded and were left as they are; 5: some items could not be
/// converted exactly (or, to `upstream`, made upstream-readable) and were
/// left as they are. (1 is an error, 2 a usage error.)
fn exit_code(report: &Report) -> u8 {
    if !report.complete {
        3
    } else if report.items_unreadable() > 0 {
        4
    } else if report.items_not_convertible() > 0 {
        5
    } else {
        0
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let cli = Cli::parse();
    let config = sdk_config(&cli).await;
    let client = Client::new(&config);
    let stop = StopHandle::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the current pages (Ctrl-C again to abort)...");
            on_signal.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    #[cfg(feature = "compression")]
    if let Command::Dictionary(args) = &cli.command {
        return exit_code_of(dictionary::execute(args, client, &mut std::io::stdout()).await);
    }
    if let Command::Projections(args) = &cli.command {
        let streams = streams_client(&cli, &config);
        return exit_code_of(
            projections::execute(args, client, streams, &mut std::io::stdout()).await,
        );
    }
    match execute(&cli.command, client, stop, &mut std::io::stdout()).await {
        Ok(report) => ExitCode::from(exit_code(&report)),
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            if timed_out(err.as_ref()) {
                eprintln!(
                    "hint: DynamoDB did not answer in time ({}); check the endpoint and the \
                     network, or raise the timeouts",
                    cli.limits()
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a subcommand without a report: success, or failure with
/// its error printed.
fn exit_code_of(result: Result<(), impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn exit_codes_tell_incomplete_and_unreadable_apart() {
        let mut report: Report =
            serde_json::from_str(r#"{"tables": [], "complete": true}"#).unwrap();
        assert_eq!(exit_code(&report), 0);
        report.complete = false;
        assert_eq!(exit_code(&report), 3);
        let table = serde_json::json!({
            "table": "V", "kind": "views", "codec": "json", "dry_run": true, "complete": true,
            "segments": 1, "items_scanned": 2, "items_recoded": 1, "items_skipped": 0,
            "conflicts_skipped": 0, "items_unreadable": 1, "bytes_before": 10, "bytes_after": 9,
            "ratio": 0.9, "wcu_per_rewrite_before": 2, "wcu_per_rewrite_after": 2,
            "rcu_per_load_before": 2, "rcu_per_load_after": 2, "chunked_before": 0,
            "chunked_after": 0, "chunk_items_before": 0, "chunk_items_after": 0,
            "newly_fit": 0, "recode_wcu": 1,
        });
        let mut report: Report =
            serde_json::from_value(serde_json::json!({"tables": [table], "complete": true}))
                .unwrap();
        assert_eq!(exit_code(&report), 4);
        report.complete = false;
        assert_eq!(exit_code(&report), 3);
    }
}
