//! `dynamo-es local`: the embedded DynamoDB emulator (dynoxide) as a
//! process, serving DynamoDB and DynamoDB Streams on one local endpoint
//! until Ctrl-C or SIGTERM, for a program, a projector or this tool to run
//! against. The serving is the library's
//! ([`dynamo_es::testing::local`], feature `test-util`); this prints what
//! to export and waits.
//!
//! **Invariant:** the `export` lines are printed only once the server
//! listens and the tables asked for exist, so whatever reads them can use
//! the endpoint at once.

#[cfg(feature = "test-util")]
use std::io::Write;
#[cfg(feature = "test-util")]
use std::path::PathBuf;

#[cfg(feature = "test-util")]
use clap::Args;

/// `dynamo-es local`.
#[cfg(feature = "test-util")]
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The port to serve on, on 127.0.0.1; 0 picks a free one (the endpoint
    /// printed names it).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Keep the tables and items in this SQLite file (created if missing,
    /// reopened by the next run). Without it they are in memory and gone
    /// when the emulator stops.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Create the events table (with its NEW_IMAGE stream, for
    /// projections) and the snapshots table before printing the
    /// environment; tables that exist are checked and kept.
    #[arg(long)]
    pub create_tables: bool,
    /// The events table --create-tables creates.
    #[arg(long, value_name = "TABLE", default_value = "Events")]
    pub events_table: String,
    /// The snapshots table --create-tables creates.
    #[arg(long, value_name = "TABLE", default_value = "Snapshots")]
    pub snapshots_table: String,
}

/// Serves until Ctrl-C or SIGTERM, printing the endpoint and the
/// environment to `out`.
#[cfg(feature = "test-util")]
pub async fn execute(
    args: &LocalArgs,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    use dynamo_es::testing::local::LocalDynamo;

    let local = LocalDynamo::start(args.port, args.db.as_deref())
        .map_err(|err| port_hint(err, args.port))?;
    writeln!(
        out,
        "DynamoDB and DynamoDB Streams emulator (dynoxide) listening on {}",
        local.endpoint()
    )?;
    match local.database() {
        Some(path) => writeln!(out, "data in {} (kept between runs)", path.display())?,
        None => writeln!(
            out,
            "data in memory (gone when it stops; --db FILE keeps it between runs)"
        )?,
    }
    if args.create_tables {
        let created = local
            .create_tables(&args.events_table, &args.snapshots_table)
            .await
            .map_err(|err| {
                format!(
                    "creating tables {} and {} on the emulator at {}: {err}",
                    args.events_table,
                    args.snapshots_table,
                    local.endpoint()
                )
            })?;
        writeln!(
            out,
            "tables {} (stream {created}) and {} are ready",
            args.events_table, args.snapshots_table
        )?;
    }
    writeln!(
        out,
        "point the AWS SDKs, the AWS CLI and dynamo-es at it (in another shell):"
    )?;
    for (name, value) in local.environment() {
        writeln!(out, "export {name}={value}")?;
    }
    writeln!(out, "Ctrl-C stops it")?;
    out.flush()?;
    stopped().await;
    eprintln!("stopping the emulator at {}", local.endpoint());
    local.shut_down().await;
    Ok(())
}

/// A port already in use, in the terms of the flags.
#[cfg(feature = "test-util")]
fn port_hint(err: dynamo_es::Error, port: u16) -> Box<dyn std::error::Error> {
    match &err {
        dynamo_es::Error::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse => format!(
            "{err}\nhint: port {port} is taken: stop what listens there, or pass --port 0 (a \
             free port, printed) or --port N"
        )
        .into(),
        _ => err.into(),
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
#[cfg(feature = "test-util")]
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// What `dynamo-es local` says in a build without `test-util`.
#[cfg(not(feature = "test-util"))]
pub fn local_needs_test_util() -> String {
    format!(
        "`dynamo-es local` needs dynamo-es built with the `test-util` feature (the embedded \
         emulator); install it with: {}",
        crate::args::INSTALL
    )
}
