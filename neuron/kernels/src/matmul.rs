//! The matmul driver: validates shapes, quantizes the activations (in
//! parallel for prefill-sized inputs), then runs either the GEMV kernels
//! (few activation rows; output rows in chunks of 16 over the pool) or the
//! panel GEMM (one chunk per panel of 16 weight rows; each panel is
//! unpacked once and multiplied with every activation row).

use crate::dot::panel::{NR, Panel};
use crate::dot::{ActRow, scalar};
use crate::pool::{pool, threads};
use crate::quantize_act::{QAct, QActRows, quantize_rows};
use crate::{KernelError, QMatrix, QuantType, SimdLevel};
use std::cell::RefCell;

/// From how many activation rows on the panel GEMM beats per-row GEMVs
/// (the panel unpack costs about 6 GEMV rows for Q4_0/Q4_1/Q8_0 and 3-4
/// for the K-quants, whose GEMV unpacks every super-block anyway).
/// Measured on Zen 4, Q4_1 1536x576, one thread: GEMV 28.7 us per row;
/// GEMM m=8 186 us, m=16 238 us.
fn gemm_min_m(qtype: QuantType) -> usize {
    if qtype.is_k() { 4 } else { 6 }
}

/// Below this many (weight blocks × activation rows) a call stays on the
/// calling thread: dispatch would cost more than it saves.
const PARALLEL_MIN_BLOCKS: usize = 1024;
/// Activation rows from which quantizing them is split over the pool.
const PARALLEL_QUANT_MIN_M: usize = 16;

thread_local! {
    static ACT: RefCell<QAct> = RefCell::new(QAct::default());
    static SCRATCH: RefCell<(Panel, Vec<f32>)> = RefCell::new((Panel::default(), Vec::new()));
}

/// A raw pointer that may cross to pool threads; every use writes a region
/// no other part touches.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to hand disjoint sub-slices of one buffer to the pool's
// parts, each of which is accessed by exactly one thread during `Pool::run`.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

pub(crate) fn run(
    qm: &QMatrix,
    level: SimdLevel,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    run_mode(qm, level, Mode::Auto, x, m, out)
}

/// Which kernel a call runs. The two accumulate in different orders, so a
/// row's result differs between them in the last bits; within one mode a
/// row's result never depends on the other rows of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// GEMV below a per-type row count, GEMM from it: fastest.
    Auto,
    /// GEMV for every row (one decode pass per row).
    Rowwise,
    /// The panel GEMM for every row (scalar level: GEMV).
    Tiled,
}

pub(crate) fn run_mode(
    qm: &QMatrix,
    level: SimdLevel,
    mode: Mode,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let best = crate::simd::detected();
    if level > best {
        return Err(KernelError::SimdUnavailable {
            requested: level,
            available: best,
        });
    }
    let (rows, cols) = (qm.rows(), qm.cols());
    let nx = m.checked_mul(cols).ok_or(KernelError::Overflow)?;
    if x.len() != nx {
        return Err(KernelError::InputLength {
            expected: nx,
            got: x.len(),
        });
    }
    let nout = m.checked_mul(rows).ok_or(KernelError::Overflow)?;
    if out.len() < nout {
        return Err(KernelError::OutputTooSmall {
            needed: nout,
            got: out.len(),
        });
    }
    if m == 0 {
        return Ok(());
    }
    let work = (rows * (cols / qm.qtype().block_elems())).saturating_mul(m);
    let parts = if work < PARALLEL_MIN_BLOCKS {
        1
    } else {
        threads()
    };
    ACT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut qa) => compute(qm, level, mode, x, m, &mut out[..nout], &mut qa, parts),
        Err(_) => compute(
            qm,
            level,
            mode,
            x,
            m,
            &mut out[..nout],
            &mut QAct::default(),
            parts,
        ),
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn compute(
    qm: &QMatrix,
    level: SimdLevel,
    mode: Mode,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    qa: &mut QAct,
    parts: usize,
) {
    quantize_act(qm.qtype(), level, x, m, qm.cols(), qa, parts);
    let rowwise = match mode {
        Mode::Auto => m < gemm_min_m(qm.qtype()),
        Mode::Rowwise => true,
        Mode::Tiled => false,
    };
    if level == SimdLevel::Scalar || rowwise {
        gemv_all(qm, level, m, out, qa, parts);
    } else {
        gemm_all(qm, level, m, out, qa, parts);
    }
}

