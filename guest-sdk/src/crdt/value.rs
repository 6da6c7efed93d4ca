//! What a CRDT entity holds, as a command sees it: [`CrdtValue`], its
//! [`CrdtKind`], and typed readers that decode its JSON elements and keys.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Failure;

/// The types of replicated data a CRDT entity (or a map's key) can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrdtKind {
    /// A grow-only counter.
    GCounter,
    /// A counter that goes up and down.
    PNCounter,
    /// A grow-only set.
    GSet,
    /// An observed-remove set: an add concurrent with a remove wins.
    OrSet,
    /// A last-writer-wins register.
    LwwRegister,
    /// A flag that stays enabled.
    Flag,
    /// An observed-remove map of the other types.
    OrMap,
    /// Each host's yes or no.
    Vote,
}

impl CrdtKind {
    /// Its name, as failures say it: `GCounter`, `PNCounter`, `GSet`,
    /// `ORSet`, `LWWRegister`, `Flag`, `ORMap`, `Vote`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GCounter => "GCounter",
            Self::PNCounter => "PNCounter",
            Self::GSet => "GSet",
            Self::OrSet => "ORSet",
            Self::LwwRegister => "LWWRegister",
            Self::Flag => "Flag",
            Self::OrMap => "ORMap",
            Self::Vote => "Vote",
        }
    }
}

impl std::fmt::Display for CrdtKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A vote, as this host sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct VoteValue {
    /// This host's own vote (no, if it never voted).
    pub self_vote: bool,
    /// How many hosts vote yes.
    pub votes_for: u32,
    /// How many hosts voted.
    pub voters: u32,
}

/// The value of a CRDT entity, or of one key of its map, mirroring the WIT
/// `crdt-value`. Elements, register values and map keys are bytes: the SDK
/// writes them as JSON, and the readers ([`elements`](Self::elements),
/// [`register`](Self::register), [`map_entries`](Self::map_entries)) decode
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrdtValue {
    /// A grow-only counter's sum.
    GCounter(u64),
    /// A counter's increments less its decrements.
    PNCounter(i64),
    /// A grow-only set's elements, in byte order.
    GSet(Vec<Vec<u8>>),
    /// An observed-remove set's elements, in byte order.
    OrSet(Vec<Vec<u8>>),
    /// A register's value, if one was written.
    LwwRegister(Option<Vec<u8>>),
    /// Whether a flag is enabled.
    Flag(bool),
    /// A map's keys, in byte order, with their values (never a map).
    OrMap(Vec<(Vec<u8>, CrdtValue)>),
    /// The hosts' votes.
    Vote(VoteValue),
}

impl CrdtValue {
    /// Its type.
    pub fn kind(&self) -> CrdtKind {
        match self {
            Self::GCounter(_) => CrdtKind::GCounter,
            Self::PNCounter(_) => CrdtKind::PNCounter,
            Self::GSet(_) => CrdtKind::GSet,
            Self::OrSet(_) => CrdtKind::OrSet,
            Self::LwwRegister(_) => CrdtKind::LwwRegister,
            Self::Flag(_) => CrdtKind::Flag,
            Self::OrMap(_) => CrdtKind::OrMap,
            Self::Vote(_) => CrdtKind::Vote,
        }
    }

    /// The empty value of `kind`: what a new entity or map key starts from.
    pub fn empty(kind: CrdtKind) -> Self {
        match kind {
            CrdtKind::GCounter => Self::GCounter(0),
            CrdtKind::PNCounter => Self::PNCounter(0),
            CrdtKind::GSet => Self::GSet(Vec::new()),
            CrdtKind::OrSet => Self::OrSet(Vec::new()),
            CrdtKind::LwwRegister => Self::LwwRegister(None),
            CrdtKind::Flag => Self::Flag(false),
            CrdtKind::OrMap => Self::OrMap(Vec::new()),
            CrdtKind::Vote => Self::Vote(VoteValue::default()),
        }
    }

    /// A counter's value, of either kind of counter (a grow-only one's
    /// beyond `i64::MAX` reads `i64::MAX`); `None` for other types.
    pub fn as_counter(&self) -> Option<i64> {
        match self {
            Self::GCounter(sum) => Some(i64::try_from(*sum).unwrap_or(i64::MAX)),
            Self::PNCounter(value) => Some(*value),
            _ => None,
        }
    }

    /// A grow-only counter's sum; `None` for other types.
    pub fn as_gcounter(&self) -> Option<u64> {
        match self {
            Self::GCounter(sum) => Some(*sum),
            _ => None,
        }
    }

    /// Whether a flag is enabled; `None` for other types.
    pub fn as_flag(&self) -> Option<bool> {
        match self {
            Self::Flag(enabled) => Some(*enabled),
            _ => None,
        }
    }

