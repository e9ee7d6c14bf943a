//! The prompt cache: KV caches of recent sequences of one model, kept so
//! that a request sharing a prefix with one of them (a chat's next turn,
//! an agent loop, a common system prompt) prefills only what is new.
//!
//! - A request starts from the entry sharing the longest token prefix with
//!   its prompt, capped one short of the prompt (the last prompt token must
//!   run to give logits).
//! - An entry wholly inside the prompt is moved out (no copy); a partial
//!   match copies just the shared prefix and leaves the entry in place.
//! - Inserting a sequence drops entries that are prefixes of it, so an
//!   agent loop keeps one entry per thread.
//! - Bounded by bytes (LRU) and by an entry count.

use candle_core::Result;

use super::kv_cache::KvCache;

/// Fewer shared tokens than this are not worth a copy.
const MIN_REUSE: usize = 16;

struct Entry {
    /// Exactly the tokens whose keys and values `cache` holds.
    tokens: Vec<u32>,
    cache: KvCache,
}

pub struct PromptCache {
    /// Least recently used first.
    entries: Vec<Entry>,
    budget_bytes: u64,
    max_entries: usize,
}

/// Where a request starts.
pub struct Start {
    pub cache: KvCache,
    /// Prompt tokens already in `cache`.
    pub reused: usize,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PromptCache {
    pub fn new(budget_bytes: u64, max_entries: usize) -> Self {
        PromptCache {
            entries: Vec::new(),
            budget_bytes,
            max_entries,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.cache.bytes()).sum()
    }

    /// The best starting cache for `prompt`; `fresh` makes an empty one
    /// when nothing useful is cached.
    pub fn start(&mut self, prompt: &[u32], fresh: impl FnOnce() -> KvCache) -> Result<Start> {
        let limit = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .max_by_key(|&(i, n)| (n, i));
        let Some((i, shared)) = best.filter(|&(_, n)| n >= MIN_REUSE) else {
            return Ok(Start {
                cache: fresh(),
                reused: 0,
            });
        };
        if shared == self.entries[i].tokens.len() {
            let entry = self.entries.remove(i);
            return Ok(Start {
                cache: entry.cache,
                reused: shared,
            });
        }
        let cache = self.entries[i].cache.copy_prefix(shared)?;
        let entry = self.entries.remove(i);
        self.entries.push(entry);
        Ok(Start {
            cache,
            reused: shared,
        })
    }

    /// Keeps `cache`, which holds exactly `tokens`.
    pub fn insert(&mut self, tokens: Vec<u32>, mut cache: KvCache) {
        cache.truncate(tokens.len());
        if cache.len() != tokens.len() || tokens.len() < MIN_REUSE {
            return;
        }
        if self
            .entries
            .iter()
            .any(|e| e.tokens.len() >= tokens.len() && e.tokens.starts_with(&tokens))
        {
            // Something cached already covers this sequence.
            return;
        }
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        if cache.bytes() > self.budget_bytes {
            return;
        }
        self.entries.push(Entry { tokens, cache });
        while self.entries.len() > self.max_entries || self.bytes() > self.budget_bytes {
            self.entries.remove(0);
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{Device, Tensor};

    use super::*;
    use crate::runtime::kv_cache::{KvLayout, KvMeter};

    fn layout() -> Arc<KvLayout> {
        Arc::new(KvLayout {
            layers: 1,
            kv_heads: 1,
            head_dim: 2,
            max_tokens: 4096,
            device: Device::Cpu,
        })
    }

    /// A cache holding `tokens`, each token's key filled with its id.
    fn filled(tokens: &[u32], meter: &Arc<KvMeter>) -> KvCache {
        let mut c = KvCache::new(layout(), meter.clone());
        let vals: Vec<f32> = tokens.iter().flat_map(|&t| [t as f32, t as f32]).collect();
        let k = Tensor::from_vec(vals, (1, 1, tokens.len(), 2), &Device::Cpu).unwrap();
        c.append(0, &k, &k).unwrap();
        c.advance(tokens.len());
        c
    }

    fn seq(n: u32) -> Vec<u32> {
        (0..n).collect()
    }

    #[test]
    fn a_follow_up_turn_takes_the_whole_entry() {
        let meter = Arc::new(KvMeter::default());
        let mut pc = PromptCache::new(u64::MAX, 8);
        pc.insert(seq(40), filled(&seq(40), &meter));
        let prompt = seq(60);
        let s = pc.start(&prompt, || unreachable!()).unwrap();
        assert_eq!(s.reused, 40);
        assert_eq!(s.cache.len(), 40);
        assert!(pc.is_empty(), "the entry moved to the request");
    }

    #[test]
    fn a_partial_match_copies_the_prefix_and_keeps_the_entry() {
        let meter = Arc::new(KvMeter::default());
        let mut pc = PromptCache::new(u64::MAX, 8);
        pc.insert(seq(40), filled(&seq(40), &meter));
        let mut prompt = seq(30);
        prompt.extend([999, 998, 997]);
        let s = pc.start(&prompt, || unreachable!()).unwrap();
        assert_eq!((s.reused, s.cache.len()), (30, 30));
        assert_eq!(pc.len(), 1);
    }

    #[test]
    fn the_last_prompt_token_always_runs() {
        let meter = Arc::new(KvMeter::default());
        let mut pc = PromptCache::new(u64::MAX, 8);
        pc.insert(seq(40), filled(&seq(40), &meter));
        let s = pc.start(&seq(40), || unreachable!()).unwrap();
        assert_eq!(s.reused, 39);
    }

    #[test]
    fn short_or_unrelated_prompts_start_fresh() {
        let meter = Arc::new(KvMeter::default());
        let mut pc = PromptCache::new(u64::MAX, 8);
        pc.insert(seq(40), filled(&seq(40), &meter));
        let other: Vec<u32> = (100..160).collect();
        let s = pc
            .start(&other, || KvCache::new(layout(), meter.clone()))
            .unwrap();
        assert_eq!(s.reused, 0);
        assert_eq!(pc.len(), 1);
    }

    #[test]
    fn inserting_a_longer_turn_replaces_its_prefixes() {
        let meter = Arc::new(KvMeter::default());
        let mut pc = PromptCache::new(u64::MAX, 8);
        pc.insert(seq(20), filled(&seq(20), &meter));
        pc.insert(seq(30), filled(&seq(30), &meter));
        assert_eq!(pc.len(), 1);
        // A shorter sequence already covered is not stored twice.
        pc.insert(seq(25), filled(&seq(25), &meter));
        assert_eq!(pc.len(), 1);
    }

    #[test]
    fn the_budget_evicts_least_recently_used() {
        let meter = Arc::new(KvMeter::default());
        let one = filled(&seq(20), &meter).bytes();
        let mut pc = PromptCache::new(2 * one, 8);
        for base in [1000u32, 2000, 3000] {
            let t: Vec<u32> = (base..base + 20).collect();
            pc.insert(t.clone(), filled(&t, &meter));
        }
        assert_eq!(pc.len(), 2);
        assert!(pc.bytes() <= 2 * one);
        let first: Vec<u32> = (1000..1030).collect();
        let s = pc
            .start(&first, || KvCache::new(layout(), meter.clone()))
            .unwrap();
        assert_eq!(s.reused, 0, "the oldest entry was evicted");
        drop(s);
        drop(pc);
        assert_eq!(
            meter.bytes(),
            0,
            "evicted and dropped caches free their bytes"
        );
    }
}
