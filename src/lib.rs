//! dynamo-es (work in progress skeleton)
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
mod error;

pub use codec::Codec;
pub use error::{BoxError, Error, Limit, Result};
