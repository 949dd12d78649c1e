//! Flag wakers: h2 wakes a stream's task when the stream has something for us (data, a reset,
//! send capacity); each stream's waker files its key in a list the codec drains, so only the
//! streams that moved are polled again, however many are open.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// The keys of the streams woken since the codec last looked.
#[derive(Clone, Default)]
pub(crate) struct Woken(Arc<Mutex<Vec<usize>>>);

impl Woken {
    pub(crate) fn take(&self, into: &mut Vec<usize>) {
        let mut list = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        into.append(&mut list);
    }

    fn push(&self, key: usize) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(key);
    }
}

/// One stream's waker. A woken flag keeps a stream in the list once however often h2 wakes it.
pub(crate) struct Flag {
    key: AtomicUsize,
    woken: AtomicBool,
    list: Woken,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.list.push(self.key.load(Ordering::Acquire));
        }
    }
}

/// Wakers made once and reused by later streams: h2 keeps a clone of a stream's waker while
/// the stream lives, and a waker no one else holds is free again.
#[derive(Default)]
pub(crate) struct Wakers {
    list: Woken,
    free: Vec<Arc<Flag>>,
}

impl Wakers {
    pub(crate) fn woken(&self) -> &Woken {
        &self.list
    }

    /// A waker for stream `key`, woken once already so the stream is polled first thing.
    pub(crate) fn get(&mut self, key: usize) -> (Arc<Flag>, Waker) {
        let flag = self.free.pop().unwrap_or_else(|| {
            Arc::new(Flag {
                key: AtomicUsize::new(key),
                woken: AtomicBool::new(false),
                list: self.list.clone(),
            })
        });
        flag.key.store(key, Ordering::Release);
        flag.woken.store(false, Ordering::Release);
        let waker = Waker::from(flag.clone());
        waker.wake_by_ref();
        (flag, waker)
    }

    /// The stream is gone; its waker is kept for the next one if h2 let go of it.
    pub(crate) fn put(&mut self, flag: Arc<Flag>) {
        if Arc::strong_count(&flag) == 1 {
            self.free.push(flag);
        }
    }
}

impl Flag {
    /// About to poll the stream: a wake from now on files it again.
    pub(crate) fn clear(&self) {
        self.woken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_listed_once_per_clear_and_its_waker_is_reused() {
        let mut wakers = Wakers::default();
        let (flag, waker) = wakers.get(7);
        waker.wake_by_ref();
        let mut keys = Vec::new();
        wakers.woken().take(&mut keys);
        assert_eq!(keys, [7], "woken at birth, listed once");
        flag.clear();
        waker.wake_by_ref();
        waker.wake_by_ref();
        keys.clear();
        wakers.woken().take(&mut keys);
        assert_eq!(keys, [7]);
        drop(waker);
        let before = Arc::as_ptr(&flag);
        wakers.put(flag);
        let (again, _) = wakers.get(9);
        assert_eq!(Arc::as_ptr(&again), before, "reused");
    }
}
