//! Shared driver glue.
