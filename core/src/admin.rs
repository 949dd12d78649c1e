//! Admin endpoint.