fn quantize_act(
    qtype: QuantType,
    level: SimdLevel,
    x: &[f32],
    m: usize,
    cols: usize,
    qa: &mut QAct,
    parts: usize,
) {
    qa.prepare(qtype, m, cols);
    let groups = qa.groups;
    let parts = if m >= PARALLEL_QUANT_MIN_M { parts } else { 1 };
    if parts <= 1 {
        let dst = QActRows {
            qs: &mut qa.qs[..m * cols],
            d: &mut qa.d[..m * groups],
            s: &mut qa.s[..m * groups],
            isum: &mut qa.isum[..m * groups],
        };
        quantize_rows(level, qtype, x, dst);
        return;
    }
    const ROWS_PER_CHUNK: usize = 8;
    let (qs, d, s, isum) = (
        SendPtr(qa.qs.as_mut_ptr()),
        SendPtr(qa.d.as_mut_ptr()),
        SendPtr(qa.s.as_mut_ptr()),
        SendPtr(qa.isum.as_mut_ptr()),
    );
    pool().run(m.div_ceil(ROWS_PER_CHUNK), parts, &|c| {
        let (r0, r1) = (c * ROWS_PER_CHUNK, ((c + 1) * ROWS_PER_CHUNK).min(m));
        let n = r1 - r0;
        // SAFETY: `prepare` sized every buffer for `m` rows; chunks cover
        // disjoint row ranges `r0..r1` of them, so the slices never overlap.
        let dst = unsafe {
            QActRows {
                qs: std::slice::from_raw_parts_mut(qs.get().add(r0 * cols), n * cols),
                d: std::slice::from_raw_parts_mut(d.get().add(r0 * groups), n * groups),
                s: std::slice::from_raw_parts_mut(s.get().add(r0 * groups), n * groups),
                isum: std::slice::from_raw_parts_mut(isum.get().add(r0 * groups), n * groups),
            }
        };
        quantize_rows(level, qtype, &x[r0 * cols..r1 * cols], dst);
    });
}

