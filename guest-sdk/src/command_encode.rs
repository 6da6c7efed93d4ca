//! Encoding a value of a command enum as a call: the variant's name is the
//! command, its content (as JSON) the payload. The inverse of
//! `command_decode.rs`, for typed forwards, side effects and test calls.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, SerializeStructVariant, SerializeTupleVariant};

/// Encodes `command`, a value of a serde enum whose variants are commands,
/// as the command's name and its payload: nothing for a variant without
/// fields, the JSON of its content otherwise.
///
/// # Panics
///
/// If `command` is not an enum variant, or its content cannot be encoded
/// as JSON: a bug in the service, so the command traps and nothing it
/// produced is persisted.
pub(crate) fn encode<C: Serialize + ?Sized>(command: &C) -> (String, Vec<u8>) {
    match command.serialize(CommandSerializer) {
        Ok(encoded) => encoded,
        Err(error) => panic!("a command could not be encoded: {error}"),
    }
}

/// Why a value is not a command.
#[derive(Debug)]
struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self(message.to_string())
    }
}

impl From<serde_json::Error> for EncodeError {
    fn from(error: serde_json::Error) -> Self {
        Self(error.to_string())
    }
}

/// The command `name` with `content` as its payload.
fn call(name: &str, content: &(impl Serialize + ?Sized)) -> Result<(String, Vec<u8>), EncodeError> {
    Ok((name.to_owned(), serde_json::to_vec(content)?))
}

/// Serializes an enum variant into a call; refuses anything else.
struct CommandSerializer;

/// Refuses a value that is not an enum variant.
macro_rules! not_a_command {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)*) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<$ok, EncodeError> {
                Err(EncodeError("a command is a variant of an enum (derive Serialize for an enum whose variants are the commands)".into()))
            }
        )*
    };
}

impl ser::Serializer for CommandSerializer {
    type Ok = (String, Vec<u8>);
    type Error = EncodeError;
    type SerializeSeq = Impossible<Self::Ok, EncodeError>;
    type SerializeTuple = Impossible<Self::Ok, EncodeError>;
    type SerializeTupleStruct = Impossible<Self::Ok, EncodeError>;
    type SerializeTupleVariant = TupleVariant;
    type SerializeMap = Impossible<Self::Ok, EncodeError>;
    type SerializeStruct = Impossible<Self::Ok, EncodeError>;
    type SerializeStructVariant = StructVariant;

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Self::Ok, EncodeError> {
        Ok((variant.to_owned(), Vec::new()))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Self::Ok, EncodeError> {
        call(variant, value)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleVariant, EncodeError> {
        Ok(TupleVariant { variant, fields: Vec::with_capacity(len) })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<StructVariant, EncodeError> {
        Ok(StructVariant { variant, fields: serde_json::Map::new() })
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Self::Ok, EncodeError> {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, EncodeError> {
        Err(ser::Error::custom("a command is a variant of an enum, not an option"))
    }

    not_a_command! {
        serialize_bool(bool) -> Self::Ok;
        serialize_i8(i8) -> Self::Ok;
        serialize_i16(i16) -> Self::Ok;
        serialize_i32(i32) -> Self::Ok;
        serialize_i64(i64) -> Self::Ok;
        serialize_u8(u8) -> Self::Ok;
        serialize_u16(u16) -> Self::Ok;
        serialize_u32(u32) -> Self::Ok;
        serialize_u64(u64) -> Self::Ok;
        serialize_f32(f32) -> Self::Ok;
        serialize_f64(f64) -> Self::Ok;
        serialize_char(char) -> Self::Ok;
        serialize_str(&str) -> Self::Ok;
        serialize_bytes(&[u8]) -> Self::Ok;
        serialize_none() -> Self::Ok;
        serialize_unit() -> Self::Ok;
        serialize_unit_struct(&'static str) -> Self::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
    }
}

/// A tuple variant's fields, collected as a JSON array.
struct TupleVariant {
    variant: &'static str,
    fields: Vec<serde_json::Value>,
}

impl SerializeTupleVariant for TupleVariant {
    type Ok = (String, Vec<u8>);
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.fields.push(serde_json::to_value(value)?);
        Ok(())
    }

    fn end(self) -> Result<Self::Ok, EncodeError> {
        call(self.variant, &self.fields)
    }
}

/// A struct variant's fields, collected as a JSON object.
struct StructVariant {
    variant: &'static str,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl SerializeStructVariant for StructVariant {
    type Ok = (String, Vec<u8>);
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), EncodeError> {
        self.fields.insert(key.to_owned(), serde_json::to_value(value)?);
        Ok(())
    }

    fn end(self) -> Result<Self::Ok, EncodeError> {
        call(self.variant, &self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_decode::decode;
    use crate::command_decode::tests::{Cmd, Item};

    #[test]
    fn a_variant_is_its_name_and_its_content_as_json() {
        let add = Cmd::Add(Item { id: "a".into(), count: 2 });
        assert_eq!(encode(&add), ("Add".into(), br#"{"id":"a","count":2}"#.to_vec()));
        let remove = Cmd::Remove { product_id: "p".into() };
        assert_eq!(encode(&remove), ("Remove".into(), br#"{"productId":"p"}"#.to_vec()));
        assert_eq!(encode(&Cmd::Move(1, 2)), ("Move".into(), b"[1,2]".to_vec()));
        assert_eq!(encode(&Cmd::Clear), ("Clear".into(), Vec::new()));
        assert_eq!(encode(&Cmd::GetAll {}), ("get-all".into(), b"{}".to_vec()));
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_command() {
        let commands = [
            Cmd::Add(Item { id: "x".into(), count: 7 }),
            Cmd::Remove { product_id: "y".into() },
            Cmd::Move(3, 4),
            Cmd::Clear,
            Cmd::Page(Some(2)),
            Cmd::Page(None),
            Cmd::GetAll {},
        ];
        for command in commands {
            let (name, payload) = encode(&command);
            assert_eq!(decode::<Cmd>(&name, &payload).unwrap(), command);
        }
    }

    #[test]
    #[should_panic(expected = "a command is a variant of an enum")]
    fn a_struct_is_no_command() {
        encode(&Item { id: "a".into(), count: 1 });
    }
}
