//! Prompt chunks sized by time: while streams are decoding, every step that
//! carries a prompt chunk holds up their next token for as long as the chunk
//! takes. A fixed chunk of tokens costs more the deeper into a long context
//! it runs (attention grows with the position), so the pacer measures what a
//! prompt token has cost lately, per model, and sizes the chunk to fit a
//! time target. With no stream decoding, a prompt takes whole chunks: there
//! is nobody to hold up.

use std::collections::HashMap;
use std::time::Duration;

/// Smallest paced chunk: below this the tiled GEMM loses its advantage and
/// per-step overhead dominates.
const MIN_CHUNK: usize = 32;
/// Steps with fewer prompt tokens say too little about their cost.
const MIN_SAMPLE: usize = 16;
/// Models tracked at most (ids of models unloaded long ago are dropped).
const MAX_MODELS: usize = 64;

#[derive(Debug)]
pub struct PrefillPacer {
    target: Option<Duration>,
    /// Seconds per prompt token, recent average, per model id.
    per_token: HashMap<String, f64>,
}

impl PrefillPacer {
    /// `target` of zero turns pacing off (whole chunks always).
    pub fn new(target: Duration) -> Self {
        PrefillPacer {
            target: (!target.is_zero()).then_some(target),
            per_token: HashMap::new(),
        }
    }

    /// Prompt tokens a chunk of `model` may take this step, at most `chunk`.
    pub fn cap(&self, model: &str, decoding: bool, chunk: usize) -> usize {
        match (self.target, self.per_token.get(model)) {
            (Some(target), Some(&cost)) if decoding && cost > 0.0 => {
                let fit = (target.as_secs_f64() / cost) as usize;
                fit.clamp(MIN_CHUNK.min(chunk), chunk)
            }
            _ => chunk,
        }
    }

    /// A pass of `model` ran `prompt_tokens` prompt tokens (and perhaps some
    /// decode tokens, whose cost is charged to the prompt: the estimate errs
    /// towards smaller chunks) in `elapsed`.
    pub fn observe(&mut self, model: &str, prompt_tokens: usize, elapsed: Duration) {
        if self.target.is_none() || prompt_tokens < MIN_SAMPLE {
            return;
        }
        let sample = elapsed.as_secs_f64() / prompt_tokens as f64;
        if let Some(cost) = self.per_token.get_mut(model) {
            *cost = 0.5 * *cost + 0.5 * sample;
            return;
        }
        if self.per_token.len() >= MAX_MODELS {
            self.per_token.clear();
        }
        self.per_token.insert(model.to_string(), sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn whole_chunks_until_a_cost_is_known_or_when_nobody_decodes() {
        let mut p = PrefillPacer::new(250 * MS);
        assert_eq!(p.cap("m", true, 256), 256);
        p.observe("m", 256, 1024 * MS); // 4 ms a token
        assert_eq!(p.cap("m", false, 256), 256);
        assert_eq!(p.cap("other", true, 256), 256);
    }

    #[test]
    fn chunks_fit_the_target_and_follow_the_cost() {
        let mut p = PrefillPacer::new(250 * MS);
        p.observe("m", 256, 1024 * MS); // 4 ms a token
        assert_eq!(p.cap("m", true, 256), 62);
        // Deeper into the context a token costs more: the chunk shrinks,
        // but never below the floor.
        p.observe("m", 62, 496 * MS); // 8 ms: average 6 ms
        assert_eq!(p.cap("m", true, 256), 41);
        p.observe("m", 41, 4100 * MS);
        assert_eq!(p.cap("m", true, 256), MIN_CHUNK);
        // Never above the configured chunk, nor the floor above it.
        let mut cheap = PrefillPacer::new(250 * MS);
        cheap.observe("m", 256, 25 * MS);
        assert_eq!(cheap.cap("m", true, 256), 256);
        assert_eq!(p.cap("m", true, 8), 8);
    }

    #[test]
    fn small_samples_are_ignored_and_zero_turns_pacing_off() {
        let mut p = PrefillPacer::new(250 * MS);
        p.observe("m", 4, 1000 * MS);
        assert_eq!(p.cap("m", true, 256), 256);
        let mut off = PrefillPacer::new(Duration::ZERO);
        off.observe("m", 256, 10_000 * MS);
        assert_eq!(off.cap("m", true, 256), 256);
    }
}
