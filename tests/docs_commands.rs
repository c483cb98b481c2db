//! Every shell command the README and the guide show (their ```sh blocks)
//! is one CI runs or this test checks:
//!
//! * `dynamo-es <subcommand> ...`: the subcommand exists and takes every
//!   `--flag` shown, by the built binary's own `<subcommand> --help`;
//! * `cargo ...`: a command `.ci/run` runs, or one named here and checked
//!   (`cargo install` of this repository with features it has, the fuzz
//!   targets `fuzz/Cargo.toml` declares);
//! * `cargo lambda build --example NAME --features LIST`: an example of the
//!   manifest whose required features LIST has;
//! * `sam deploy` / `sam local invoke`: a SAM template that exists, the
//!   parameters and the function it declares, an event file that exists;
//! * anything else: a file that exists (`bash .ci/run`, `docker compose` with
//!   `docker-compose.yml`), or a fuzzing step named here.
//!
//! A command no rule knows fails the test: add a rule (and a check) before
//! documenting a new kind of command.
#![cfg(feature = "cli")]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The README and every guide chapter.
fn documents() -> Vec<String> {
    let mut documents = vec!["README.md".to_string()];
    let mut chapters: Vec<String> = std::fs::read_dir(root().join("docs/guide"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".md").then(|| format!("docs/guide/{name}"))
        })
        .collect();
    chapters.sort();
    documents.extend(chapters);
    documents
}

/// One command of a ```sh block: where it is shown, the directory it runs
/// in (after the block's `cd`s, relative to the crate root), its words.
#[derive(Debug, Clone)]
struct Shown {
    document: String,
    dir: PathBuf,
    words: Vec<String>,
}

impl Shown {
    fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// The words of a shell line, with quotes removed and `[...]` (an optional
/// part) unwrapped; a `#` starting a word begins a comment.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, '#') if !started => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
        .into_iter()
        .map(|word| {
            word.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

/// The words of a command line, without its `VAR=value` prefixes.
fn command_words(line: &str) -> Vec<String> {
    let mut words = words(line);
    let assignments = words
        .iter()
        .take_while(|word| word.contains('=') && !word.starts_with('-'))
        .count();
    words.drain(..assignments);
    words
}

/// Every command of every ```sh block of `document`: continuation lines
/// joined, comments and `VAR=value` prefixes dropped, `cd` followed.
fn commands_of(document: &str) -> Vec<Shown> {
    let mut shown = Vec::new();
    let mut in_sh = false;
    let mut dir = PathBuf::new();
    let mut pending = String::new();
    for line in read(document).lines() {
        if let Some(info) = line.strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
            dir = PathBuf::new();
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let words = command_words(&std::mem::take(&mut pending));
        match words.first().map(String::as_str) {
            None => {}
            Some("cd") => {
                let to = dir.join(&words[1]);
                assert!(
                    root().join(&to).is_dir(),
                    "{document}: `cd {}`: no such directory",
                    to.display()
                );
                dir = to;
            }
            Some(_) => shown.push(Shown {
                document: document.to_string(),
                dir: dir.clone(),
                words,
            }),
        }
    }
    shown
}

fn all_commands() -> Vec<Shown> {
    documents().iter().flat_map(|d| commands_of(d)).collect()
}

/// The quoted strings of a shell line (`"a" "b c"` -> `a`, `b c`).
fn quoted(line: &str) -> Vec<String> {
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `line` without the environment assignments before its command
/// (`SIM_SEEDS=24 cargo test` -> `cargo test`); other lines as they are.
fn without_environment(line: &str) -> &str {
    let mut rest = line;
    while let Some((word, tail)) = rest.split_once(' ') {
        let is_assignment = word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        });
        if !is_assignment || !tail.trim_start().starts_with("cargo ") && !tail.contains('=') {
            break;
        }
        rest = tail.trim_start();
    }
    rest
}

/// The cargo commands `.ci/run` runs, loops over feature sets expanded.
fn ci_cargo_commands() -> Vec<String> {
    let ci = read(".ci/run");
    let mut known = Vec::new();
    let mut loop_values: Vec<String> = Vec::new();
    for line in ci.lines().map(str::trim).map(without_environment) {
        if let Some(rest) = line
            .strip_prefix("DEMO_CMD=")
            .or_else(|| line.strip_prefix("TEST_CMD="))
        {
            known.push(rest.trim_matches('\'').to_string());
        } else if let Some(rest) = line.strip_prefix("for features in ") {
            loop_values = quoted(rest.split(';').next().unwrap_or_default());
        } else if line == "done" {
            loop_values.clear();
        } else if line.starts_with("cargo ") && line.contains("$features") {
            for features in &loop_values {
                known.push(words(&line.replace("$features", features)).join(" "));
            }
        } else if line.starts_with("cargo ") {
            known.push(words(line).join(" "));
        }
    }
    assert!(
        known.contains(&"cargo test --all-features".to_string())
            && known.contains(&"cargo test --features msgpack".to_string()),
        ".ci/run was read: {known:?}"
    );
    known
}

/// The `[[bin]]` names of `fuzz/Cargo.toml`: the fuzz targets.
fn fuzz_targets() -> Vec<String> {
    read("fuzz/Cargo.toml")
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| {
            let name = bin.lines().find_map(|l| l.trim().strip_prefix("name = "))?;
            Some(name.trim_matches('"').to_string())
        })
        .collect()
}

/// The `[features]` of this crate's manifest.
fn features() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split_once("[features]\n")
        .unwrap()
        .1
        .split_once("\n[")
        .unwrap()
        .0;
    section
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(name, _)| name.to_string()))
        .collect()
}

