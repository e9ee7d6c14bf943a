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

    /// `x`: `(rows, hidden)`, the first `decode_rows` single tokens.
    pub fn forward(&self, x: &Tensor, decode_rows: usize) -> Result<Tensor> {
        let (gate, up) = match &self.gate_up {
            GateUp::Fused(l, width) => {
                let y = l.forward_split(x, decode_rows)?;
                (
                    y.narrow(D::Minus1, 0, *width)?,
                    y.narrow(D::Minus1, *width, *width)?,
                )
            }
            GateUp::Separate(g, u) => (
                g.forward_split(x, decode_rows)?,
                u.forward_split(x, decode_rows)?,
            ),
        };
        let h = (candle_nn::ops::silu(&gate)? * up)?;
        self.down.forward_split(&h, decode_rows)
    }
}
