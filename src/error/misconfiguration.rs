//! Recognising an AWS client that cannot sign or address a request (no
//! region, no credentials, no endpoint), and what to set to fix it. Such a
//! request was never sent: retrying cannot help.

use std::fmt;

use aws_sdk_dynamodb::error::SdkError;

use super::message::causes;

/// What to set when no region is configured.
const SET_REGION: &str = "no AWS region is configured: set AWS_REGION (or `region` in the \
    profile's ~/.aws/config section), or call `.region(...)` on the SDK config";

/// What to set when no credentials were found.
const SET_CREDENTIALS: &str = "no AWS credentials: set AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile in ~/.aws/credentials or ~/.aws/config \
    (run `aws sso login` for an SSO profile), or call `.credentials_provider(...)` on the SDK config";

/// If `err` failed before anything was sent because the client is
/// misconfigured (no region, no credentials, no endpoint), what to fix.
///
/// The SDK reports these as a dispatch (or construction) failure whose
/// cause is an error from the signer, the endpoint resolver, the auth
/// scheme resolver or a credentials provider. Those error types are private
/// to the SDK's inner crates or absent from this crate's dependencies, so
/// they are recognised by the type name their `Debug` output starts with
/// (and, for the credentials errors, their message); `tests/errors.rs` pins
/// each case against the SDK in use.
pub(super) fn misconfiguration<E, R>(err: &SdkError<E, R>) -> Option<String>
where
    E: std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    match err {
        // The request never left: nothing was sent to be lost or cut off.
        SdkError::DispatchFailure(failure) if !failure.is_io() && !failure.is_timeout() => {}
        SdkError::ConstructionFailure(_) => {}
        _ => return None,
    }
    let mut current = std::error::Error::source(err);
    while let Some(cause) = current {
        match debug_name(cause).as_str() {
            // aws-runtime's SigV4SigningError: no region to sign for.
            "MissingSigningRegion" | "MissingSigningRegionSet" => {
                return Some(SET_REGION.to_string())
            }
            // The endpoint rules need a region (no endpoint URL is set), or
            // the endpoint settings contradict each other.
            "ResolveEndpointError" => {
                let detail = causes(cause);
                return Some(if detail.contains("Missing Region") {
                    SET_REGION.to_string()
                } else {
                    format!(
                        "no DynamoDB endpoint can be resolved ({detail}): check AWS_REGION, \
                         AWS_ENDPOINT_URL_DYNAMODB and the SDK config's endpoint settings"
                    )
                });
            }
            // No credentials provider at all: nothing to sign with.
            "NoMatchingAuthSchemeError" => return Some(SET_CREDENTIALS.to_string()),
            // aws-credential-types' CredentialsError (whose messages all
            // say "credential"): every provider of the chain came up empty,
            // the configuration is broken, or a provider failed in a way it
            // does not expect (a profile provider reports its error once,
            // then "initialization error already taken").
            "CredentialsNotLoaded" if cause.to_string().contains("credential") => {
                return Some(format!("{SET_CREDENTIALS} ({})", causes(cause)))
            }
            "InvalidConfiguration" if cause.to_string().contains("credential") => {
                return Some(format!(
                    "the AWS credentials configuration is invalid ({}): check ~/.aws/config, \
                     ~/.aws/credentials and AWS_PROFILE, or set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY",
                    causes(cause)
                ))
            }
            "Unhandled" if cause.to_string().contains("credentials error") => {
                return Some(format!(
                    "AWS credentials could not be loaded ({}): set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a working profile",
                    causes(cause)
                ))
            }
            _ => {}
        }
        current = cause.source();
    }
    None
}

/// The type or variant name an error's `Debug` output starts with
/// (`MissingSigningRegion` for `MissingSigningRegion`,
/// `ResolveEndpointError` for `ResolveEndpointError { .. }`), formatting no
/// more than that.
fn debug_name(err: &dyn std::error::Error) -> String {
    struct Name(String);
    impl fmt::Write for Name {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            for c in text.chars() {
                if c.is_alphanumeric() || c == '_' {
                    self.0.push(c);
                } else {
                    // Stops the formatting: the name is complete.
                    return Err(fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut name = Name(String::new());
    let _ = fmt::write(&mut name, format_args!("{err:?}"));
    name.0
}
