//! The `dynamo-es` command-line tool: the entry point, one run of a parsed
//! command, and its exit code.
//!
//! `dynamo-es report` measures what moving existing tables to another codec
//! would save, writing nothing; `dynamo-es recode` rewrites them, safely
//! against concurrent writers, resumable from a checkpoint. See
//! [`dynamo_es::recode`] for what exactly is read and written. The modules:
//! `args` the command line, `progress` the progress bars, `output`
//! what a run prints, `errors` how an error is printed, `roles` the check
//! of each table's key schema against its role, `projections`
//! `dynamo-es projections status` and `reset`, `local` `dynamo-es local`,
//! `forget` `dynamo-es forget` (feature `encryption`), `delete`
//! `dynamo-es delete-aggregate`.

mod args;
mod delete;
#[cfg(feature = "compression")]
mod dictionary;
mod errors;
mod feeds;
#[cfg(feature = "encryption")]
mod forget;
mod local;
mod output;
mod progress;
mod projections;
mod roles;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use clap::Parser;
use dynamo_es::recode::{RecodeOptions, Recoder, Report, StopHandle};

use crate::args::{Cli, Command, Target, Timeout};
use crate::errors::Wire;
use crate::progress::Bars;

/// The SDK's crates, whose own warnings (a credentials provider that found
/// nothing, a retry) are printed only with `-v`: the error the tool prints
/// says what went wrong, in its own terms. And the emulator `dynamo-es
/// local` runs, which warns of every error it answers (a table looked up
/// before it is created, a conditional write refused): its clients see them.
const SDK_CRATES: &[&str] = &[
    "dynoxide",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_credential_types",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_smithy_types",
    "aws_sdk_dynamodb",
    "aws_sdk_dynamodbstreams",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_sdk_sts",
    "hyper",
    "hyper_util",
];

/// The log filter: RUST_LOG if set; else warnings of the tool and the
/// library, the SDK's only with `-v`, debug lines with `-vv`.
fn log_filter(verbose: u8) -> tracing_subscriber::EnvFilter {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        return filter;
    }
    let directives = match verbose {
        0 => std::iter::once("warn".to_string())
            .chain(SDK_CRATES.iter().map(|c| format!("{c}=error")))
            .collect::<Vec<_>>()
            .join(","),
        1 => "info".to_string(),
        _ => "debug".to_string(),
    };
    tracing_subscriber::EnvFilter::new(directives)
}

/// The SDK configuration of the clients, like the AWS CLI's: credentials,
/// region and endpoint from the environment and profile, overridden by the
/// flags; the timeouts and attempts of the flags (with their defaults), so
/// a DynamoDB that never answers fails the run instead of holding it.
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

/// The DynamoDB client of `config`; `wire` records where each request went
/// and the status of its answer.
fn client(config: &aws_config::SdkConfig, wire: &Wire) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(config)
        .interceptor(dynamo_es::intercept::Interceptor(wire.clone()))
        .build();
    Client::from_conf(config)
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
    roles::check(&client, &tables).await?;
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
/// left as they are. (1 is an error, 2 a usage error: bad arguments, or a
/// table passed in the wrong role.)
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
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter(cli.verbose))
        .try_init();
    #[cfg(not(feature = "compression"))]
    if let Command::Dictionary { .. } = &cli.command {
        eprintln!("error: {}", args::dictionary_needs_compression());
        return ExitCode::from(2);
    }
    #[cfg(not(feature = "encryption"))]
    if let Command::Forget { .. } = &cli.command {
        eprintln!(
            "error: `dynamo-es forget` needs dynamo-es built with the `encryption` feature; \
             add it to the features of: {}",
            args::INSTALL
        );
        return ExitCode::from(2);
    }
    #[cfg(not(feature = "test-util"))]
    if let Command::Local { .. } = &cli.command {
        eprintln!("error: {}", local::local_needs_test_util());
        return ExitCode::from(2);
    }
    // The emulator needs no AWS configuration, and handles its own signals.
    #[cfg(feature = "test-util")]
    if let Command::Local(args) = &cli.command {
        return match local::execute(args, &mut std::io::stdout()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let wire = Wire::default();
    let config = sdk_config(&cli).await;
    let client = client(&config, &wire);
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
        let result = dictionary::execute(args, client, &mut std::io::stdout()).await;
        return exit_code_of(result, &wire);
    }
    #[cfg(feature = "encryption")]
    if let Command::Forget(args) = &cli.command {
        let result = forget::execute(args, client, &mut std::io::stdout()).await;
        return exit_code_of(result, &wire);
    }
    if let Command::DeleteAggregate(args) = &cli.command {
        let result = delete::execute(args, client, &mut std::io::stdout()).await;
        return exit_code_of(result, &wire);
    }
    if let Command::BackfillSlices(args) = &cli.command {
        let result = feeds::backfill(args, client, &mut std::io::stdout()).await;
        return exit_code_of(result, &wire);
    }
    if let Command::Projections(args) = &cli.command {
        // Streams on DynamoDB's endpoint unless it has one of its own.
        let streams = dynamo_es::Clients::from_config(&config).streams;
        let result = projections::execute(args, client, streams, &mut std::io::stdout()).await;
        return exit_code_of(result, &wire);
    }
    match execute(&cli.command, client, stop, &mut std::io::stdout()).await {
        Ok(report) => ExitCode::from(exit_code(&report)),
        Err(err) if err.is::<roles::WrongRole>() => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            for line in errors::lines(err.as_ref(), &wire) {
                eprintln!("{line}");
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
fn exit_code_of(result: Result<(), Box<dyn std::error::Error>>, wire: &Wire) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            for line in errors::lines(err.as_ref(), wire) {
                eprintln!("{line}");
            }
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
