//! Envoy v3 YAML configuration: parsing and validation.
//!
//! [`Config::from_yaml`] turns the text of an Envoy bootstrap into the validated [`Config`], or
//! a [`ConfigError`] naming the field path and what is wrong with it.

mod error;
mod load;
mod model;
mod raw;

pub use error::ConfigError;
pub use load::{HCM_TYPE_URL, HTTP_PROTOCOL_OPTIONS_NAME, HTTP_PROTOCOL_OPTIONS_TYPE_URL, ROUTER_TYPE_URL};
pub use model::*;

#[cfg(test)]
mod tests;
