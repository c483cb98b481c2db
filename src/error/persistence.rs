//! The mapping of [`Error`] into cqrs-es errors, so it flows through
//! cqrs-es unchanged (the original stays the boxed source): a conflict is
//! an optimistic-lock error, a transient failure a connection error, stored
//! data at fault a deserialization error, and nothing else is a connection
//! error (a misconfigured client must not invite a retry).

use cqrs_es::persist::PersistenceError;
use cqrs_es::AggregateError;

use super::Error;

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Serde(Box::new(err))
    }
}

impl From<Error> for PersistenceError {
    fn from(err: Error) -> Self {
        match err {
            Error::Conflict { .. } => PersistenceError::OptimisticLockError,
            Error::Throttled { .. } | Error::Connection { .. } | Error::SnapshotChanging { .. } => {
                PersistenceError::ConnectionError(Box::new(err))
            }
            // A key table that throttled or could not be reached: as
            // transient as the same error on the events table.
            #[cfg(feature = "encryption")]
            Error::Encryption(ref inner)
                if matches!(&**inner, crate::encryption::Error::KeyTable { source, .. }
                    if matches!(**source, Error::Throttled { .. } | Error::Connection { .. })) =>
            {
                PersistenceError::ConnectionError(Box::new(err))
            }
            // Nothing was sent and a retry cannot help: never a connection
            // error, which invites reloading and retrying.
            err @ Error::Configuration { .. } => PersistenceError::UnknownError(Box::new(err)),
            err if err.is_data_error() => PersistenceError::DeserializationError(Box::new(err)),
            err @ Error::Recode(_) => PersistenceError::UnknownError(Box::new(err)),
            err => PersistenceError::UnknownError(Box::new(err)),
        }
    }
}

impl<T: std::error::Error> From<Error> for AggregateError<T> {
    fn from(err: Error) -> Self {
        PersistenceError::from(err).into()
    }
}
