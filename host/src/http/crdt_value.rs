//! A CRDT entity's value as JSON, the way the SDK writes elements, keys
//! and registers (JSON bytes, embedded as they are; other bytes as a
//! string): counters are numbers, sets arrays in byte order, a register its
//! value or null, a flag a boolean, a vote `{self_vote, votes_for,
//! voters}`, a map an object of its keys' values.

use serde_json::{Map, Value as Json, json};
use wasmstate_crdt::Value;

use crate::domain::payload_json;

/// `value` as JSON.
pub fn value_json(value: &Value) -> Json {
    match value {
        Value::GCounter(n) => json!(n),
        Value::PNCounter(n) => json!(n),
        Value::GSet(elements) | Value::OrSet(elements) => {
            Json::Array(elements.iter().map(|element| payload_json(element)).collect())
        }
        Value::LwwRegister(value) => value.as_deref().map_or(Json::Null, payload_json),
        Value::Flag(on) => json!(on),
        Value::Vote { self_vote, votes_for, voters } => {
            json!({ "self_vote": self_vote, "votes_for": votes_for, "voters": voters })
        }
        Value::OrMap(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                map.insert(key_string(key), value_json(value));
            }
            Json::Object(map)
        }
    }
}

/// A map's key as an object key: the string a JSON string key holds, else
/// the key's JSON (or its bytes) as text.
fn key_string(key: &[u8]) -> String {
    match payload_json(key) {
        Json::String(text) => text,
        other => other.to_string(),
    }
}

/// The name of the type `value` is of, as the API reports it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::GCounter(_) => "gcounter",
        Value::PNCounter(_) => "pncounter",
        Value::GSet(_) => "gset",
        Value::OrSet(_) => "orset",
        Value::LwwRegister(_) => "lww-register",
        Value::Flag(_) => "flag",
        Value::OrMap(_) => "ormap",
        Value::Vote { .. } => "vote",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_the_sdk_wrote_them() {
        assert_eq!(value_json(&Value::PNCounter(-3)), json!(-3));
        let set = Value::OrSet(vec![br#""a""#.to_vec(), b"{\"x\":1}".to_vec(), b"raw bytes".to_vec()]);
        assert_eq!(value_json(&set), json!(["a", {"x": 1}, "raw bytes"]));
        assert_eq!(value_json(&Value::LwwRegister(None)), Json::Null);
        let map = Value::OrMap(vec![
            (br#""title""#.to_vec(), Value::LwwRegister(Some(br#""Buy milk""#.to_vec()))),
            (b"7".to_vec(), Value::Flag(true)),
        ]);
        assert_eq!(value_json(&map), json!({"title": "Buy milk", "7": true}));
        let vote = Value::Vote { self_vote: true, votes_for: 2, voters: 3 };
        assert_eq!(value_json(&vote), json!({"self_vote": true, "votes_for": 2, "voters": 3}));
    }
}
