//! "Did you mean": for each missing key, an unexpected key that is only a typo away.
//!
//! The error path must cost about as much as the load, whatever the keys: a checkpoint with
//! thousands of long unexpected keys must not turn every missing × unexpected pair into a full
//! edit distance. So candidates are found by length first (a typo changes a key's length by at
//! most the distance allowed), each distance is computed in a band of that width and abandoned
//! as soon as it exceeds it, and the whole search has a budget of cells proportional to the
//! keys' total length: once it is spent, the remaining keys get no suggestion.

/// The most edits a suggestion may be away: a fifth of the key's length, at least 2 and at
/// most this.
const MAX_DISTANCE: usize = 8;
/// Keys longer than this get no suggestion: nobody mistypes a key that long.
const MAX_KEY_LEN: usize = 1024;
/// Distance cells allowed per byte of the keys, on top of a fixed allowance.
const CELLS_PER_BYTE: usize = 64;
const CELLS_BASE: usize = 1 << 20;

/// For each missing key, the closest unexpected key within its distance limit (the first in
/// `unexpected`'s order among equally close ones), if the budget allows looking.
pub(crate) fn suggest(missing: &[String], unexpected: &[String]) -> Vec<Option<String>> {
    let total: usize = missing.iter().chain(unexpected).map(String::len).sum();
    let mut budget = CELLS_BASE.saturating_add(total.saturating_mul(CELLS_PER_BYTE));
    // Unexpected keys by length, so that the candidates of a key are one contiguous run.
    let mut by_len: Vec<(usize, usize)> = unexpected
        .iter()
        .enumerate()
        .filter(|(_, key)| key.len() <= MAX_KEY_LEN)
        .map(|(i, key)| (key.len(), i))
        .collect();
    by_len.sort_unstable();
    missing
        .iter()
        .map(|key| {
            if key.len() > MAX_KEY_LEN {
                return None;
            }
            let limit = (key.len() / 5).clamp(2, MAX_DISTANCE);
            let low = key.len().saturating_sub(limit);
            let start = by_len.partition_point(|&(len, _)| len < low);
            let mut best: Option<(usize, usize)> = None;
            for &(len, index) in &by_len[start..] {
                if len > key.len() + limit {
                    break;
                }
                let bound = best.map_or(limit, |(d, _)| d);
                let cells = (2 * bound + 1) * (key.len().max(len) + 1);
                if cells > budget {
                    return best.map(|(_, i)| unexpected[i].clone());
                }
                budget -= cells;
                if let Some(distance) = bounded_levenshtein(key, &unexpected[index], bound) {
                    let better = best.is_none_or(|(d, i)| (distance, index) < (d, i));
                    if better {
                        best = Some((distance, index));
                    }
                }
            }
            best.map(|(_, i)| unexpected[i].clone())
        })
        .collect()
}

/// The edit distance between `a` and `b` in bytes if it is at most `limit`, else `None`;
/// computed in the band of diagonals within `limit` of the main one, so in
/// O(`limit` × length) time.
fn bounded_levenshtein(a: &str, b: &str, limit: usize) -> Option<usize> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    const FAR: usize = usize::MAX / 2;
    // `row[j]` is the distance between a[..i] and b[..j] for j in the band around i; the one
    // cell either side of the band reads as FAR, and nothing further out is ever read.
    let n = b.len();
    let mut prev: Vec<usize> = (0..=n).map(|j| if j <= limit { j } else { FAR }).collect();
    let mut row = vec![FAR; n + 1];
    for i in 1..=a.len() {
        let from = i.saturating_sub(limit);
        let to = (i + limit).min(n);
        let mut smallest = FAR;
        if from == 0 {
            row[0] = i;
            smallest = i;
        } else {
            row[from - 1] = FAR;
        }
        for j in from.max(1)..=to {
            let substitute = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let delete = prev[j] + 1;
            let insert = row[j - 1] + 1;
            row[j] = substitute.min(delete).min(insert);
            smallest = smallest.min(row[j]);
        }
        if to < n {
            row[to + 1] = FAR;
        }
        if smallest > limit {
            return None;
        }
        std::mem::swap(&mut prev, &mut row);
    }
    Some(prev[n]).filter(|&d| d <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suggestions_are_typos_only() {
        let missing = keys(&["fc.bias", "fc.weight"]);
        let unexpected = keys(&["fc.biass", "head.weight"]);
        assert_eq!(
            suggest(&missing, &unexpected),
            [Some("fc.biass".to_owned()), None]
        );
    }

    #[test]
    fn the_banded_distance_is_the_edit_distance() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "kitten",
            "sitting",
            "flaw",
            "lawn",
            "fc.weight",
        ];
        for a in words {
            for b in words {
                let exact = strsim::levenshtein(a, b);
                for limit in 0..6 {
                    let expected = (exact <= limit).then_some(exact);
                    assert_eq!(
                        bounded_levenshtein(a, b, limit),
                        expected,
                        "{a:?} {b:?} {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_closest_and_then_the_first_wins() {
        let missing = keys(&["layer.weight"]);
        let unexpected = keys(&["layer.weigth", "layer.weight2", "layer.weigh"]);
        assert_eq!(
            suggest(&missing, &unexpected),
            [Some("layer.weight2".to_owned())]
        );
    }

    #[test]
    fn many_long_keys_cost_a_bounded_amount() {
        // 3000 × 3000 pairs of 200-byte keys all of one length: without the budget, hours of
        // work in debug builds; with it, about one pass per key.
        let long = |i: usize| format!("{:0>200}", i);
        let missing: Vec<String> = (0..3000).map(long).collect();
        let unexpected: Vec<String> = (3000..6000).map(long).collect();
        let start = std::time::Instant::now();
        let suggestions = suggest(&missing, &unexpected);
        assert_eq!(suggestions.len(), 3000);
        // Not a timing assertion: the budget bounds the work; this only reports it.
        eprintln!("suggest over 3000 × 3000 long keys: {:?}", start.elapsed());
    }
}
