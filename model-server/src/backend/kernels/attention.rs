//! The fused attention kernel behind [`crate::backend::attention`]: `softmax(q·kᵀ + mask)·v` per
//! (text, head), reading q, k and v in place from the `(rows, 3 * hidden)` QKV rows and writing
//! the `(rows, hidden)` context rows. With a [`Team`], half the heads run on its helper thread.
//!
//! What it owns: the output buffer both threads write through a raw pointer, each only the
//! columns of its own heads; [`attend`] is the safe entry.

use super::simd::{Wide, dispatch};
use super::team::Team;
use std::ops::Range;

/// Longest sequence the fused kernel runs; longer batches go through candle's batched gemm.
pub const FUSED_MAX_SEQ: usize = 64;

/// The output rows, shared by the two threads of a split; each writes its own heads' columns.
#[derive(Clone, Copy)]
struct Context(*mut f32);
// SAFETY: the threads given one `Context` write disjoint column ranges (heads) of it, so sending
// the pointer to the helper races nothing.
unsafe impl Send for Context {}
// SAFETY: as for `Send`: shared `Context`s are only written through at disjoint heads.
unsafe impl Sync for Context {}

/// The context rows `(rows, heads * head_size)` of `qkv`'s `(rows, 3 * heads * head_size)` rows:
/// each of `texts` (row ranges, covering every row, none longer than [`FUSED_MAX_SEQ`]) attends
/// over its own rows, `mask` (one additive value per row) marking padding. With a team, half the
/// heads run on its helper.
///
/// # Panics
/// When a text reaches past `qkv`'s rows or the mask, or is longer than [`FUSED_MAX_SEQ`].
pub fn attend(
    qkv: &[f32],
    mask: &[f32],
    texts: &[Range<usize>],
    heads: usize,
    head_size: usize,
    team: Option<&Team>,
) -> Vec<f32> {
    let hidden = heads * head_size;
    let rows = texts.last().map_or(0, |t| t.end);
    assert!(qkv.len() == rows * 3 * hidden && mask.len() == rows);
    let mut out = vec![0f32; rows * hidden];
    let context = Context(out.as_mut_ptr());
    let heads_of = |range: Range<usize>| {
        let part = Heads {
            qkv,
            mask,
            texts,
            heads,
            head_size,
            out: context,
            range,
        };
        move || dispatch(part)
    };
    match team {
        Some(team) if heads >= 2 => {
            let half = heads / 2;
            team.split(heads_of(0..half), Box::new(heads_of(half..heads)));
        }
        _ => heads_of(0..heads)(),
    }
    out
}

/// The context columns of heads `range`, for every text and position.
///
/// Only [`attend`] makes one, and it keeps this invariant: `out` points at the `rows * hidden`
/// floats of a live buffer (`rows` = `qkv.len() / (3 * hidden)`), `range` lies in `0..heads`, and
/// while `run` runs no other thread reads or writes these heads' columns.
struct Heads<'a> {
    qkv: &'a [f32],
    mask: &'a [f32],
    texts: &'a [Range<usize>],
    heads: usize,
    head_size: usize,
    out: Context,
    range: Range<usize>,
}

/// `a · b` with 8 independent partial sums, so the loop vectorizes without reassociation flags.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

impl Wide for Heads<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Heads {
            qkv,
            mask,
            texts,
            heads,
            head_size,
            out,
            range,
        } = self;
        assert!(range.end <= heads);
        let hidden = heads * head_size;
        let stride = 3 * hidden;
        let mut scores_buffer = [0f32; FUSED_MAX_SEQ];
        for text in texts {
            let (first, seq) = (text.start, text.len());
            let scores = &mut scores_buffer[..seq];
            // Bounds-checked: `text.end` is at most `qkv`'s row count, so the rows written below
            // are rows of `out`.
            let rows = &qkv[first * stride..text.end * stride];
            let mask = &mask[text.clone()];
            for h in range.clone() {
                let (q_at, k_at, v_at) = (
                    h * head_size,
                    hidden + h * head_size,
                    2 * hidden + h * head_size,
                );
                for i in 0..seq {
                    let q = &rows[i * stride + q_at..][..head_size];
                    let mut max = f32::NEG_INFINITY;
                    for (j, score) in scores.iter_mut().enumerate() {
                        let k = &rows[j * stride + k_at..][..head_size];
                        *score = dot(q, k) + mask[j];
                        max = max.max(*score);
                    }
                    let mut sum = 0f32;
                    for score in scores.iter_mut() {
                        *score = (*score - max).exp();
                        sum += *score;
                    }
                    let inv = 1.0 / sum;
                    // SAFETY: row `first + i` < `text.end` <= the buffer's rows (the slice of
                    // `qkv` above is bounds-checked) and head `h` < `heads`, so these `head_size`
                    // floats lie inside `out`; they are this thread's heads (`Heads`' invariant).
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.0.add((first + i) * hidden + q_at),
                            head_size,
                        )
                    };
                    for (j, &p) in scores.iter().enumerate() {
                        let p = p * inv;
                        let v = &rows[j * stride + v_at..][..head_size];
                        for (o, v) in o.iter_mut().zip(v) {
                            *o += p * v;
                        }
                    }
                }
            }
        }
    }
}
