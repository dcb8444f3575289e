//! The walk every chunk computation shares: the contiguous runs of a region in the row-major
//! buffers of the chunks that hold it.

use super::Chunk;

/// Calls `f(starts, len)` for every run of `region` that is contiguous in the buffers of all
/// `layouts` at once, in row-major order of `region`: `starts[i]` is the run's first element
/// in the buffer of `layouts[i]`, `len` its length in elements.
///
/// A run takes in every inner dimension that all layouts hold whole, so a region of full rows
/// is one run, and a column block is one run per row. `region` must lie inside every layout.
pub(super) fn for_each_run<const N: usize>(
    region: &Chunk,
    layouts: [&Chunk; N],
    mut f: impl FnMut([u64; N], u64),
) {
    debug_assert!(layouts.iter().all(|l| l.contains(region)));
    if region.is_empty() {
        return;
    }
    let sizes = region.sizes();
    let ndim = sizes.len();

    // The run covers dimensions `first..ndim`: the innermost always, and each one outside it
    // while the one inside is whole in every buffer.
    let mut first = ndim;
    let mut run = 1u64;
    while first > 0 {
        let d = first - 1;
        run *= sizes[d];
        first = d;
        if !layouts.iter().all(|l| l.sizes()[d] == sizes[d]) {
            break;
        }
    }

    // Row-major strides (in elements) of each buffer, and where the region starts in it.
    // Neither overflows: both stay below the buffer's element count.
    let strides: [Vec<u64>; N] = layouts.map(|l| {
        let mut strides = vec![1u64; ndim];
        for d in (0..ndim.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * l.sizes()[d + 1];
        }
        strides
    });
    let mut pos = [0u64; N];
    for (i, l) in layouts.iter().enumerate() {
        pos[i] = (0..ndim)
            .map(|d| (region.offsets()[d] - l.offsets()[d]) * strides[i][d])
            .sum();
    }

    // An odometer over the dimensions outside the run.
    let mut index = vec![0u64; first];
    loop {
        f(pos, run);
        let mut d = first;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < sizes[d] {
                for i in 0..N {
                    pos[i] += strides[i][d];
                }
                break;
            }
            for i in 0..N {
                pos[i] -= strides[i][d] * (sizes[d] - 1);
            }
            index[d] = 0;
        }
    }
}
