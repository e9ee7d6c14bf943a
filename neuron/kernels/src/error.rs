//! The error type of every fallible kernel entry point.

use crate::QuantType;

/// Why a kernel call was rejected. Kernels never panic on bad input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    /// `cols` is zero or not a multiple of the type's block size.
    #[error("{qtype}: cols {cols} is not a positive multiple of the block size {block}")]
    BadCols {
        qtype: QuantType,
        cols: usize,
        block: usize,
    },
    /// `rows` is zero.
    #[error("rows must be positive")]
    ZeroRows,
    /// The byte buffer does not hold exactly `rows * cols / block_elems` blocks.
    #[error("{qtype} {rows}x{cols}: expected {expected} bytes of data, got {got}")]
    DataLength {
        qtype: QuantType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    /// A dense input slice has the wrong length.
    #[error("input has {got} values, expected {expected}")]
    InputLength { expected: usize, got: usize },
    /// The output slice is too small.
    #[error("output has room for {got} values, needs {needed}")]
    OutputTooSmall { needed: usize, got: usize },
    /// A row index past the end.
    #[error("row {row} out of range (rows = {rows})")]
    RowOutOfRange { row: usize, rows: usize },
    /// The requested SIMD level is not available on this CPU.
    #[error("SIMD level {requested} is not available (best: {available})")]
    SimdUnavailable {
        requested: crate::SimdLevel,
        available: crate::SimdLevel,
    },
    /// A size computation overflowed.
    #[error("size overflow")]
    Overflow,
}
