//! Closed sets of words on the wire that a newer peer may extend: an enum
//! whose known variants serialize to fixed strings, and an `Other` variant
//! that keeps any other string as sent. An older reader still parses a
//! newer peer's event (and passes the word on unchanged) instead of
//! dropping it.

/// Declares such an enum: `Variant = "word",` per known value, plus
/// `Other(String)`, with `as_str` and `Display` saying the word.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )*
            /// A word this build does not know (from a newer peer), kept
            /// as it was sent.
            #[serde(untagged)]
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $word, )*
                    $name::Other(word) => word,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    open_enum! {
        /// A test set.
        pub enum Colour {
            Red = "red",
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn known_words_are_variants_and_others_are_kept() {
        let known: Colour = serde_json::from_str(r#""dark_blue""#).unwrap();
        assert_eq!(known, Colour::DarkBlue);
        assert_eq!(known.to_string(), "dark_blue");
        let newer: Colour = serde_json::from_str(r#""ultraviolet""#).unwrap();
        assert_eq!(newer, Colour::Other("ultraviolet".into()));
        assert_eq!(serde_json::to_string(&newer).unwrap(), r#""ultraviolet""#);
        assert_eq!(serde_json::to_string(&Colour::Red).unwrap(), r#""red""#);
        assert!(serde_json::from_str::<Colour>("7").is_err());
    }
}
