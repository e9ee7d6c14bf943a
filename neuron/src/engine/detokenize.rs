//! Incremental detokenization: turns a growing list of token ids into text
//! deltas, holding back bytes until they form whole UTF-8 characters, so a
//! multi-byte character split across tokens is never emitted in halves.

use tokenizers::Tokenizer;

pub struct IncrementalDecoder<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    /// Start of the window decoded for context (text before `read` is
    /// already emitted).
    prefix: usize,
    read: usize,
}

impl<'a> IncrementalDecoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        IncrementalDecoder {
            tokenizer,
            tokens: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, String> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|e| e.to_string())
    }

    /// Adds a token; returns the new text, if any is complete.
    pub fn push(&mut self, token: u32) -> Result<Option<String>, String> {
        self.tokens.push(token);
        let before = self.decode(&self.tokens[self.prefix..self.read])?;
        let now = self.decode(&self.tokens[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            // `before` is a prefix of `now` for byte-level BPE; guard anyway.
            let delta = now.get(before.len()..).unwrap_or_default().to_string();
            self.prefix = self.read;
            self.read = self.tokens.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }

    /// Whatever is left at the end of generation (possibly an incomplete
    /// character, decoded lossily).
    pub fn flush(&mut self) -> Result<Option<String>, String> {
        let before = self.decode(&self.tokens[self.prefix..self.read])?;
        let now = self.decode(&self.tokens[self.prefix..])?;
        self.prefix = self.tokens.len();
        self.read = self.tokens.len();
        Ok((now.len() > before.len())
            .then(|| now.get(before.len()..).unwrap_or_default().to_string()))
    }
}
