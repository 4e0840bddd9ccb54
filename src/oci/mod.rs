//! Runtime-spec and image-spec glue over the `oci-spec` crate: loading a bundle's config.json and
//! the validation that the crate's types do not do on their own.

pub mod config;
