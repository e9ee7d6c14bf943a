//! The gated feed-forward block: `down(silu(gate(x)) * up(x))`, with gate
//! and up fused into one matmul when the weights allow it.

use candle_core::{D, Result, Tensor};

use super::linear::Linear;

#[derive(Clone)]
pub struct Mlp {
    gate_up: GateUp,
    down: Linear,
}

#[derive(Clone)]
enum GateUp {
    Fused(Linear, usize),
    Separate(Linear, Linear),
}

impl Mlp {
    pub fn new(gate: Linear, up: Linear, down: Linear) -> Result<Self> {
        let width = gate.out_features();
        let gate_up = match Linear::fuse(&[&gate, &up])? {
            Some(fused) => GateUp::Fused(fused, width),
            None => GateUp::Separate(gate, up),
        };
        Ok(Mlp { gate_up, down })
    }

    pub fn bytes(&self) -> u64 {
        self.down.bytes()
            + match &self.gate_up {
                GateUp::Fused(l, _) => l.bytes(),
                GateUp::Separate(g, u) => g.bytes() + u.bytes(),
            }
    }

    /// `x`: `(rows, hidden)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = match &self.gate_up {
            GateUp::Fused(l, width) => {
                let y = l.forward(x)?;
                (
                    y.narrow(D::Minus1, 0, *width)?,
                    y.narrow(D::Minus1, *width, *width)?,
                )
            }
            GateUp::Separate(g, u) => (g.forward(x)?, u.forward(x)?),
        };
        let h = (candle_nn::ops::silu(&gate)? * up)?;
        self.down.forward(&h)
    }
}