/// Why `command` is not a known, checked command, if it is not.
fn check(command: &Shown, ci: &[String]) -> Result<(), String> {
    let w: Vec<&str> = command.words.iter().map(String::as_str).collect();
    let in_fuzz = command.dir == Path::new("fuzz");
    let fuzz_target = |name: &str| {
        if fuzz_targets().iter().any(|t| t == name) {
            Ok(())
        } else {
            Err(format!("{name} is not a fuzz target of fuzz/Cargo.toml"))
        }
    };
    match w.as_slice() {
        ["dynamo-es", ..] => check_cli(&command.words[1..]),
        ["cargo", "install", "--git", url, "dynamo-es", "--features", list] => {
            let repository = format!("repository = \"{url}\"");
            if !read("Cargo.toml").contains(&repository) {
                return Err(format!("{url} is not this crate's repository"));
            }
            let known = features();
            match list.split(',').find(|f| !known.iter().any(|k| k == f)) {
                Some(unknown) => Err(format!("no feature {unknown}")),
                None if !list.split(',').any(|f| f == "cli") => {
                    Err("the binary needs feature cli".into())
                }
                None => Ok(()),
            }
        }
        ["cargo", "install", "cargo-fuzz"] if !in_fuzz => Ok(()),
        ["cargo", "+nightly", "fuzz", "run" | "tmin", target, ..] if in_fuzz => fuzz_target(target),
        ["cargo", "build", "--release", "--bins", "--target", "x86_64-unknown-linux-gnu"]
            if in_fuzz =>
        {
            Ok(())
        }
        ["cargo", "lambda", "build", flags @ ..] if command.dir.as_os_str().is_empty() => {
            check_lambda_build(flags)
        }
        ["cargo", ..] if command.dir.as_os_str().is_empty() => {
            if ci.contains(&command.text()) {
                Ok(())
            } else {
                Err("a cargo command .ci/run does not run".into())
            }
        }
        ["db/create_tables.sh", flags @ ..] if command.dir.as_os_str().is_empty() => {
            // Every flag shown is one the script's usage names (the script
            // itself runs in tests/projection_tables.rs).
            let usage = read("db/create_tables.sh");
            match flags
                .iter()
                .filter(|flag| flag.starts_with("--"))
                .find(|flag| !usage.contains(&format!("    {flag})")))
            {
                Some(flag) => Err(format!("db/create_tables.sh takes no {flag}")),
                None => Ok(()),
            }
        }
        ["bash", script] if command.dir.as_os_str().is_empty() => {
            if root().join(script).is_file() {
                Ok(())
            } else {
                Err(format!("no script {script}"))
            }
        }
        ["sam", "deploy", flags @ ..] if command.dir.as_os_str().is_empty() => {
            check_sam(None, flags)
        }
        ["sam", "local", "invoke", function, flags @ ..] if command.dir.as_os_str().is_empty() => {
            check_sam(Some(function), flags)
        }
        ["docker", "compose", "up", "-d", "--wait"] | ["docker", "compose", "down"] => {
            if root().join("docker-compose.yml").is_file() {
                Ok(())
            } else {
                Err("no docker-compose.yml".into())
            }
        }
        ["mkdir", "-p", dirs @ ..] if in_fuzz => {
            match dirs
                .iter()
                .find(|d| !d.starts_with("corpus/") && !d.starts_with("artifacts/"))
            {
                Some(other) => Err(format!("mkdir {other}: not a fuzzing directory")),
                None => Ok(()),
            }
        }
        [binary, ..]
            if in_fuzz && binary.starts_with("target/x86_64-unknown-linux-gnu/release/") =>
        {
            fuzz_target(binary.rsplit('/').next().unwrap_or_default())
        }
        _ => Err("no rule checks this command".into()),
    }
}