    /// A vote; `None` for other types.
    pub fn as_vote(&self) -> Option<VoteValue> {
        match self {
            Self::Vote(vote) => Some(*vote),
            _ => None,
        }
    }

    /// A set's elements (grow-only or observed-remove), as bytes in byte
    /// order; `None` for other types.
    pub fn raw_elements(&self) -> Option<&[Vec<u8>]> {
        match self {
            Self::GSet(elements) | Self::OrSet(elements) => Some(elements),
            _ => None,
        }
    }

    /// A set's elements decoded from JSON, in byte order of their encoding;
    /// none for a value that is no set.
    ///
    /// # Errors
    ///
    /// [`FailureCode::InvalidState`](crate::FailureCode::InvalidState) if
    /// an element does not decode as a `T`.
    pub fn elements<T: DeserializeOwned>(&self) -> Result<Vec<T>, Failure> {
        self.raw_elements().unwrap_or_default().iter().map(|element| decode(element, "element")).collect()
    }

    /// Whether a set holds `element` (compared as its JSON encoding).
    pub fn contains<T: Serialize + ?Sized>(&self, element: &T) -> bool {
        let element = encode(element);
        self.raw_elements().is_some_and(|elements| elements.contains(&element))
    }

    /// A register's value decoded from JSON; `None` when none was written,
    /// or for a value that is no register.
    ///
    /// # Errors
    ///
    /// [`FailureCode::InvalidState`](crate::FailureCode::InvalidState) if
    /// the value does not decode as a `T`.
    pub fn register<T: DeserializeOwned>(&self) -> Result<Option<T>, Failure> {
        match self {
            Self::LwwRegister(Some(bytes)) => decode(bytes, "register value").map(Some),
            _ => Ok(None),
        }
    }

    /// A map's entries as bytes, keys in byte order; `None` for other types.
    pub fn raw_entries(&self) -> Option<&[(Vec<u8>, CrdtValue)]> {
        match self {
            Self::OrMap(entries) => Some(entries),
            _ => None,
        }
    }

    /// A map's entries with their keys decoded from JSON, in byte order of
    /// their encoding; none for a value that is no map.
    ///
    /// # Errors
    ///
    /// [`FailureCode::InvalidState`](crate::FailureCode::InvalidState) if a
    /// key does not decode as a `K`.
    pub fn map_entries<K: DeserializeOwned>(&self) -> Result<Vec<(K, &CrdtValue)>, Failure> {
        let entries = self.raw_entries().unwrap_or_default();
        entries.iter().map(|(key, value)| Ok((decode(key, "map key")?, value))).collect()
    }

    /// The value of a map's `key` (compared as its JSON encoding); `None`
    /// if the map lacks it, or for a value that is no map.
    pub fn map_get<K: Serialize + ?Sized>(&self, key: &K) -> Option<&CrdtValue> {
        let key = encode(key);
        self.raw_entries()?.iter().find(|(present, _)| *present == key).map(|(_, value)| value)
    }
}

/// `value` as JSON bytes: how the SDK writes elements, register values and
/// map keys.
///
/// # Panics
///
/// If `value` cannot be encoded as JSON.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    crate::reply::encode_json(value, "CRDT element")
}

/// `bytes` decoded from JSON, or an `invalid_state` failure naming `what`.
fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|error| {
        Failure::invalid_state(format!("{what} {:?} could not be decoded: {error}", String::from_utf8_lossy(bytes)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureCode;

    #[test]
    fn readers_decode_json_and_answer_nothing_for_other_types() {
        let set = CrdtValue::OrSet(vec![b"\"a\"".to_vec(), b"\"b\"".to_vec()]);
        assert_eq!(set.elements::<String>().unwrap(), ["a", "b"]);
        assert!(set.contains("a") && !set.contains("c"));
        assert_eq!(set.as_counter(), None);
        assert_eq!(set.elements::<u32>().unwrap_err().code(), FailureCode::InvalidState);
        assert_eq!(CrdtValue::GCounter(u64::MAX).as_counter(), Some(i64::MAX));
        assert_eq!(CrdtValue::PNCounter(-3).as_counter(), Some(-3));
        assert_eq!(CrdtValue::LwwRegister(Some(b"7".to_vec())).register::<u32>(), Ok(Some(7)));
        assert_eq!(CrdtValue::LwwRegister(None).register::<u32>(), Ok(None));

        let map = CrdtValue::OrMap(vec![(b"\"k\"".to_vec(), CrdtValue::Flag(true))]);
        assert_eq!(map.map_entries::<String>().unwrap(), [("k".to_owned(), &CrdtValue::Flag(true))]);
        assert_eq!(map.map_get("k").and_then(CrdtValue::as_flag), Some(true));
        assert_eq!(map.map_get("j"), None);
        assert_eq!(CrdtValue::empty(CrdtKind::Vote).kind().name(), "Vote");
    }
}
