//! Property-style tests of the geometry against a plain element-by-element reference, over
//! random shapes and shardings from a fixed-seed generator.

use super::*;
use crate::dtype::DType;

/// SplitMix64: a tiny deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random global shape of 0 to 4 dimensions, each 0 to 6 long (zero-size dimensions too).
fn shape(rng: &mut Rng) -> Vec<u64> {
    let ndim = rng.below(5) as usize;
    (0..ndim).map(|_| rng.below(7)).collect()
}

/// A random chunk of `global` (possibly empty).
fn chunk(rng: &mut Rng, global: &[u64]) -> Chunk {
    let mut offsets = Vec::new();
    let mut sizes = Vec::new();
    for &g in global {
        let start = rng.below(g + 1);
        offsets.push(start);
        sizes.push(rng.below(g - start + 1));
    }
    Chunk::new(global.to_vec(), offsets, sizes).unwrap()
}

/// A random tiling: a grid with random part counts, possibly more parts than elements.
fn tiling(rng: &mut Rng, global: &[u64]) -> Vec<Chunk> {
    let parts: Vec<u64> = global.iter().map(|_| 1 + rng.below(4)).collect();
    Chunk::grid(global, &parts).unwrap()
}

/// The global row-major index of every element of `chunk`, in its row-major order.
fn global_indices(chunk: &Chunk) -> Vec<u64> {
    let g = chunk.global_shape();
    let mut out = Vec::new();
    let n = chunk.numel();
    for local in 0..n {
        let mut rest = local;
        let mut coords = vec![0; g.len()];
        for d in (0..g.len()).rev() {
            coords[d] = rest % chunk.sizes()[d] + chunk.offsets()[d];
            rest /= chunk.sizes()[d];
        }
        out.push(coords.iter().zip(g).fold(0, |acc, (&c, &s)| acc * s + c));
    }
    out
}

/// The data of `chunk` of a tensor whose element `i` (global row-major) is `i` as an i32.
fn data(chunk: &Chunk) -> Vec<u8> {
    global_indices(chunk)
        .into_iter()
        .flat_map(|i| (i as i32).to_le_bytes())
        .collect()
}

#[test]
fn copy_overlap_matches_the_reference() {
    let mut rng = Rng(1);
    for _ in 0..2000 {
        let global = shape(&mut rng);
        let (src, dst) = (chunk(&mut rng, &global), chunk(&mut rng, &global));
        let mut out = vec![0xAAu8; dst.buffer_len(DType::I32).unwrap()];
        let copied = copy_overlap(DType::I32, &src, &data(&src), &dst, &mut out).unwrap();

        let from_src = global_indices(&src);
        let mut expected = vec![0xAAu8; out.len()];
        let mut count = 0;
        for (j, g) in global_indices(&dst).into_iter().enumerate() {
            if from_src.contains(&g) {
                expected[j * 4..j * 4 + 4].copy_from_slice(&(g as i32).to_le_bytes());
                count += 1;
            }
        }
        assert_eq!(out, expected, "{src} into {dst}");
        assert_eq!(copied, count, "{src} into {dst}");
    }
}

#[test]
fn a_tiling_reassembles_any_chunk() {
    let mut rng = Rng(2);
    for _ in 0..500 {
        let global = shape(&mut rng);
        let saved = tiling(&mut rng, &global);
        check_tiling(&global, &saved).unwrap();
        let target = chunk(&mut rng, &global);

        // Through byte ranges, as a reader does, and straight from the saved buffers.
        let mut ranged = vec![0u8; target.buffer_len(DType::I32).unwrap()];
        let mut direct = ranged.clone();
        for piece in &saved {
            let bytes = data(piece);
            let ranges = byte_ranges(DType::I32, piece, &target).unwrap();
            let fetched: Vec<u8> = ranges
                .iter()
                .flat_map(|r| bytes[r.start as usize..r.end as usize].to_vec())
                .collect();
            match piece.intersect(&target).unwrap() {
                Some(overlap) => {
                    assert_eq!(fetched.len() as u64, overlap.nbytes(DType::I32).unwrap());
                    assert!(ranges.windows(2).all(|w| w[0].end < w[1].start));
                    copy_overlap(DType::I32, &overlap, &fetched, &target, &mut ranged).unwrap();
                }
                None => assert!(ranges.is_empty()),
            }
            copy_overlap(DType::I32, piece, &bytes, &target, &mut direct).unwrap();
        }
        assert_eq!(ranged, data(&target), "{target} from {saved:?}");
        assert_eq!(direct, data(&target), "{target} from {saved:?}");
    }
}

