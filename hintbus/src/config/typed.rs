//! A section into its serde struct. config-rs's `Value` is the deserializer (a table of the
//! section's texts; it gives `Option`s and strings to serde, and names the key whose value
//! failed), and [`Part::err`] adds the value and where it came from.

use super::error::ConfigError;
use super::load::Part;
use serde::de::{DeserializeOwned, Error as _, Visitor};

/// The keys a struct takes. A derived `Deserialize` hands its field names to the
/// deserializer's `deserialize_struct`; this deserializer only listens, and fails.
pub fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Listen<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Listen<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("fields listened to"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut f: &'static [&'static str] = &[];
    let _ = T::deserialize(Listen(&mut f));
    f
}

impl Part<'_> {
    /// A key that is none of `known` is an error: a typo must not be ignored.
    pub fn only_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self.entries().find(|e| !known.contains(&e.key.as_str())) {
            Some(e) => Err(self.err(&e.key, format!("unknown key (known here: {})", known.join(", ")))),
            None => Ok(()),
        }
    }

    /// The section as a `T`, every key one of `T`'s.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.only_keys(fields::<T>())?;
        self.typed_part()
    }

    /// A `T` from the keys of the section that `T` takes (a `[server-x]` holds two structs).
    pub fn typed_part<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let keys = fields::<T>();
        let table: config::Map<String, config::Value> = self
            .entries()
            .filter(|e| keys.contains(&e.key.as_str()))
            .map(|e| (e.key.clone(), config::Value::new(None, e.value.clone())))
            .collect();
        T::deserialize(config::Value::new(None, config::ValueKind::Table(table))).map_err(|e| {
            // config-rs names the key of a value that failed (its `At`); unknown keys were
            // refused above, so every error here is a value's.
            let message = |e: config::ConfigError| match e {
                config::ConfigError::Message(m) => m,
                other => other.to_string(),
            };
            match e {
                config::ConfigError::At {
                    error, key: Some(key), ..
                } => self.err(&key, message(*error)),
                other => self.section_err(message(other)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        a: Option<String>,
        b_c: Option<String>,
    }

    #[test]
    fn fields_are_listened_to() {
        assert_eq!(super::fields::<S>(), &["a", "b_c"]);
    }
}
