//! A replicated item (a whole tensor or a value every rank holds) is written once, by the rank
//! PyTorch's `dedup_save_plans` picks: the one given the fewest bytes so far, the lowest on a
//! tie. `.metadata` names that copy, and the checkpoint loads as if each rank held it alone.

use std::collections::HashMap;
use std::path::Path;

use ckpt::dcp::{RankPlan, RankWrite};
use ckpt::shard::Chunk;
use ckpt::{SaveOptions, Tensor, Value, dict};

/// Four ranks, each with two rows of `w` (32 bytes), the same four 64-byte biases and `step`.
fn states() -> Vec<(Value<'static>, HashMap<String, Chunk>)> {
    let rows = Chunk::split(&[8, 4], 0, 4).unwrap();
    rows.into_iter()
        .enumerate()
        .map(|(rank, rows)| {
            let start = rank as f32 * 8.0;
            let w = Tensor::from_vec((0..8).map(|i| start + i as f32).collect(), &[2, 4]).unwrap();
            let mut state = dict! { "w" => w };
            let Value::Map(map) = &mut state else {
                unreachable!()
            };
            for b in 0..4 {
                let values = (0..16).map(|i| (100 * b + i) as f32).collect();
                let bias = Tensor::from_vec(values, &[16]).unwrap();
                map.insert(format!("b{b}").into(), Value::from(bias));
            }
            map.insert("step".into(), Value::from(100));
            (state, HashMap::from([("w".to_owned(), rows)]))
        })
        .collect()
}

fn plans(dir: &Path, states: &[(Value<'static>, HashMap<String, Chunk>)]) -> Vec<RankPlan> {
    states
        .iter()
        .enumerate()
        .map(|(rank, (state, chunks))| ckpt::dcp::plan_rank(state, dir, rank, chunks).unwrap())
        .collect()
}

fn write(
    dir: &Path,
    states: &[(Value<'static>, HashMap<String, Chunk>)],
    plans: &[RankPlan],
) -> Vec<RankWrite> {
    let options = SaveOptions::new().fsync(false);
    let parts: Vec<RankWrite> = states
        .iter()
        .zip(plans)
        .map(|((state, _), plan)| ckpt::dcp::write_rank(state, dir, plan, &options).unwrap())
        .collect();
    ckpt::dcp::commit(dir, &parts, &options).unwrap();
    parts
}

fn keys(part: &RankWrite) -> Vec<&str> {
    let mut keys: Vec<&str> = part.keys().collect();
    keys.sort_unstable();
    keys
}

/// Each bias and `step` lie in one data file only, spread over the ranks by bytes as PyTorch
/// spreads them; the files hold exactly what their ranks wrote, 3 × each replicated item less
/// than when every rank writes all it holds; the checkpoint loads with every value.
#[test]
fn replicated_items_are_written_once() {
    let tmp = tempfile::tempdir().unwrap();
    let states = states();
    let once = tmp.path().join("once");
    let held = plans(&once, &states);
    let kept = ckpt::dcp::dedup(&held);
    let parts = write(&once, &states, &kept);

    // As torch 2.15's `dedup_save_plans` gives them: `w`'s rows stay where they are; it
    // counts rank 0's rows as all of `w` (128 bytes), so b0..b2 go to ranks 1..3, b3 to rank
    // 1 (64, the lowest of the fewest), then `step` to rank 2.
    let expected = [
        vec!["w"],
        vec!["b0", "b3", "w"],
        vec!["b1", "step", "w"],
        vec!["b2", "w"],
    ];
    for (rank, part) in parts.iter().enumerate() {
        assert_eq!(part.rank(), rank);
        assert_eq!(keys(part), expected[rank], "rank {rank}");
        let mut planned: Vec<&str> = kept[rank].keys().collect();
        planned.sort_unstable();
        assert_eq!(planned, expected[rank], "rank {rank}'s plan");
        let file = once.join(part.file());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), part.bytes());
    }
    assert_eq!(held[0].tensor_bytes(), 32 + 4 * 64);
    assert_eq!(kept[0].tensor_bytes(), 32);
    assert_eq!(kept[1].tensor_bytes(), 32 + 2 * 64);

    // The same state with every rank writing all it holds: the difference is three extra
    // copies of each bias and of `step`.
    let all = tmp.path().join("all");
    let every = write(&all, &states, &plans(&all, &states));
    let total = |parts: &[RankWrite]| parts.iter().map(RankWrite::bytes).sum::<u64>();
    let single = tmp.path().join("single");
    let replicated = {
        let Value::Map(map) = &states[0].0 else {
            unreachable!()
        };
        let mut only = map.clone();
        only.shift_remove(&ckpt::value::Key::from("w"));
        ckpt::dcp::save(Value::Map(only), &single).unwrap();
        std::fs::metadata(single.join("__0_0.distcp"))
            .unwrap()
            .len()
    };
    assert_eq!(total(&every), total(&parts) + 3 * replicated);

    // One copy is enough: the checkpoint loads whole, every value in place.
    let loaded = ckpt::load(&once).unwrap();
    let w = loaded["w"].as_tensor().unwrap();
    assert_eq!(w.shape(), [8, 4]);
    assert_eq!(
        w.to_f64_vec().unwrap(),
        (0..32).map(f64::from).collect::<Vec<_>>()
    );
    for b in 0..4 {
        let bias = loaded[format!("b{b}").as_str()].as_tensor().unwrap();
        let want: Vec<f64> = (0..16).map(|i| f64::from(100 * b + i)).collect();
        assert_eq!(bias.to_f64_vec().unwrap(), want, "b{b}");
    }
    assert_eq!(loaded["step"].as_i64(), Some(100));
    assert_eq!(loaded.value(), ckpt::load(&all).unwrap().value());
}

/// A plan belongs to the state it was made from: a rank whose state changed since (another
/// shape under a planned key, a planned key gone) is refused, naming the key.
#[test]
fn a_plan_of_another_state_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let options = SaveOptions::new();
    let state = dict! { "w" => Tensor::zeros(ckpt::DType::F32, &[2, 2]).unwrap(), "step" => 1 };
    let plan = ckpt::dcp::plan_rank(&state, &dir, 0, &HashMap::new()).unwrap();

    let other = dict! { "w" => Tensor::zeros(ckpt::DType::F32, &[3, 2]).unwrap(), "step" => 1 };
    let message = ckpt::dcp::write_rank(&other, &dir, &plan, &options)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("\"w\"") && message.contains("sizes [2, 2]") && message.contains("[3, 2]"),
        "{message}"
    );

    let fewer = dict! { "w" => Tensor::zeros(ckpt::DType::F32, &[2, 2]).unwrap() };
    let message = ckpt::dcp::write_rank(&fewer, &dir, &plan, &options)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("\"step\"") && message.contains("does not hold"),
        "{message}"
    );
    assert!(!dir.join("__0_0.distcp").exists());
}