#[test]
fn tilings_with_a_piece_moved_or_missing_fail() {
    let mut rng = Rng(3);
    for _ in 0..500 {
        let global: Vec<u64> = (0..1 + rng.below(3)).map(|_| 1 + rng.below(6)).collect();
        let mut saved = tiling(&mut rng, &global);
        saved.retain(|c| !c.is_empty());
        if saved.len() < 2 {
            continue;
        }
        let i = rng.below(saved.len() as u64) as usize;
        let mut missing = saved.clone();
        missing.remove(i);
        assert!(matches!(
            check_tiling(&global, &missing),
            Err(ShardError::Gap { .. })
        ));
        let mut doubled = saved.clone();
        doubled.push(saved[i].clone());
        assert!(matches!(
            check_tiling(&global, &doubled),
            Err(ShardError::Overlap { .. })
        ));
        // Grow one piece by one element in some dimension, where there is room: an overlap.
        let d = rng.below(global.len() as u64) as usize;
        let piece = &saved[i];
        if piece.offsets()[d] + piece.sizes()[d] < global[d] {
            let mut sizes = piece.sizes().to_vec();
            sizes[d] += 1;
            let mut grown = saved.clone();
            grown[i] = Chunk::new(global.clone(), piece.offsets().to_vec(), sizes).unwrap();
            assert!(matches!(
                check_tiling(&global, &grown),
                Err(ShardError::Overlap { .. })
            ));
        }
    }
}

#[test]
fn named_shardings() {
    let global = [6u64, 10];
    let rows = Chunk::split(&global, 0, 4).unwrap(); // uneven: 2, 2, 1, 1
    let cols = Chunk::split(&global, 1, 3).unwrap(); // uneven: 4, 3, 3
    let blocks = Chunk::grid(&global, &[2, 2]).unwrap();
    let whole = vec![Chunk::whole(global.to_vec()).unwrap()];
    for tiling in [&rows, &cols, &blocks, &whole] {
        check_tiling(&global, tiling).unwrap();
    }
    // Rows into columns: a column chunk takes its slice of each row chunk, one run per row.
    let ranges = byte_ranges(DType::F64, &rows[0], &cols[1]).unwrap();
    assert_eq!(ranges, [32..56, 112..136]);
    // A whole tensor into blocks and back.
    let all = data(&whole[0]);
    let mut back = vec![0u8; all.len()];
    for block in &blocks {
        let mut local = vec![0u8; block.buffer_len(DType::I32).unwrap()];
        copy_overlap(DType::I32, &whole[0], &all, block, &mut local).unwrap();
        assert_eq!(local, data(block));
        copy_overlap(DType::I32, block, &local, &whole[0], &mut back).unwrap();
    }
    assert_eq!(back, all);
}

#[test]
fn buffer_lengths_are_checked() {
    let c = Chunk::whole(vec![2, 2]).unwrap();
    let err = copy_overlap(DType::F32, &c, &[0; 15], &c, &mut [0; 16]).unwrap_err();
    assert!(matches!(
        err,
        ShardError::BufferLength {
            expected: 16,
            actual: 15,
            ..
        }
    ));
    assert!(err.to_string().contains("[0..2, 0..2] of [2, 2]"), "{err}");
}
