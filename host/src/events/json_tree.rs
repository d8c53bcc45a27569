//! A JSON tree that borrows its strings from the text it was parsed from, and the few
//! questions the Windows readers ask of JSON values, answered alike for it and for
//! `serde_json::Value`, so that one reader serves both.
//!
//! A `Value` costs a map with a hashed, owned key per member and an owned string per
//! value. A process creation rendered by evtx_dump has some forty of them; read this way,
//! keys and plain strings are borrowed from the line and objects are short vectors.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// What the readers ask of a JSON value.
pub(crate) trait JsonTree {
    /// The member `key` of an object (the last one given, as a `Value` keeps it); `None` for
    /// a missing key or a value that is no object.
    fn member(&self, key: &str) -> Option<&Self>;
    /// The members of an object, each key once; `None` for a value that is no object.
    fn members(&self) -> Option<Box<dyn Iterator<Item = (&str, &Self)> + '_>>;
    /// The text of a scalar: strings as they are, numbers and booleans written out, null
    /// empty; `None` for arrays and objects.
    fn scalar_text(&self) -> Option<Cow<'_, str>>;
    fn is_null(&self) -> bool;
    fn is_object(&self) -> bool;
    /// A number that is a whole number from 0 to `u64::MAX`.
    fn as_u64(&self) -> Option<u64>;
    fn as_str(&self) -> Option<&str>;
}

impl JsonTree for Value {
    fn member(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }

    fn members(&self) -> Option<Box<dyn Iterator<Item = (&str, &Self)> + '_>> {
        Some(Box::new(self.as_object()?.iter().map(|(k, v)| (k.as_str(), v))))
    }

    fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            Value::Null => Some(Cow::Borrowed("")),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn is_null(&self) -> bool {
        Value::is_null(self)
    }

    fn is_object(&self) -> bool {
        Value::is_object(self)
    }

    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }

    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
}

/// A JSON value whose keys and unescaped strings are borrowed from its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BorrowedJson<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<BorrowedJson<'a>>),
    /// Members in the order of their first key; a key given twice keeps its last value.
    Object(Vec<(Cow<'a, str>, BorrowedJson<'a>)>),
}

impl JsonTree for BorrowedJson<'_> {
    fn member(&self, key: &str) -> Option<&Self> {
        match self {
            BorrowedJson::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn members(&self) -> Option<Box<dyn Iterator<Item = (&str, &Self)> + '_>> {
        match self {
            BorrowedJson::Object(members) => Some(Box::new(members.iter().map(|(k, v)| (k.as_ref(), v)))),
            _ => None,
        }
    }

    fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match self {
            BorrowedJson::String(s) => Some(Cow::Borrowed(s)),
            BorrowedJson::Number(n) => Some(Cow::Owned(n.to_string())),
            BorrowedJson::Bool(b) => Some(Cow::Owned(b.to_string())),
            BorrowedJson::Null => Some(Cow::Borrowed("")),
            BorrowedJson::Array(_) | BorrowedJson::Object(_) => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, BorrowedJson::Null)
    }

    fn is_object(&self) -> bool {
        matches!(self, BorrowedJson::Object(_))
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            BorrowedJson::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            BorrowedJson::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for BorrowedJson<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = BorrowedJson<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(BorrowedJson::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(BorrowedJson::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(BorrowedJson::Number(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(BorrowedJson::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value` takes a float: a finite one becomes a number, the others null.
        Ok(Number::from_f64(v).map_or(BorrowedJson::Null, BorrowedJson::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(BorrowedJson::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(BorrowedJson::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(BorrowedJson::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(BorrowedJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, BorrowedJson<'de>)> = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            if members.len() == MAX_MEMBERS {
                return Err(de::Error::custom(TOO_MANY_MEMBERS));
            }
            let value = map.next_value()?;
            insert(&mut members, key, value);
        }
        Ok(BorrowedJson::Object(members))
    }
}

/// The members an object of a [`BorrowedJson`] may have: a key is looked for among those
/// before it, so a hostile object of many keys would cost their square. A larger object is
/// refused, and its document left to a reader that hashes its keys.
const MAX_MEMBERS: usize = 256;
const TOO_MANY_MEMBERS: &str = "an object of more members than a borrowed tree takes";

/// Adds a member as `serde_json::Map::insert` does: a key given before keeps its place and
/// takes the new value.
fn insert<'a>(
    members: &mut Vec<(Cow<'a, str>, BorrowedJson<'a>)>,
    key: Cow<'a, str>,
    value: BorrowedJson<'a>,
) {
    match members.iter_mut().find(|(k, _)| *k == key) {
        Some((_, old)) => *old = value,
        None => members.push((key, value)),
    }
}

/// An object key, borrowed when it has no escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// What an evtx_dump reader reads of a record (`{"Event": {"System": .., "EventData":
/// ..}}`): `Event`'s `System` and `EventData` as trees, as `serde_json::Value` would hold
/// them; every other member is checked as JSON and passed over. `None` for a document of
/// another shape (one that is no object, has a `records` member, or whose `Event` is no
/// object).
pub(crate) fn read_evtx_dump_event(text: &str) -> serde_json::Result<Option<EvtxDumpEvent<'_>>> {
    let ObjectOr(document) = serde_json::from_str::<ObjectOr<DocumentMembers<'_>>>(text)?;
    Ok(document.and_then(|d| if d.records { None } else { d.event }))
}

/// The members of `Event` an evtx_dump reader reads.
#[derive(Default)]
pub(crate) struct EvtxDumpEvent<'a> {
    pub system: Option<BorrowedJson<'a>>,
    pub event_data: Option<BorrowedJson<'a>>,
}

/// The members of an evtx_dump document that tell it apart: its `Event` (the last given;
/// `None` when that is no object) and whether it has a `records` member.
struct DocumentMembers<'a> {
    event: Option<EvtxDumpEvent<'a>>,
    records: bool,
}

impl<'de> ObjectReader<'de> for DocumentMembers<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut members = DocumentMembers { event: None, records: false };
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "Event" => members.event = map.next_value::<ObjectOr<EvtxDumpEvent<'de>>>()?.0,
                "records" => {
                    members.records = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(members)
    }
}

impl<'de> ObjectReader<'de> for EvtxDumpEvent<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut event = EvtxDumpEvent::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "System" => event.system = Some(map.next_value()?),
                "EventData" => event.event_data = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(event)
    }
}

/// Reads the members of an object it is handed.
trait ObjectReader<'de>: Sized {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// An object read by `T`, or `None` for a value of another kind (checked as JSON and passed
/// over).
struct ObjectOr<T>(Option<T>);

impl<'de, T: ObjectReader<'de>> de::Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectOrVisitor(PhantomData))
    }
}

struct ObjectOrVisitor<T>(PhantomData<T>);

impl<'de, T: ObjectReader<'de>> Visitor<'de> for ObjectOrVisitor<T> {
    type Value = ObjectOr<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(ObjectOr(Some(T::read(map)?)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ObjectOr(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ObjectOr(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ObjectOr(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ObjectOr(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ObjectOr(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ObjectOr(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ObjectOr(None))
    }
}
