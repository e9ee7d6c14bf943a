//! The supported ggml block quantization types and their block geometry.

/// A ggml block quantization type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum QuantType {
    /// 32 values: f16 scale `d`, 16 bytes of nibbles; value = (q - 8) * d.
    Q4_0,
    /// 32 values: f16 `d`, f16 `m`, 16 bytes of nibbles; value = q * d + m.
    Q4_1,
    /// 32 values: f16 `d`, 32 signed bytes; value = q * d.
    Q8_0,
    /// 256 values: f16 `d`, `dmin`, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
    Q4K,
    /// 256 values: like Q4K plus 32 bytes of high bits (5-bit quants).
    Q5K,
    /// 256 values: 128 bytes low nibbles, 64 bytes high 2 bits, 16 i8 scales, f16 `d`.
    Q6K,
}

impl QuantType {
    /// Every supported type, for tests and benches.
    pub const ALL: [QuantType; 6] = [
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ];

    /// Number of values in one block: 32 or 256.
    pub fn block_elems(self) -> usize {
        match self {
            QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q8_0 => 32,
            QuantType::Q4K | QuantType::Q5K | QuantType::Q6K => 256,
        }
    }

    /// Bytes of one block, as ggml stores it.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q4_0 => 18,
            QuantType::Q4_1 => 20,
            QuantType::Q8_0 => 34,
            QuantType::Q4K => 144,
            QuantType::Q5K => 176,
            QuantType::Q6K => 210,
        }
    }

    /// Short lower-case name: "q4_0", "q4_1", "q8_0", "q4k", "q5k", "q6k".
    pub fn name(self) -> &'static str {
        match self {
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4K => "q4k",
            QuantType::Q5K => "q5k",
            QuantType::Q6K => "q6k",
        }
    }

    /// Parses a name (case-insensitive); also accepts "q4_k", "q5_k", "q6_k".
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q4_0" => Some(QuantType::Q4_0),
            "q4_1" => Some(QuantType::Q4_1),
            "q8_0" => Some(QuantType::Q8_0),
            "q4k" | "q4_k" => Some(QuantType::Q4K),
            "q5k" | "q5_k" => Some(QuantType::Q5K),
            "q6k" | "q6_k" => Some(QuantType::Q6K),
            _ => None,
        }
    }

    /// True for the 256-value super-block types (dotted with Q8K activations).
    pub(crate) fn is_k(self) -> bool {
        self.block_elems() == 256
    }

    /// Values per scale group inside a block: 32 for the simple types, 16 for
    /// K-quants (Q4K/Q5K scales cover 32 values and are duplicated per 16).
    pub(crate) fn group_elems(self) -> usize {
        if self.is_k() { 16 } else { 32 }
    }

    /// Zero point of the unsigned unpacked quants, as a power of two shift
    /// (value = A * (q - 2^shift) [+ B]); `None` when the type has none.
    pub(crate) fn zero_shift(self) -> Option<u32> {
        match self {
            QuantType::Q4_0 => Some(3),
            QuantType::Q8_0 => Some(7),
            QuantType::Q6K => Some(5),
            QuantType::Q4_1 | QuantType::Q4K | QuantType::Q5K => None,
        }
    }

    /// True when the type has an additive per-group float offset `B`.
    pub(crate) fn has_offset(self) -> bool {
        matches!(self, QuantType::Q4_1 | QuantType::Q4K | QuantType::Q5K)
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
