//! One dense layer of the encoder at the precision the server runs: f32 ([`Linear`], the
//! default, exact) or int8 ([`QuantizedLinear`], `--dtype int8`). A layer starts f32 and is
//! quantized in place once calibration has measured its inputs.

use super::linear::Linear;
use super::quantized::{self, QuantizedLinear};
use super::team::Team;
use candle_core::{Result, Tensor};

/// A dense layer, f32 or int8.
pub enum Dense {
    /// Packed f32 weights.
    F32(Linear),
    /// Quantized weights, VNNI kernel.
    Int8(QuantizedLinear),
}

impl Dense {
    /// `x · W + b` (and the activation), at the layer's precision.
    ///
    /// # Errors
    /// As [`Linear::forward`] / [`QuantizedLinear::forward`].
    pub fn forward(&self, x: &Tensor, team: Option<&Team>) -> Result<Tensor> {
        match self {
            Dense::F32(linear) => linear.forward(x, team),
            Dense::Int8(linear) => linear.forward(x, team),
        }
    }

    /// `(inputs, outputs)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Dense::F32(linear) => linear.shape(),
            Dense::Int8(linear) => linear.shape(),
        }
    }

    /// Turns an f32 layer into int8 on `kernel`, given each input channel's largest |x| on the
    /// calibration corpus, its weights on huge pages when `huge_pages`. A shape the int8 kernel
    /// does not take stays f32; returns whether it is int8 now.
    ///
    /// # Errors
    /// When the f32 weight cannot be read back.
    pub fn quantize(
        &mut self,
        channel_max: &[f32],
        kernel: quantized::Kernel,
        huge_pages: bool,
    ) -> Result<bool> {
        let Dense::F32(linear) = self else {
            return Ok(true);
        };
        let (inputs, outputs) = linear.shape();
        if !quantized::fits(inputs, outputs) {
            return Ok(false);
        }
        let mut int8 = QuantizedLinear::new(
            &linear.matrix()?,
            inputs,
            outputs,
            linear.bias().to_vec(),
            channel_max,
            kernel,
            huge_pages,
        )?;
        if let Some(activation) = linear.activation() {
            int8 = int8.with_activation(activation);
        }
        *self = Dense::Int8(int8);
        Ok(true)
    }
}
