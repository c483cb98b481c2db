//! Recode: rewrite stored payloads with another codec, safely, after a
//! dry-run savings report.
