//! `QMatrix`, a quantized weight matrix in ggml block layout, and `quantize`.

use crate::dequant::dequantize_block;
use crate::matmul::Mode;
use crate::quantize::quantize_block;
use crate::{KernelError, QuantType, SimdLevel};

/// A quantized weight matrix in ggml block layout: `rows` output features,
/// each row `cols` input features = `cols / block_elems` blocks, rows stored
/// one after another (exactly the bytes of a GGUF tensor of shape
/// `[cols, rows]` in GGUF order, i.e. candle QTensor data of shape
/// `(rows, cols)`). The bytes are kept as given (no repacked copy).
#[derive(Clone)]
pub struct QMatrix {
    qtype: QuantType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("qtype", &self.qtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

fn check_shape(qtype: QuantType, rows: usize, cols: usize) -> Result<usize, KernelError> {
    let be = qtype.block_elems();
    if cols == 0 || !cols.is_multiple_of(be) {
        return Err(KernelError::BadCols {
            qtype,
            cols,
            block: be,
        });
    }
    if rows == 0 {
        return Err(KernelError::ZeroRows);
    }
    (cols / be)
        .checked_mul(qtype.block_bytes())
        .ok_or(KernelError::Overflow)
}

impl QMatrix {
    /// Wraps ggml block bytes; `data` must hold exactly `rows * cols /
    /// block_elems` blocks.
    pub fn new(
        qtype: QuantType,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
    ) -> Result<Self, KernelError> {
        let row_bytes = check_shape(qtype, rows, cols)?;
        let expected = row_bytes.checked_mul(rows).ok_or(KernelError::Overflow)?;
        if data.len() != expected {
            return Err(KernelError::DataLength {
                qtype,
                rows,
                cols,
                expected,
                got: data.len(),
            });
        }
        Ok(QMatrix {
            qtype,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    pub fn qtype(&self) -> QuantType {
        self.qtype
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes held (the block data; there is no second copy).
    pub fn storage_bytes(&self) -> usize {
        self.data.len()
    }
    /// The ggml block bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Bytes of one row of blocks.
    pub(crate) fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// `out[i*rows + j] = sum_c x[i*cols + c] * W[j][c]` for `i in 0..m`
    /// (`x` is m×cols row-major f32, `out` at least m×rows), at
    /// `simd_level()`.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), KernelError> {
        crate::matmul::run(self, crate::simd_level(), x, m, out)
    }

    /// Same with the kernel chosen by the caller: a row's result is then
    /// independent of how many rows share the call (see [`Mode`]).
    pub fn matmul_mode(
        &self,
        mode: Mode,
        x: &[f32],
        m: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        crate::matmul::run_mode(self, crate::simd_level(), mode, x, m, out)
    }

    /// Same with an explicit SIMD level (at most what the CPU supports).
    pub fn matmul_with(
        &self,
        level: SimdLevel,
        x: &[f32],
        m: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        crate::matmul::run(self, level, x, m, out)
    }

    /// Dequantizes row `row` into `out[..cols]` (embedding lookup).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) -> Result<(), KernelError> {
        if row >= self.rows {
            return Err(KernelError::RowOutOfRange {
                row,
                rows: self.rows,
            });
        }
        if out.len() < self.cols {
            return Err(KernelError::OutputTooSmall {
                needed: self.cols,
                got: out.len(),
            });
        }
        let bb = self.qtype.block_bytes();
        let be = self.qtype.block_elems();
        let src = &self.data[row * self.row_bytes..(row + 1) * self.row_bytes];
        for (blk, dst) in src
            .chunks_exact(bb)
            .zip(out[..self.cols].chunks_exact_mut(be))
        {
            dequantize_block(self.qtype, blk, dst);
        }
        Ok(())
    }

    /// The whole matrix as f32, `rows * cols` row-major (reference path).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        let bb = self.qtype.block_bytes();
        let be = self.qtype.block_elems();
        for (blk, dst) in self.data.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
            dequantize_block(self.qtype, blk, dst);
        }
        out
    }
}

/// Quantizes a row-major f32 matrix (`rows × cols`) into `qtype` blocks.
/// Q4_0/Q4_1/Q8_0 use ggml's reference round-to-nearest quantizers; the
/// K-quants a simpler sound scheme (see the `quantize` module source:
/// min/max or abs-max scales, scales quantized, values re-quantized against
/// the stored scales), not ggml's iterative `make_qkx2`/`make_qx` search.
pub fn quantize(
    qtype: QuantType,
    src: &[f32],
    rows: usize,
    cols: usize,
) -> Result<QMatrix, KernelError> {
    let row_bytes = check_shape(qtype, rows, cols)?;
    let n = rows.checked_mul(cols).ok_or(KernelError::Overflow)?;
    if src.len() != n {
        return Err(KernelError::InputLength {
            expected: n,
            got: src.len(),
        });
    }
    let total = row_bytes.checked_mul(rows).ok_or(KernelError::Overflow)?;
    let mut data = vec![0u8; total];
    let be = qtype.block_elems();
    let bb = qtype.block_bytes();
    for (x, blk) in src.chunks_exact(be).zip(data.chunks_exact_mut(bb)) {
        quantize_block(qtype, x, blk);
    }
    QMatrix::new(qtype, rows, cols, data)
}
