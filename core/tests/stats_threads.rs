//! The stats store is shared by worker threads: updates from all of them land.

use std::sync::Arc;

use burrow_core::stats::Stats;

#[test]
fn updates_from_many_threads_all_land() {
    let stats = Arc::new(Stats::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = stats.counter("c");
            std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(stats.value("c"), Some(4000));
}
