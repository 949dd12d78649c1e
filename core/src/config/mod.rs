//! Envoy v3 YAML configuration: parsing and validation.

mod model;

pub use model::*;
