//! Decoding a command into the entity's command enum: the command's name
//! picks the variant, its payload (JSON) fills the variant's fields.
//!
//! A serde `Deserializer` over the pair `(name, payload)` that only
//! answers enums: the variant identifier is read from the name, so an
//! unknown name is told apart from a payload that does not decode.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::Failure;

/// Decodes command `name` with `payload` into `C`, a serde enum whose
/// variants are the commands.
///
/// # Errors
///
/// An [`unknown_command`](Failure::unknown_command) failure when no variant
/// has that name, listing those that do; an
/// [`invalid_payload`](Failure::invalid_payload) failure when the payload is
/// not that variant's argument.
pub(crate) fn decode<C: DeserializeOwned>(name: &str, payload: &[u8]) -> Result<C, Failure> {
    C::deserialize(CommandDeserializer { name, payload }).map_err(|error| match error {
        DecodeError::UnknownCommand { expected } if expected.is_empty() => {
            Failure::unknown_command(format!("unknown command \"{name}\""))
        }
        DecodeError::UnknownCommand { expected } => {
            Failure::unknown_command(format!("unknown command \"{name}\"; the commands are {expected}"))
        }
        DecodeError::Payload(message) => {
            Failure::invalid_payload(format!("invalid payload for command \"{name}\": {message}"))
        }
        DecodeError::NotAnEnum => panic!(
            "the command type of the service is not an enum: derive Deserialize for an enum whose variants are the commands"
        ),
    })
}

/// Why a command did not decode.
#[derive(Debug)]
enum DecodeError {
    /// The name is no variant's; `expected` lists the variants.
    UnknownCommand { expected: String },
    /// The payload is not the variant's argument.
    Payload(String),
    /// The target type is not an enum: a bug in the service.
    NotAnEnum,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCommand { expected } => write!(f, "unknown command; the commands are {expected}"),
            Self::Payload(message) => f.write_str(message),
            Self::NotAnEnum => f.write_str("the command type is not an enum"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Payload(message.to_string())
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownCommand { expected: expected.join(", ") }
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(error: serde_json::Error) -> Self {
        Self::Payload(error.to_string())
    }
}

/// A command as serde sees it: an enum value tagged by `name`.
struct CommandDeserializer<'a> {
    name: &'a str,
    payload: &'a [u8],
}

impl<'de> de::Deserializer<'de> for CommandDeserializer<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError::NotAnEnum)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _enum: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for CommandDeserializer<'de> {
    type Error = DecodeError;
    type Variant = Payload<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Payload<'de>), DecodeError> {
        let name: de::value::StrDeserializer<'_, DecodeError> = self.name.into_deserializer();
        let variant = seed.deserialize(name)?;
        Ok((variant, Payload(self.payload)))
    }
}

/// A command's payload, as the variant's content.
struct Payload<'a>(&'a [u8]);

impl<'a> Payload<'a> {
    /// Whether the payload is absent: empty or only whitespace.
    fn is_empty(&self) -> bool {
        self.0.trim_ascii().is_empty()
    }

    /// Runs `read` on a JSON deserializer of the payload, which must hold
    /// one JSON value and nothing after it.
    fn json<T>(
        &self,
        read: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::SliceRead<'a>>) -> serde_json::Result<T>,
    ) -> Result<T, DecodeError> {
        let mut json = serde_json::Deserializer::from_slice(self.0);
        let value = read(&mut json)?;
        json.end()?;
        Ok(value)
    }
}

