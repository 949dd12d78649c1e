//! Envoy v3 YAML configuration: parsing and validation.
//!
//! [`Config::from_yaml`] turns the text of an Envoy bootstrap into the validated [`Config`], or
//! a [`ConfigError`] naming the field path and what is wrong with it.

mod access_log;
mod address;
mod bootstrap;
mod cluster;
mod error;
mod fields;
mod hcm;
mod listener;
mod matcher;
mod model;
mod raw;
mod route;
mod tcp_proxy;
mod warnings;

pub use access_log::{FILE_LOG_TYPE_URL, STDERR_LOG_TYPE_URL, STDOUT_LOG_TYPE_URL};
pub use cluster::{HTTP_PROTOCOL_OPTIONS_NAME, HTTP_PROTOCOL_OPTIONS_TYPE_URL};
pub use error::ConfigError;
pub use hcm::{BUFFER_TYPE_URL, ROUTER_TYPE_URL};
pub use listener::HCM_TYPE_URL;
pub use model::*;
pub use route::{BUFFER_PER_ROUTE_TYPE_URL, FILTER_CONFIG_TYPE_URL};
pub use tcp_proxy::TCP_PROXY_TYPE_URL;

#[cfg(test)]
mod tests;
