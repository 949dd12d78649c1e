//! The downstream side: connections accepted on listeners, the HTTP connection manager with its
//! routing, filters and local replies, and the admin endpoint's connections.

pub(crate) mod admin_conn;
pub(crate) mod client;
pub(crate) mod codec;
pub(crate) mod conn;
pub(crate) mod ctx;
pub(crate) mod decide;
pub(crate) mod filters;
pub(crate) mod h2;
pub(crate) mod headers;
pub(crate) mod local_reply;
pub(crate) mod request_log;
pub(crate) mod route;
pub(crate) mod router;
pub(crate) mod session;
#[cfg(test)]
mod tests;
pub(crate) mod upgrade;