/// The value after `flag` in `flags`, if given.
fn flag_value<'a>(flags: &[&'a str], flag: &str) -> Option<&'a str> {
    let at = flags.iter().position(|f| *f == flag)?;
    flags.get(at + 1).copied()
}

/// Whether every `--flag` of `flags` is one of `known`.
fn known_flags(flags: &[&str], known: &[&str]) -> Result<(), String> {
    match flags
        .iter()
        .find(|f| f.starts_with("--") && !known.contains(f))
    {
        Some(unknown) => Err(format!("{unknown} is not a flag this check knows")),
        None => Ok(()),
    }
}

/// `cargo lambda build ... --example NAME --features LIST`: the manifest
/// declares example NAME, and LIST has every feature it requires.
fn check_lambda_build(flags: &[&str]) -> Result<(), String> {
    known_flags(
        flags,
        &[
            "--release",
            "--arm64",
            "--x86-64",
            "--example",
            "--features",
        ],
    )?;
    let example = flag_value(flags, "--example").ok_or("no --example")?;
    let manifest = read("Cargo.toml");
    let declared = manifest
        .split("[[example]]")
        .skip(1)
        .find(|section| section.contains(&format!("name = \"{example}\"")))
        .ok_or_else(|| format!("Cargo.toml declares no example {example}"))?;
    let features: Vec<&str> = flag_value(flags, "--features")
        .unwrap_or_default()
        .split(',')
        .collect();
    let required = declared
        .lines()
        .find_map(|line| line.strip_prefix("required-features = "))
        .unwrap_or("[]");
    let missing: Vec<&str> = required
        .trim_matches(['[', ']'])
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .filter(|f| !f.is_empty() && !features.contains(f))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("example {example} requires features {missing:?}"))
    }
}

/// `sam deploy` / `sam local invoke FUNCTION`: `--template-file` is a SAM
/// template of this repository declaring FUNCTION and every parameter of
/// `--parameter-overrides`, and `--event` a file that exists.
fn check_sam(function: Option<&str>, flags: &[&str]) -> Result<(), String> {
    known_flags(
        flags,
        &[
            "--template-file",
            "--stack-name",
            "--resolve-s3",
            "--capabilities",
            "--parameter-overrides",
            "--event",
        ],
    )?;
    let path = flag_value(flags, "--template-file").ok_or("no --template-file")?;
    let template = std::fs::read_to_string(root().join(path))
        .map_err(|err| format!("template {path}: {err}"))?;
    if !template.contains("Transform: AWS::Serverless-2016-10-31") {
        return Err(format!("{path} is not a SAM template"));
    }
    let declares = |name: &str| template.contains(&format!("\n  {name}:\n"));
    if let Some(function) = function.filter(|f| !declares(f)) {
        return Err(format!("{path} declares no {function}"));
    }
    if let Some(overrides) = flag_value(flags, "--parameter-overrides") {
        for name in overrides
            .split(' ')
            .filter_map(|p| p.split_once('='))
            .map(|(n, _)| n)
        {
            if !declares(name) {
                return Err(format!("{path} has no parameter {name}"));
            }
        }
    }
    match flag_value(flags, "--event") {
        Some(event) if !root().join(event).is_file() => Err(format!("no event file {event}")),
        _ => Ok(()),
    }
}

