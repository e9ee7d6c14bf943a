//! Caps on the strings a client sends that the neuron keeps or repeats (in
//! `/models`, every `device_stats` event, error messages): checked before any
//! work, a string over its cap is a 400 naming the field and the limit.

use cortex_common::error::ApiError;

/// Longest model id, bytes.
pub const MAX_MODEL_ID_BYTES: usize = 256;
/// Longest model source (a path or `org/name`), bytes.
pub const MAX_SOURCE_BYTES: usize = 4096;

/// `Err` when `value` is longer than `max` bytes.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::invalid(
            "value_too_long",
            format!(
                "field `{field}` is {} bytes; the limit is {max} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_field_and_limit() {
        assert!(check_len("source", "abc", 3).is_ok());
        let err = check_len("source", "abcd", 3).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.code, "value_too_long");
        assert!(
            err.message.contains("`source`") && err.message.contains("3 bytes"),
            "{}",
            err.message
        );
    }
}
