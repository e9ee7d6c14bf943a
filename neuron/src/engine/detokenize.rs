//! Incremental detokenization: turns a growing list of token ids into text
//! deltas, holding back bytes until they form whole UTF-8 characters, so a
//! multi-byte character split across tokens is never emitted in halves.
//! Special tokens are left out, except the ones the output parser reads
//! (a Mistral `[TOOL_CALLS]`, a Llama `<|python_tag|>`), which are kept.

use std::collections::HashMap;
use std::sync::Arc;

use tokenizers::Tokenizer;

/// Special tokens decoded as their text: id → text.
pub type KeptTokens = Arc<HashMap<u32, String>>;

pub struct IncrementalDecoder {
    tokenizer: Arc<Tokenizer>,
    kept: KeptTokens,
    tokens: Vec<u32>,
    /// Start of the window decoded for context (text before `read` is
    /// already emitted).
    prefix: usize,
    read: usize,
    /// `decode(tokens[prefix..read])`, kept so each token costs one decode.
    prefix_text: String,
}

impl IncrementalDecoder {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Self::keeping(tokenizer, KeptTokens::default())
    }

    /// A decoder that writes the `kept` special tokens' text.
    pub fn keeping(tokenizer: Arc<Tokenizer>, kept: KeptTokens) -> Self {
        IncrementalDecoder {
            tokenizer,
            kept,
            tokens: Vec::new(),
            prefix: 0,
            read: 0,
            prefix_text: String::new(),
        }
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, String> {
        let plain = |ids: &[u32]| self.tokenizer.decode(ids, true).map_err(|e| e.to_string());
        if !tokens.iter().any(|t| self.kept.contains_key(t)) {
            return plain(tokens);
        }
        // The runs between kept tokens decoded as usual, the kept ones as
        // their text.
        let mut out = String::new();
        for run in tokens.split_inclusive(|t| self.kept.contains_key(t)) {
            match run.split_last() {
                Some((last, body)) if self.kept.contains_key(last) => {
                    out.push_str(&plain(body)?);
                    out.push_str(&self.kept[last]);
                }
                _ => out.push_str(&plain(run)?),
            }
        }
        Ok(out)
    }

    /// Adds a token; returns the new text, if any is complete.
    pub fn push(&mut self, token: u32) -> Result<Option<String>, String> {
        self.tokens.push(token);
        let now = self.decode(&self.tokens[self.prefix..])?;
        let before = self.prefix_text.len();
        if now.len() > before && !now.ends_with('\u{FFFD}') {
            // `before` is a prefix of `now` for byte-level BPE; guard anyway.
            let delta = now.get(before..).unwrap_or_default().to_string();
            self.prefix = self.read;
            self.read = self.tokens.len();
            self.prefix_text = self.decode(&self.tokens[self.prefix..self.read])?;
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }

    /// Whatever is left at the end of generation (possibly an incomplete
    /// character, decoded lossily).
    pub fn flush(&mut self) -> Result<Option<String>, String> {
        let before = self.prefix_text.len();
        let now = self.decode(&self.tokens[self.prefix..])?;
        self.prefix = self.tokens.len();
        self.read = self.tokens.len();
        self.prefix_text.clear();
        Ok((now.len() > before).then(|| now.get(before..).unwrap_or_default().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::{BPE, Vocab};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    /// Byte-level BPE with one token per byte: every multi-byte character
    /// spans several tokens.
    fn bytes_tokenizer() -> Tokenizer {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort();
        let mut vocab = Vocab::default();
        for (i, c) in alphabet.iter().enumerate() {
            vocab.insert(c.to_string(), i as u32);
        }
        let mut tok = Tokenizer::new(
            BPE::builder()
                .vocab_and_merges(vocab, vec![])
                .build()
                .unwrap(),
        );
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        tok
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        let tok = bytes_tokenizer();
        let text = "a é 🦀 b";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert!(ids.len() > text.chars().count(), "bytes, not chars");
        let mut dec = IncrementalDecoder::new(Arc::new(tok.clone()));
        let mut out = String::new();
        for id in ids {
            if let Some(delta) = dec.push(id).unwrap() {
                assert!(
                    !delta.contains('\u{FFFD}'),
                    "emitted a broken character: {delta:?}"
                );
                out.push_str(&delta);
            }
        }
        if let Some(rest) = dec.flush().unwrap() {
            out.push_str(&rest);
        }
        assert_eq!(out, text);
    }

    #[test]
    fn a_dangling_partial_character_is_flushed() {
        let tok = bytes_tokenizer();
        let ids = tok.encode("é", false).unwrap().get_ids().to_vec();
        let mut dec = IncrementalDecoder::new(Arc::new(tok.clone()));
        assert_eq!(dec.push(ids[0]).unwrap(), None);
        assert!(dec.flush().unwrap().is_some());
    }

    #[test]
    fn kept_special_tokens_are_written_others_left_out() {
        let mut tok = bytes_tokenizer();
        tok.add_special_tokens(&[
            tokenizers::AddedToken::from("[TOOL_CALLS]", true),
            tokenizers::AddedToken::from("</s>", true),
        ]);
        let calls = tok.token_to_id("[TOOL_CALLS]").unwrap();
        let ids = tok
            .encode("a</s>b[TOOL_CALLS]c", false)
            .unwrap()
            .get_ids()
            .to_vec();
        let kept: KeptTokens = Arc::new(HashMap::from([(calls, "[TOOL_CALLS]".to_string())]));
        let decode = |kept: KeptTokens| {
            let mut dec = IncrementalDecoder::keeping(Arc::new(tok.clone()), kept);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&dec.push(id).unwrap().unwrap_or_default());
            }
            out.push_str(&dec.flush().unwrap().unwrap_or_default());
            out
        };
        assert_eq!(decode(kept), "ab[TOOL_CALLS]c");
        assert_eq!(decode(KeptTokens::default()), "abc");
    }
}
