//! Parallel image decoding for inference (scoped threads; results in input order).

use std::path::PathBuf;

use sevit_data::{load_gray, GrayImage};

/// Decodes `paths` at `size x size` (as [`sevit_data::load_gray`]) on up to the available
/// cores; one result per path, in order, each error naming its file.
pub fn load_all(paths: &[PathBuf], size: u32) -> Vec<anyhow::Result<GrayImage>> {
    par_map(paths, |p| load_gray(p, size))
}

/// Applies `f` to every item on up to the available cores, keeping the order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an image worker thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_order() {
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(
            par_map(&v, |x| x * 2),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(par_map(&Vec::<u64>::new(), |x| *x).is_empty());
    }
}
