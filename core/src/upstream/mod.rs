//! The upstream side: clusters and their hosts, circuit breakers, connection pools.

pub(crate) mod breaker;
pub(crate) mod cluster;
pub(crate) mod pool;