/// One GEMV over weight rows `rows` for activation rows `acts` (row `i`'s
/// results at `out[i * out_stride..]`): each weight block is read once for
/// all of them.
fn gemv_some(
    qm: &QMatrix,
    level: SimdLevel,
    rows: std::ops::Range<usize>,
    acts: &[ActRow<'_>],
    out: &mut [f32],
    out_stride: usize,
) {
    let (qt, w, rb, cols) = (qm.qtype(), qm.data(), qm.row_bytes(), qm.cols());
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `run` checked the level against the CPU; `QMatrix::new`
        // checked `w` holds `rows * row_bytes` bytes; `acts` and `out` are
        // sized by the callers below.
        SimdLevel::Avx512Vnni => unsafe {
            crate::dot::avx512::gemv(qt, w, rb, cols, rows, acts, out, out_stride)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 => unsafe {
            crate::dot::avx2::gemv(qt, w, rb, cols, rows, acts, out, out_stride)
        },
        _ => {
            let n = rows.len();
            for (i, act) in acts.iter().enumerate() {
                let o = &mut out[i * out_stride..i * out_stride + n];
                scalar::gemv(qt, w, rb, cols, rows.clone(), *act, o);
            }
        }
    }
}

thread_local! {
    /// Per-thread output buffer of a GEMV chunk (`m` rows of its columns).
    static GEMV_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn gemv_all(qm: &QMatrix, level: SimdLevel, m: usize, out: &mut [f32], qa: &QAct, parts: usize) {
    let (rows, cols) = (qm.rows(), qm.cols());
    let acts: Vec<ActRow<'_>> = (0..m).map(|i| qa.row(i, cols)).collect();
    if parts <= 1 {
        gemv_some(qm, level, 0..rows, &acts, out, rows);
        return;
    }
    // Small chunks (cheap to claim: each thread walks its own contiguous
    // range and only steals at the end) keep the threads balanced.
    let chunk = 16;
    let optr = SendPtr(out.as_mut_ptr());
    pool().run(rows.div_ceil(chunk), parts, &|c| {
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(rows));
        let n = r1 - r0;
        GEMV_SCRATCH.with(|cell| {
            let mut fresh = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let tmp = match guard.as_mut() {
                Ok(g) => &mut **g,
                Err(_) => &mut fresh,
            };
            if tmp.len() < m * n {
                tmp.resize(m * n, 0.0);
            }
            gemv_some(qm, level, r0..r1, &acts, &mut tmp[..m * n], n);
            for i in 0..m {
                // SAFETY: `out` has m*rows values; chunk c alone writes
                // columns r0..r1 of each output row.
                let o = unsafe { std::slice::from_raw_parts_mut(optr.get().add(i * rows + r0), n) };
                o.copy_from_slice(&tmp[i * n..(i + 1) * n]);
            }
        })
    });
}

fn gemm_all(qm: &QMatrix, level: SimdLevel, m: usize, out: &mut [f32], qa: &QAct, parts: usize) {
    let rows = qm.rows();
    let npanels = rows.div_ceil(NR);
    let optr = SendPtr(out.as_mut_ptr());
    let work = |pi: usize| {
        SCRATCH.with(|cell| {
            let mut fresh = (Panel::default(), Vec::new());
            let mut guard = cell.try_borrow_mut();
            let (panel, tmp) = match guard.as_mut() {
                Ok(g) => &mut **g,
                Err(_) => &mut fresh,
            };
            if tmp.len() < m * NR {
                tmp.resize(m * NR, 0.0);
            }
            let r0 = pi * NR;
            let nr = NR.min(rows - r0);
            gemm_panel(qm, level, panel, qa, m, r0, nr, tmp);
            for i in 0..m {
                // SAFETY: `out` has m*rows values; panel pi (one chunk)
                // alone writes columns r0..r0+nr.
                let o =
                    unsafe { std::slice::from_raw_parts_mut(optr.get().add(i * rows + r0), nr) };
                o.copy_from_slice(&tmp[i * NR..i * NR + nr]);
            }
        })
    };
    pool().run(npanels, parts, &work);
}

#[allow(clippy::too_many_arguments)]
fn gemm_panel(
    qm: &QMatrix,
    level: SimdLevel,
    panel: &mut Panel,
    qa: &QAct,
    m: usize,
    r0: usize,
    nr: usize,
    tmp: &mut [f32],
) {
    let (qt, w, rb, cols) = (qm.qtype(), qm.data(), qm.row_bytes(), qm.cols());
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512Vnni => {
            // SAFETY: `run` checked the level against the CPU; the panel is
            // built for (qt, cols) just before; `qa` holds m rows of cols;
            // `tmp` has at least m*NR values.
            unsafe {
                crate::dot::avx512::build_panel(panel, qt, w, rb, cols, r0, nr);
                crate::dot::avx512::gemm(qt, panel, qa, m, cols, tmp);
            }
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => {
            // SAFETY: as above.
            unsafe {
                crate::dot::avx2::build_panel(panel, qt, w, rb, cols, r0, nr);
                crate::dot::avx2::gemm(qt, panel, qa, m, cols, tmp);
            }
        }
        _ => {
            for (i, o) in tmp.chunks_exact_mut(NR).take(m).enumerate() {
                scalar::gemv(qt, w, rb, cols, r0..r0 + nr, qa.row(i, cols), &mut o[..nr]);
            }
        }
    }
}
