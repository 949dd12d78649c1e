//! From Envoy v3 YAML (or JSON) text to the validated [`Config`]: the bootstrap and its admin
//! block here, each section of `static_resources` in a module of its own.
//!
//! Two steps: the YAML text becomes a [`Value`] tree (syntax errors carry line and column), then
//! the tree is decoded into the [`raw`] mirrors through `serde_path_to_error`, and checked and
//! converted section by section. `typed_config` bodies are decoded on their own once their
//! `@type` is known; their error paths are joined onto the path of the `typed_config` field.

use std::collections::HashMap;

use serde_json::Value;

use super::address::ip_address;
use super::cluster::cluster;
use super::error::ConfigError;
use super::fields::{at, decode, err, not_supported, Result};
use super::listener::listener;
use super::model::*;
use super::raw;

impl Config {
    /// Parses and validates an Envoy v3 bootstrap written in YAML (or JSON, a YAML subset).
    pub fn from_yaml(text: &str) -> Result<Config> {
        let value = parse_yaml(text)?;
        if value.is_null() {
            return Err(ConfigError::new("", "the configuration is empty"));
        }
        let bootstrap: raw::Bootstrap = decode(&value, "")?;
        build(bootstrap)
    }
}

fn parse_yaml(text: &str) -> Result<Value> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let message = e
            .to_string()
            .replace("; use from_str_multiple or from_str_multiple_with_options", "")
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigError::new("", format!("invalid YAML: {message}"))
    })
}

fn build(bootstrap: raw::Bootstrap) -> Result<Config> {
    if let Some(a) = &bootstrap.admin {
        if a.access_log.as_ref().is_some_and(|logs| !logs.is_empty()) {
            return not_supported("admin.access_log", "", "burrow writes no admin access log");
        }
    }
    let admin = match bootstrap.admin {
        Some(a) => match a.address {
            Some(address) => Some(Admin {
                address: ip_address(address, "admin.address", false)?.0,
                access_log_path: a.access_log_path.filter(|p| !p.is_empty() && p != "/dev/null"),
            }),
            // Envoy starts no admin listener without an address.
            None => None,
        },
        None => None,
    };

    let resources = bootstrap.static_resources.unwrap_or_default();
    let mut clusters = Vec::with_capacity(resources.clusters.len());
    let mut cluster_index = HashMap::new();
    for (i, c) in resources.clusters.into_iter().enumerate() {
        let path = format!("static_resources.clusters[{i}]");
        let c = cluster(c, &path)?;
        if cluster_index.insert(c.name.clone(), i).is_some() {
            return err(at(&path, "name"), format!("duplicate cluster name '{}'", c.name));
        }
        clusters.push(c);
    }

    let mut listeners: Vec<Listener> = Vec::with_capacity(resources.listeners.len());
    let mut access_log_sinks = Vec::new();
    for (i, l) in resources.listeners.into_iter().enumerate() {
        let path = format!("static_resources.listeners[{i}]");
        let l = listener(l, &path, &cluster_index, &mut access_log_sinks)?;
        if listeners.iter().any(|other| other.name == l.name) {
            return err(at(&path, "name"), format!("duplicate listener name '{}'", l.name));
        }
        listeners.push(l);
    }

    Ok(Config { admin, listeners, clusters, access_log_sinks })
}
