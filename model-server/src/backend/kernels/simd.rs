//! The widest vectors this CPU has, for the elementwise kernels (activation, layer norm,
//! attention). The binary is built for baseline x86-64 so it runs on any CPU, which leaves
//! plain loops at SSE2's 4 lanes; [`dispatch`] runs a [`Wide`] body compiled twice more, for
//! AVX-512 and for AVX2 + FMA, picking one at run time, and [`wide_fn!`] writes that for a plain
//! function. Rust never fuses a multiply and an add on its own, so every variant computes the
//! same bits: only the vector width differs.
//!
//! What it owns: the one `unsafe` call of each width, into a `#[target_feature]` variant, made
//! only after [`level`] saw those features on this CPU. A [`Wide`] body is safe code, so running
//! it with more features enabled changes only how it is compiled.

use std::sync::OnceLock;

/// Which variant [`dispatch`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 F/BW/DQ/VL: 16 lanes.
    Avx512,
    /// AVX2 with FMA: 8 lanes.
    Avx2,
    /// The build's baseline (SSE2 on x86-64).
    Base,
}

/// This CPU's level, detected once.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return Level::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Level::Avx2;
        }
    }
    Level::Base
}

/// A loop body to compile at every [`Level`]. Implement `run` with `#[inline(always)]` (and the
/// helpers it calls too), so it is compiled inside each `#[target_feature]` variant.
pub trait Wide {
    /// What the body returns.
    type Output;
    /// The body.
    fn run(self) -> Self::Output;
}

/// Runs `body` at this CPU's [`level`].
#[inline(always)]
pub fn dispatch<W: Wide>(body: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        fn avx512<W: Wide>(body: W) -> W::Output {
            body.run()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<W: Wide>(body: W) -> W::Output {
            body.run()
        }
        match level() {
            // SAFETY: `level` saw AVX-512 F/BW/DQ/VL (and so AVX2 and FMA) on this CPU; the body
            // is safe code, so these features are all the variant needs.
            Level::Avx512 => return unsafe { avx512(body) },
            // SAFETY: `level` saw AVX2 and FMA on this CPU; the body is safe code.
            Level::Avx2 => return unsafe { avx2(body) },
            Level::Base => {}
        }
    }
    body.run()
}

/// Defines a function whose body is compiled for [`Level::Avx512`], [`Level::Avx2`] and the
/// baseline, and runs the variant [`level`] picks (through [`dispatch`]). The body is an
/// `#[inline(always)]` function, so it is compiled inside each `#[target_feature]` variant
/// (helpers it calls should be `#[inline(always)]` too). The expansion has no `unsafe`: it may be
/// used anywhere in the crate.
macro_rules! wide_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            struct Call<A>(A);
            impl $crate::backend::kernels::simd::Wide for Call<($($ty,)*)> {
                type Output = $crate::backend::kernels::simd::wide_fn!(@output $($ret)?);
                #[inline(always)]
                fn run(self) -> Self::Output {
                    let ($($arg,)*) = self.0;
                    body($($arg),*)
                }
            }
            $crate::backend::kernels::simd::dispatch(Call(($($arg,)*)))
        }
    };
    (@output) => { () };
    (@output $ret:ty) => { $ret };
}
pub(crate) use wide_fn;

/// Sum with 16 independent partial sums, so the loop vectorizes without reassociation flags
/// (a plain `.sum()` is one serial chain of adds).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `Σ (v - mean)²`, with [`sum`]'s partial sums.
#[inline(always)]
pub fn squared_deviations(values: &[f32], mean: f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += (v - mean) * (v - mean);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    wide_fn! {
        fn scaled_sum(values: &[f32], scale: f32) -> f32 {
            values.iter().map(|v| v * scale).sum()
        }
    }

    #[test]
    fn every_variant_computes_the_same_bits() {
        let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let wide = scaled_sum(&values, 1.5);
        let plain: f32 = values.iter().map(|v| v * 1.5).sum();
        assert_eq!(wide.to_bits(), plain.to_bits(), "level {:?}", level());
    }

    #[test]
    fn sums_match_an_f64_reference() {
        let values: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.11).cos() * 3.0).collect();
        let exact: f64 = values.iter().map(|&v| f64::from(v)).sum();
        assert!((f64::from(sum(&values)) - exact).abs() < 1e-3);
        let mean = (exact / values.len() as f64) as f32;
        let exact_sq: f64 = values
            .iter()
            .map(|&v| (f64::from(v) - f64::from(mean)).powi(2))
            .sum();
        assert!((f64::from(squared_deviations(&values, mean)) - exact_sq).abs() < 1e-2);
    }
}
