//! How the tool prints an error: in the terms of its flags and environment
//! variables, each cause once, and naming the endpoint it talked to and the
//! HTTP status of the last answer.
//!
//! **Invariant:** the library's messages are not changed at their source
//! (they speak to Rust callers); only their printing here is translated
//! ([`for_the_cli`]), and a cause is printed only when its text is not
//! already part of a line printed before it.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::http::{HttpRequest, HttpResponse};
use aws_sdk_dynamodb::config::ConfigBag;
use dynamo_es::intercept::{Hooked, Hooks};

/// Where the last request went and what came back, as the client saw it.
#[derive(Debug, Default)]
struct Seen {
    /// `scheme://host[:port]` of the last request sent.
    endpoint: Option<String>,
    /// The HTTP status of the last response received.
    status: Option<u16>,
}

/// Records the endpoint and the HTTP status of each request the DynamoDB
/// client sends (an interceptor), for the error lines.
#[derive(Debug, Clone, Default)]
pub struct Wire(Arc<Mutex<Seen>>);

impl Wire {
    /// `DynamoDB at URL (last answer: HTTP N)`, if a request was sent.
    fn describe(&self) -> Option<String> {
        let seen = self.0.lock().ok()?;
        let endpoint = seen.endpoint.as_ref()?;
        Some(match seen.status {
            Some(status) => format!("DynamoDB endpoint {endpoint} (last answer: HTTP {status})"),
            None => format!("DynamoDB endpoint {endpoint} (no HTTP answer)"),
        })
    }
}

impl Hooks for Wire {
    const NAME: &'static str = "dynamo-es CLI: endpoint and status for error messages";

    fn read_request(&self, request: &HttpRequest, _: &mut ConfigBag) -> Hooked {
        if let Ok(mut seen) = self.0.lock() {
            seen.endpoint = Some(origin(request.uri()).to_string());
            seen.status = None;
        }
        Ok(())
    }

    fn read_response(&self, response: &HttpResponse, _: &mut ConfigBag) -> Hooked {
        if let Ok(mut seen) = self.0.lock() {
            seen.status = Some(response.status().as_u16());
        }
        Ok(())
    }
}

/// `scheme://authority` of a URL (the URL itself if it has no path).
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?']) {
        Some(end) => &url[..start + end],
        None => url,
    }
}

/// A library message reworded for the command line: flags and environment
/// variables instead of Rust calls.
pub fn for_the_cli(text: &str) -> String {
    const CREATE_TABLES: &str = "create them with db/create_tables.sh of the dynamo-es \
        repository (the AWS CLI: Events, Snapshots, Checkpoints and view tables) or its \
        db/dynamo_db.yaml (CloudFormation), and check --region/AWS_REGION and \
        --endpoint-url/AWS_ENDPOINT_URL_DYNAMODB";
    let replacements: [(&str, &str); 4] = [
        (
            ", or call `.region(...)` on the SDK config",
            ", or pass --region REGION",
        ),
        (
            ", or call `.credentials_provider(...)` on the SDK config",
            "",
        ),
        (
            "dynamo_es::create_event_tables and create_view_table create the tables",
            CREATE_TABLES,
        ),
        (
            "check AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB and the SDK config's endpoint settings",
            "check --region/AWS_REGION and --endpoint-url/AWS_ENDPOINT_URL_DYNAMODB",
        ),
    ];
    let mut text = text.to_string();
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    text
}

/// What the AWS SDK says when no credentials could be loaded (the last
/// provider of the chain, instance metadata, failed: a 403 from a proxy or
/// a container), so the request was never sent, whatever the library's
/// category says: that cause and its own causes, `: `-separated.
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let found = chain(err).find(|err| {
        let text = err.to_string().to_ascii_lowercase();
        !err.is::<dynamo_es::Error>()
            && text.contains("credential")
            && (text.contains("loading") || text.contains("load") || text.contains("provider"))
    })?;
    let mut reason = String::new();
    for cause in chain(found) {
        let text = cause.to_string();
        if !text.is_empty() && !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
    }
    Some(reason)
}

/// The lines for stderr: `error: ...`, each cause once (`  caused by:`),
/// the endpoint and last HTTP status when a request was sent, and the
/// hints.
pub fn lines(err: &(dyn std::error::Error + 'static), wire: &Wire) -> Vec<String> {
    let mut lines = Vec::new();
    let connection = chain(err).find_map(|e| match e.downcast_ref::<dynamo_es::Error>() {
        Some(dynamo_es::Error::Connection {
            operation, table, ..
        }) => Some((*operation, table.clone())),
        _ => None,
    });
    let credentials = connection.as_ref().and_then(|_| credentials_failure(err));
    match (&credentials, connection) {
        (Some(reason), Some((operation, table))) => lines.push(format!(
            "error: {operation}{} was not sent: no AWS credentials could be loaded: set \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile in \
             ~/.aws/credentials or ~/.aws/config (run `aws sso login` for an SSO profile) \
             ({reason})",
            if table.is_empty() {
                String::new()
            } else {
                format!(" on table {table}")
            }
        )),
        _ => lines.push(format!("error: {}", for_the_cli(&err.to_string()))),
    }
    if credentials.is_some() {
        return lines;
    }
    for cause in chain(err).skip(1) {
        let text = for_the_cli(&cause.to_string());
        if text.is_empty() || lines.iter().any(|line| line.contains(&text)) {
            continue;
        }
        lines.push(format!("  caused by: {text}"));
    }
    if let Some(wire) = wire.describe() {
        lines.push(format!("  at: {wire}"));
        if err.to_string().contains("unhandled error") {
            lines.push(
                "hint: the answer is not DynamoDB's: check --endpoint-url or \
                 AWS_ENDPOINT_URL_DYNAMODB (and AWS_ENDPOINT_URL)"
                    .to_string(),
            );
        }
    }
    lines
}

/// `err` and each of its sources.
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |err| err.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_drop_the_path() {
        assert_eq!(origin("http://127.0.0.1:8000/"), "http://127.0.0.1:8000");
        assert_eq!(
            origin("https://dynamodb.eu-west-1.amazonaws.com"),
            "https://dynamodb.eu-west-1.amazonaws.com"
        );
        assert_eq!(origin("http://h:1/a?b"), "http://h:1");
    }

    #[test]
    fn library_hints_become_flags_and_variables() {
        let text = for_the_cli(
            "no AWS region is configured: set AWS_REGION (or `region` in the profile's \
             ~/.aws/config section), or call `.region(...)` on the SDK config",
        );
        assert!(
            text.contains("--region") && !text.contains(".region("),
            "{text}"
        );
    }
}
