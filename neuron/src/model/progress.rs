//! A reader that reports how many bytes of a model have been read, so a long
//! load shows progress.

use std::io::{Read, Seek, SeekFrom};

/// Progress callback: (bytes done, bytes total).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Wraps a reader; calls `report(done, total)` whenever another
/// `1/STEPS` of `total` has been read, and once at the end.
pub struct ProgressReader<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    next_report: u64,
    report: ProgressFn<'a>,
}

const STEPS: u64 = 50;

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, total: u64, report: ProgressFn<'a>) -> Self {
        ProgressReader {
            inner,
            done: 0,
            total,
            next_report: total / STEPS,
            report,
        }
    }

    /// Reports completion (whatever was counted) and returns the reader.
    pub fn finish(self) -> R {
        (self.report)(self.total, self.total);
        self.inner
    }

    fn count(&mut self, n: usize) {
        self.done = (self.done + n as u64).min(self.total);
        if self.done >= self.next_report && self.done < self.total {
            (self.report)(self.done, self.total);
            self.next_report = self.done + (self.total / STEPS).max(1);
        }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(n);
        Ok(n)
    }
}

impl<R: Seek> Seek for ProgressReader<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }

    // Delegated so a `BufReader` underneath keeps its buffer: the default
    // (`seek(Current(0))`) would discard it on every call, and the GGUF
    // reader asks for its position once per metadata value.
    fn stream_position(&mut self) -> std::io::Result<u64> {
        self.inner.stream_position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::Mutex;

    #[test]
    fn reports_monotonic_progress_ending_at_total() {
        let seen = Mutex::new(Vec::new());
        let report = |d: u64, t: u64| seen.lock().unwrap().push((d, t));
        let data = vec![7u8; 10_000];
        let mut reader = ProgressReader::new(Cursor::new(data), 10_000, &report);
        let mut buf = [0u8; 100];
        while reader.read(&mut buf).unwrap() > 0 {}
        reader.finish();
        let seen = seen.into_inner().unwrap();
        assert!(seen.len() >= 10, "only {} reports", seen.len());
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(*seen.last().unwrap(), (10_000, 10_000));
    }
}
