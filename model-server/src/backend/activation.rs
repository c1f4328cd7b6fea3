//! The activations BERT's feed-forward layers use, on f32 in place: exact (erf) GELU, the tanh
//! approximation, and ReLU. The erf is a branch-free rational approximation the compiler
//! vectorizes (libm's scalar `erff` alone was 9.5% of the profile); [`super::linear`] applies the
//! activation to each tile of its product while the tile is still in cache. It runs at the
//! CPU's vector width ([`super::kernels::simd`]).

use super::kernels::simd::wide_fn;

/// A dense layer's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: exact, with erf (PyTorch's default).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    /// `x = activation(x)` on every value, in place.
    pub fn apply(self, values: &mut [f32]) {
        apply_wide(self, values);
    }
}

wide_fn! {
    /// [`Activation::apply`] at this CPU's vector width.
    fn apply_wide(activation: Activation, values: &mut [f32]) {
        match activation {
            Activation::GeluErf => values.iter_mut().for_each(|x| *x = gelu_erf(*x)),
            Activation::GeluTanh => values.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
            Activation::Relu => values.iter_mut().for_each(|x| *x = x.max(0.0)),
        }
    }
}

/// Exact GELU, `x/2 * (1 + erf(x/√2))`, as PyTorch's default `gelu`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Tanh-approximated GELU (`gelu_new` / `gelu_pytorch_tanh`).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// erf for f32 with no branches or calls, so loops over it vectorize: a rational approximation on
/// [-4, 4] (erf(±4) rounds to ±1 in f32), the one Eigen and XLA use for f32. The unit tests bound
/// its error against an f64 reference.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_f64_reference_within_two_millionths() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let exact = candle_core::cpu::erf::erf_f64(f64::from(x));
            worst = worst.max((f64::from(erf(x)) - exact).abs());
        }
        assert!(worst < 2e-6, "max |erf error| = {worst:e}");
    }

    #[test]
    fn gelu_erf_matches_f64_reference() {
        for i in -800..=800 {
            let x = i as f32 / 100.0;
            let xd = f64::from(x);
            let exact = 0.5 * xd * (1.0 + candle_core::cpu::erf::erf_f64(xd / 2f64.sqrt()));
            let got = f64::from(gelu_erf(x));
            assert!(
                (got - exact).abs() < 1e-5 * (1.0 + exact.abs()),
                "x={x}: {got} vs {exact}"
            );
        }
    }
}
