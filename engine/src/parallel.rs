//! Independent pieces of work spread over the cores.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f(i)` for every `i` in `0..n` on up to all cores (the calling thread
/// included), the costliest first so the cores finish together; results in
/// index order, `None` if a piece did not finish.
pub(crate) fn map_by_cost<T: Send>(
    n: usize,
    cost: impl Fn(usize) -> usize,
    f: impl Fn(usize) -> T + Sync,
) -> Option<Vec<T>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(i)));
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let work = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let v = f(i);
            if let Ok(mut slot) = slots[i].lock() {
                *slot = Some(v);
            }
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |c| c.get())
        .min(n);
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(work);
        }
        work();
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_index_order() {
        let got = map_by_cost(50, |i| i % 7, |i| i * i);
        assert_eq!(got, Some((0..50).map(|i| i * i).collect()));
        assert_eq!(map_by_cost(0, |_| 0, |i| i), Some(vec![]));
    }
}
