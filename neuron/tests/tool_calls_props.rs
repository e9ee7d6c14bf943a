//! Property tests for the parser of tool calls a model writes as text
//! (`engine::tool_calls`): however the decoded text is split, it parses
//! like the whole text, and no text makes it panic.

use neuron::engine::tool_calls::{ParsedText, ToolCallParser, parse_tool_calls};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn args_object() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9 .,!?é\n\"\\\\{}]{0,24}".prop_map(Value::String),
    ];
    prop::collection::btree_map("[a-z]{1,6}", leaf, 0..4).prop_map(|m| m.into_iter().collect())
}

proptest! {
    /// Text with tool calls written in, split anywhere, parses like the
    /// whole text; calls come out with their object arguments, text intact.
    #[test]
    fn tool_call_parser_is_split_invariant(
        segments in prop::collection::vec(prop_oneof![
            "[a-zA-Z0-9.,é][a-zA-Z0-9 .,é\n]{0,12}[a-zA-Z0-9.,é]".prop_map(|t| (t, None)),
            ("[a-z_]{1,8}", args_object()).prop_map(|(n, a)| (String::new(), Some((n, a)))),
        ], 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut whole = String::new();
        let mut want_text = String::new();
        let mut want_calls = Vec::new();
        for (t, call) in &segments {
            match call {
                None => { whole.push_str(t); want_text.push_str(t); }
                Some((name, args)) => {
                    whole.push_str(&format!("\n<tool_call>\n{}\n</tool_call>\n", json!({"name": name, "arguments": args})));
                    want_calls.push((name.clone(), args.clone()));
                }
            }
        }
        let parsed = parse_tool_calls(&whole);
        prop_assert_eq!(&parsed.content, &want_text);
        let got: Vec<_> = parsed.tool_calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
        prop_assert_eq!(got, want_calls);
        prop_assert_eq!(split_parse(&whole, &cuts), parsed);
    }

    /// Any text at all: splitting never changes the result, nothing panics.
    #[test]
    fn tool_call_parser_never_panics(s in "(<tool_call>|</tool_call>|[{}\":a-z ]|<|\n|é){0,40}", cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        let parsed = parse_tool_calls(&s);
        prop_assert_eq!(split_parse(&s, &cuts), parsed);
    }

    /// Arbitrary bytes that are text never panic the parser.
    #[test]
    fn arbitrary_text_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(s) = std::str::from_utf8(&b) { let _ = parse_tool_calls(s); }
    }
}

/// `s` fed to one parser in pieces cut at `cuts` (character positions).
fn split_parse(s: &str, cuts: &[usize]) -> ParsedText {
    let chars: Vec<char> = s.chars().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    points.extend([0, chars.len()]);
    points.sort_unstable();
    points.dedup();
    let mut p = ToolCallParser::new();
    let mut pieces = Vec::new();
    for w in points.windows(2) {
        p.push(&chars[w[0]..w[1]].iter().collect::<String>(), &mut pieces);
    }
    p.finish(&mut pieces);
    pieces.into_iter().collect()
}