/// Whether `dynamo-es <args>` names a subcommand that exists and takes
/// every `--flag` of `args`, by the binary's `--help`.
fn check_cli(args: &[String]) -> Result<(), String> {
    let path: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .take_while(|word| !word.starts_with('-'))
        .collect();
    if path.first() == Some(&"dictionary") && !cfg!(feature = "compression") {
        // Only a build with `compression` has the subcommand.
        return Ok(());
    }
    if path.first() == Some(&"local") && !cfg!(feature = "test-util") {
        // Only a build with `test-util` has the subcommand.
        return Ok(());
    }
    let output = Command::new(env!("CARGO_BIN_EXE_dynamo-es"))
        .args(&path)
        .arg("--help")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .output()
        .map_err(|err| format!("running dynamo-es: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "`dynamo-es {} --help` failed: {}",
            path.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in args.iter().filter(|word| word.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or_default();
        let taken = help.match_indices(flag).any(|(at, _)| {
            help[at + flag.len()..]
                .chars()
                .next()
                .is_none_or(|next| !(next.is_alphanumeric() || next == '-' || next == '_'))
        });
        if !taken {
            return Err(format!("`dynamo-es {}` has no flag {flag}", path.join(" ")));
        }
    }
    Ok(())
}

#[test]
fn every_shell_command_shown_is_run_in_ci_or_checked() {
    let ci = ci_cargo_commands();
    let commands = all_commands();
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|command| {
            check(command, &ci)
                .err()
                .map(|why| format!("{}: `{}`: {why}", command.document, command.text()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The blocks were read: the two fresh-machine commands, and the CLI's.
    let texts: Vec<String> = commands.iter().map(Shown::text).collect();
    for expected in [
        "cargo run --all-features --example demo",
        "cargo test --all-features",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected} in {texts:?}"
        );
    }
    for subcommand in [
        "report",
        "recode",
        "projections status",
        "dictionary train",
        "local",
    ] {
        let shown = format!("dynamo-es {subcommand} ");
        assert!(
            texts.iter().any(|t| t.starts_with(&shown)),
            "no {shown}... in {texts:?}"
        );
    }
}

#[test]
fn the_check_refuses_what_the_cli_or_ci_does_not_have() {
    let ci = ci_cargo_commands();
    let shown = |line: &str| Shown {
        document: "test".into(),
        dir: PathBuf::new(),
        words: command_words(line),
    };
    // Each command the check must refuse, next to the one it accepts where
    // there is one.
    let (refused, accepted) = (false, true);
    for (line, passes) in [
        ("dynamo-es report --events-table Events --no-such-flag", refused),
        ("dynamo-es repport --events-table Events", refused),
        (
            "dynamo-es report --events-table Events --snapshots-table Snapshots --codec json",
            accepted,
        ),
        (
            "dynamo-es projections status --checkpoint-table Checkpoints --projection p --events",
            refused,
        ),
        ("cargo test --all-features --release", refused),
        ("AWS_ENDPOINT_URL_DYNAMODB=http://localhost:8000 cargo test --all-features", accepted),
        ("cargo test --features compression # a comment", accepted),
        ("cargo install dynamo-es --features cli,compression", refused),
        (
            "cargo install --git https://github.com/dynamo-es/dynamo-es dynamo-es --features cli,zstd",
            refused,
        ),
        ("rm -rf target", refused),
        ("dynamo-es local --no-such-flag", refused),
        ("dynamo-es local --port 0 --db local.sqlite --create-tables", accepted),
        ("db/create_tables.sh --no-such-flag 3", refused),
        ("db/create_tables.sh --slices 64", accepted),
        ("cargo lambda build --release --example no_such_example --features lambda", refused),
        ("cargo lambda build --release --arm64 --example lambda_projection", refused),
        (
            "cargo lambda build --release --arm64 --example lambda_projection --features lambda",
            accepted,
        ),
        ("sam local invoke NoSuchFunction --template-file db/lambda_projection.yaml", refused),
        ("sam deploy --template-file db/dynamo_db.yaml --stack-name s", refused),
        (
            "sam deploy --template-file db/lambda_projection.yaml --parameter-overrides Nope=1",
            refused,
        ),
        (
            "sam local invoke ProjectionFunction --template-file db/lambda_projection.yaml \
             --event tests/fixtures/missing.json",
            refused,
        ),
        (
            "sam local invoke ProjectionFunction --template-file db/lambda_projection.yaml \
             --event tests/fixtures/lambda_stream_event.json",
            accepted,
        ),
    ] {
        let verdict = check(&shown(line), &ci);
        assert_eq!(verdict.is_ok(), passes, "{line}: {verdict:?}");
    }
}
