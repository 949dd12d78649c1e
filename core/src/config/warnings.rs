//! Start-up advice: what the config layer judges about a valid config beyond validation, kept
//! beside the checks so that the layers serving the config only read it.

use super::model::*;

impl Config {
    /// Advice worth logging at start-up about a config that is valid but likely not what its
    /// author wants.
    pub fn warnings(&self) -> Vec<String> {
        let admin_log = self.admin.as_ref().and_then(|a| a.access_log_path.as_ref()).map(|path| {
            format!("admin.access_log_path '{path}' is ignored: burrow writes no admin access log")
        });
        let upgrades = self
            .listeners
            .iter()
            .filter_map(|listener| Some((&listener.name, listener.http()?)))
            .flat_map(|(name, hcm)| upgrade_warnings(name, hcm));
        admin_log.into_iter().chain(upgrades).collect()
    }
}

/// Start-up advice: Envoy silently hangs an upgrade whose chain holds the buffer filter.
/// burrow lets the handshake through, but the chain is still worth fixing.
fn upgrade_warnings(listener: &str, hcm: &HttpConnectionManager) -> Vec<String> {
    let buffers = |chain: &[HttpFilter]| {
        chain.iter().any(|f| matches!(f.kind, HttpFilterKind::Buffer { .. }) && !f.disabled)
    };
    hcm.upgrade_configs
        .iter()
        .filter(|u| u.enabled && !u.upgrade_type.eq_ignore_ascii_case("CONNECT"))
        .filter(|u| u.filters.is_none() && buffers(&hcm.http_filters))
        .map(|u| {
            format!(
                "listener '{listener}': upgrade type '{}' runs the default http_filters, which hold the buffer filter; \
                 burrow lets the handshake through, but the buffer limit caps what the client may send before the \
                 upgrade completes. Give this upgrade type its own chain without the buffer filter \
                 (upgrade_configs[].filters: [router])",
                u.upgrade_type
            )
        })
        .collect()
}
