//! The contract's rules for an entity's attributes, checked on the JSON text as sent (the API's
//! body and the import command's files alike) before any backend sees it: an object, nested at
//! most [`MAX_DEPTH`] deep, no key twice in one object (a parser keeps one of them, and which one
//! differs between PostgreSQL and others, so the value would not come back as sent), and no NUL
//! in any string or key (PostgreSQL's text cannot hold it). Both backends then store the text
//! itself, so it comes back equal to what was sent.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// How deep attributes may nest: the object itself is depth 1.
pub const MAX_DEPTH: usize = 32;

/// Checks attributes' JSON text; the error says what breaks which rule.
pub fn check(text: &str) -> Result<(), String> {
    if !text.trim_start().starts_with('{') {
        return Err("attributes must be a JSON object".into());
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Walk { depth: 1 }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| format!("attributes: {e}"))
}

/// One value, at `depth`.
#[derive(Clone, Copy)]
struct Walk {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Walk {
    /// The walk of the values inside this array or object; refused when this container is
    /// already past the limit.
    fn inside<E: de::Error>(&self) -> Result<Walk, E> {
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format!("they nest at most {MAX_DEPTH} deep")));
        }
        Ok(Walk {
            depth: self.depth + 1,
        })
    }
}

fn no_nul<E: de::Error>(text: &str) -> Result<(), E> {
    if text.contains('\0') {
        return Err(E::custom("a string or key cannot contain NUL"));
    }
    Ok(())
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        no_nul(text)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inside = self.inside()?;
        while seq.next_element_seed(inside)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inside = self.inside()?;
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            no_nul(&key)?;
            map.next_value_seed(inside)?;
            if let Some(again) = keys.replace(key) {
                return Err(de::Error::custom(format!(
                    "the key `{}` appears twice in one object",
                    again.escape_default()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, F5 and F9.
    #[test]
    fn attributes_follow_the_contract() {
        assert!(check(r#"{"a": 1, "b": {"c": [1e2, "x", null, true]}}"#).is_ok());
        assert!(check(r#"{}"#).is_ok());
        let refused = |text: &str, why: &str| {
            let error = check(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        };
        refused(r#"{"a": 1, "a": 2}"#, "twice");
        refused(r#"{"x": {"a": 1, "b": 2, "a": 3}}"#, "twice");
        refused(r#"{"a": "x\u0000y"}"#, "NUL");
        refused(r#"{"a\u0000": 1}"#, "NUL");
        refused("[1]", "object");
        refused("1", "object");
        let deep = |n: usize| format!("{}{}", "[".repeat(n - 1), "]".repeat(n - 1));
        let nested = |n: usize| format!("{{\"a\": {}}}", deep(n));
        assert!(check(&nested(MAX_DEPTH)).is_ok());
        refused(&nested(MAX_DEPTH + 1), "nest");
        refused(&nested(100), "");
    }
}
