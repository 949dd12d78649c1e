//! Stats store.
#[derive(Default)]
pub struct Stats;