impl<'de> de::VariantAccess<'de> for Payload<'de> {
    type Error = DecodeError;

    /// A command without an argument takes an empty payload, `null` or `{}`.
    fn unit_variant(self) -> Result<(), DecodeError> {
        if self.is_empty() {
            return Ok(());
        }
        match self.json(|json| serde::Deserialize::deserialize(json))? {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(fields) if fields.is_empty() => Ok(()),
            _ => Err(DecodeError::Payload("this command takes no payload (send none, null or {})".into())),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DecodeError> {
        if self.is_empty() {
            return seed.deserialize(Empty);
        }
        self.json(|json| seed.deserialize(json))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DecodeError> {
        if self.is_empty() {
            return de::Deserializer::deserialize_tuple(Empty, len, visitor);
        }
        self.json(|json| de::Deserializer::deserialize_tuple(json, len, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        if self.is_empty() {
            return de::Deserializer::deserialize_struct(Empty, "", fields, visitor);
        }
        self.json(|json| de::Deserializer::deserialize_struct(json, "", fields, visitor))
    }
}

/// An absent payload: `{}` to a struct or map (so one whose fields all have
/// defaults decodes), `None` to an option, `()` to a unit, `[]` to a
/// sequence; anything else needs a payload.
struct Empty;

impl<'de> de::Deserializer<'de> for Empty {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_map(MapDeserializer::new(std::iter::empty::<((), ())>()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_seq(SeqDeserializer::new(std::iter::empty::<()>()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf tuple_struct enum identifier
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::FailureCode;

    /// The argument of [`Cmd::Add`].
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Item {
        pub(crate) id: String,
        #[serde(default)]
        pub(crate) count: u32,
    }

    /// A command enum with a variant of every shape, for the decoding and
    /// the encoding tests.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all_fields = "camelCase")]
    pub(crate) enum Cmd {
        Add(Item),
        Remove {
            product_id: String,
        },
        Move(u32, u32),
        Clear,
        Page(Option<u32>),
        #[serde(rename = "get-all")]
        GetAll {},
    }

    fn failure(name: &str, payload: &str) -> Failure {
        decode::<Cmd>(name, payload.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_name_picks_the_variant_and_the_payload_fills_it() {
        let add = decode::<Cmd>("Add", br#"{"id":"a","count":2}"#).unwrap();
        assert_eq!(add, Cmd::Add(Item { id: "a".into(), count: 2 }));
        let remove = decode::<Cmd>("Remove", br#" {"productId":"p"} "#).unwrap();
        assert_eq!(remove, Cmd::Remove { product_id: "p".into() });
        assert_eq!(decode::<Cmd>("Move", b"[1,2]").unwrap(), Cmd::Move(1, 2));
        assert_eq!(decode::<Cmd>("get-all", b"").unwrap(), Cmd::GetAll {});
    }

    #[test]
    fn a_command_without_arguments_takes_no_payload_null_or_an_empty_object() {
        for payload in ["", "  ", "null", "{}", " { } "] {
            assert_eq!(decode::<Cmd>("Clear", payload.as_bytes()).unwrap(), Cmd::Clear, "{payload:?}");
        }
        let refused = failure("Clear", r#"{"all":true}"#);
        assert_eq!(refused.code(), FailureCode::InvalidPayload);
        assert_eq!(
            refused.message(),
            "invalid payload for command \"Clear\": this command takes no payload (send none, null or {})"
        );
    }

    #[test]
    fn an_empty_payload_reads_as_an_empty_object_or_none() {
        assert_eq!(decode::<Cmd>("Page", b"").unwrap(), Cmd::Page(None));
        assert_eq!(decode::<Cmd>("Page", b"3").unwrap(), Cmd::Page(Some(3)));
        let missing = failure("Add", "");
        assert_eq!(missing.code(), FailureCode::InvalidPayload);
        assert_eq!(missing.message(), "invalid payload for command \"Add\": missing field `id`");
    }

    #[test]
    fn an_unknown_name_lists_the_commands() {
        let unknown = failure("Checkout", "{}");
        assert_eq!(unknown.code(), FailureCode::UnknownCommand);
        assert_eq!(
            unknown.message(),
            "unknown command \"Checkout\"; the commands are Add, Remove, Move, Clear, Page, get-all"
        );
    }

    #[test]
    fn a_payload_that_does_not_decode_says_where() {
        let bad = failure("Add", r#"{"id": 5}"#);
        assert_eq!(bad.code(), FailureCode::InvalidPayload);
        assert_eq!(
            bad.message(),
            "invalid payload for command \"Add\": invalid type: integer `5`, expected a string at line 1 column 8"
        );
        assert_eq!(
            failure("Add", r#"{"id":"a"} x"#).message(),
            "invalid payload for command \"Add\": trailing characters at line 1 column 12"
        );
        assert_eq!(failure("Remove", "{").code(), FailureCode::InvalidPayload);
    }

    #[test]
    fn a_catch_all_variant_takes_unknown_names() {
        #[derive(Debug, PartialEq, Deserialize)]
        enum Open {
            Known,
            #[serde(other)]
            Other,
        }
        assert_eq!(decode::<Open>("Known", b"").unwrap(), Open::Known);
        assert_eq!(decode::<Open>("Anything", b"").unwrap(), Open::Other);
    }

    #[test]
    #[should_panic(expected = "is not an enum")]
    fn a_command_type_that_is_no_enum_is_a_bug() {
        let _ = decode::<Item>("Add", b"{}");
    }
}
