//! The CloudFront KeyValueStore import format:
//! `{"data":[{"key":"k1","value":"v1"},{"key":"k2","value":"v2"}]}`.
//!
//! Parsed in one streaming pass (no JSON tree is built, so a million entries
//! cost no more than their bytes), checking every limit as it goes; every
//! error names the entry it is about.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::Limits;
use crate::snapshot::Builder;

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("{0}")]
    Syntax(String),
    #[error("an entry must be an object with \"key\" and \"value\"")]
    NotAnObject,
    #[error("missing \"key\"")]
    MissingKey,
    #[error("missing \"value\"")]
    MissingValue,
    #[error("unknown field {0:?} (an entry has only \"key\" and \"value\")")]
    UnknownField(String),
    #[error("\"key\" must be a string")]
    KeyNotString,
    #[error("\"value\" must be a string")]
    ValueNotString,
    #[error("\"{0}\" appears twice")]
    DuplicateField(&'static str),
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is {len} bytes, over the limit of {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error("the value is {len} bytes, over the limit of {max}")]
    ValueTooLong { len: usize, max: usize },
    #[error("duplicate key, first at entry {first}")]
    DuplicateKey { first: usize },
    #[error("the store reaches {size} bytes here, over the limit of {max}")]
    StoreTooLarge { size: u64, max: u64 },
}

/// An import that cannot be used. Nothing is changed by a failed import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the top level must be an object {{\"data\": [...]}}")]
    NotAnObject,
    #[error("missing \"data\" (expected {{\"data\": [{{\"key\": ..., \"value\": ...}}]}})")]
    MissingData,
    #[error("\"data\" must be an array of entries")]
    DataNotArray,
    #[error("\"data\" appears twice")]
    DuplicateData,
    #[error("unknown top-level field {0:?} (only \"data\" is allowed)")]
    UnknownField(String),
    /// The durable state refused the import; nothing was published.
    #[error("the import could not be made durable: {0}")]
    NotDurable(String),
    /// Entries are numbered from 0, in file order.
    #[error("entry {index}{}: {problem}", key_note(.key))]
    Entry {
        index: usize,
        key: Option<String>,
        problem: EntryProblem,
    },
}

fn key_note(key: &Option<String>) -> String {
    match key {
        None => String::new(),
        Some(k) if k.len() > 64 => {
            let mut end = 64;
            while !k.is_char_boundary(end) {
                end -= 1;
            }
            format!(" (key {:?}...)", &k[..end])
        }
        Some(k) => format!(" (key {k:?})"),
    }
}

/// Checks one entry against the limits, `so_far` bytes of the store before it.
pub(crate) fn check_entry(
    key: &str,
    value: &[u8],
    limits: &Limits,
    so_far: u64,
) -> Result<(), EntryProblem> {
    if key.is_empty() {
        return Err(EntryProblem::EmptyKey);
    }
    if key.len() > limits.max_key_bytes {
        return Err(EntryProblem::KeyTooLong {
            len: key.len(),
            max: limits.max_key_bytes,
        });
    }
    if value.len() > limits.max_value_bytes {
        return Err(EntryProblem::ValueTooLong {
            len: value.len(),
            max: limits.max_value_bytes,
        });
    }
    let size = so_far + (key.len() + value.len()) as u64;
    if size > limits.max_store_bytes {
        return Err(EntryProblem::StoreTooLarge {
            size,
            max: limits.max_store_bytes,
        });
    }
    Ok(())
}

/// Parses an import file into a builder, checking every limit.
pub(crate) fn parse(json: &[u8], limits: &Limits) -> Result<Builder, ImportError> {
    // Rough sizing: an entry takes at least ~25 bytes of JSON.
    let mut builder = Builder::with_capacity(json.len() / 40, json.len() / 2);
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    let result = TopSeed {
        limits,
        builder: &mut builder,
        failure: &failure,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(builder),
        Err(e) => Err(failure.into_inner().unwrap_or_else(|| ImportError::Syntax {
            line: e.line(),
            column: e.column(),
            message: strip_position(&e),
        })),
    }
}

/// Parses and validates an import file without publishing it; returns the
/// number of entries and their total size in bytes.
pub fn parse_import(json: &[u8], limits: &Limits) -> Result<(usize, u64), ImportError> {
    let builder = parse(json, limits)?;
    Ok((builder.len(), builder.total_bytes()))
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Records a typed error and aborts the serde walk with it.
fn fail<E: de::Error>(slot: &RefCell<Option<ImportError>>, error: ImportError) -> E {
    let message = error.to_string();
    *slot.borrow_mut() = Some(error);
    E::custom(message)
}

struct TopSeed<'a> {
    limits: &'a Limits,
    builder: &'a mut Builder,
    failure: &'a RefCell<Option<ImportError>>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {\"data\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "data" {
                return Err(fail(
                    self.failure,
                    ImportError::UnknownField(key.into_owned()),
                ));
            }
            if seen {
                return Err(fail(self.failure, ImportError::DuplicateData));
            }
            seen = true;
            map.next_value_seed(DataSeed {
                limits: self.limits,
                builder: &mut *self.builder,
                failure: self.failure,
            })?;
        }
        if !seen {
            return Err(fail(self.failure, ImportError::MissingData));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(fail(self.failure, ImportError::NotAnObject))
    }
}

struct DataSeed<'a> {
    limits: &'a Limits,
    builder: &'a mut Builder,
    failure: &'a RefCell<Option<ImportError>>,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let entry = EntrySeed {
                index,
                failure: self.failure,
            };
            let (key, value) = match seq.next_element_seed(entry) {
                Ok(Some(kv)) => kv,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if self.failure.borrow().is_none() {
                        // A syntax error inside entry `index`.
                        let problem = EntryProblem::Syntax(e.to_string());
                        *self.failure.borrow_mut() = Some(ImportError::Entry {
                            index,
                            key: None,
                            problem,
                        });
                    }
                    return Err(e);
                }
            };
            let entry_error = |problem| ImportError::Entry {
                index,
                key: Some(key.to_string()),
                problem,
            };
            if let Err(p) = check_entry(
                &key,
                value.as_bytes(),
                self.limits,
                self.builder.total_bytes(),
            ) {
                return Err(fail(self.failure, entry_error(p)));
            }
            if let Err(first) = self.builder.insert(&key, value.as_bytes()) {
                return Err(fail(
                    self.failure,
                    entry_error(EntryProblem::DuplicateKey { first }),
                ));
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(fail(self.failure, ImportError::DataNotArray))
    }
}

type Text<'de> = std::borrow::Cow<'de, str>;

struct EntrySeed<'a> {
    index: usize,
    failure: &'a RefCell<Option<ImportError>>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = (Text<'de>, Text<'de>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl EntrySeed<'_> {
    fn fail<E: de::Error>(&self, key: Option<&str>, problem: EntryProblem) -> E {
        fail(
            self.failure,
            ImportError::Entry {
                index: self.index,
                key: key.map(str::to_owned),
                problem,
            },
        )
    }
}

/// A string, or the name of what came instead.
struct StringOrOther<'de>(Result<Text<'de>, ()>);

impl<'de> serde::Deserialize<'de> for StringOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrOther<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringOrOther(Ok(Text::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrOther(Ok(Text::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(StringOrOther(Ok(Text::Owned(v))))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(StringOrOther(Err(())))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(StringOrOther(Err(())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(StringOrOther(Err(())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(StringOrOther(Err(())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(StringOrOther(Err(())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(StringOrOther(Err(())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(StringOrOther(Err(())))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = (Text<'de>, Text<'de>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry {\"key\": ..., \"value\": ...}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut key: Option<Text<'de>> = None;
        let mut value: Option<Text<'de>> = None;
        while let Some(field) = map.next_key::<Text<'de>>()? {
            match field.as_ref() {
                "key" => {
                    if key.is_some() {
                        return Err(self.fail(key.as_deref(), EntryProblem::DuplicateField("key")));
                    }
                    match map.next_value::<StringOrOther<'de>>()?.0 {
                        Ok(k) => key = Some(k),
                        Err(()) => return Err(self.fail(None, EntryProblem::KeyNotString)),
                    }
                }
                "value" => {
                    if value.is_some() {
                        return Err(
                            self.fail(key.as_deref(), EntryProblem::DuplicateField("value"))
                        );
                    }
                    match map.next_value::<StringOrOther<'de>>()?.0 {
                        Ok(v) => value = Some(v),
                        Err(()) => {
                            return Err(self.fail(key.as_deref(), EntryProblem::ValueNotString));
                        }
                    }
                }
                other => {
                    let p = EntryProblem::UnknownField(other.to_owned());
                    return Err(self.fail(key.as_deref(), p));
                }
            }
        }
        let Some(key) = key else {
            return Err(self.fail(None, EntryProblem::MissingKey));
        };
        let Some(value) = value else {
            return Err(self.fail(Some(&key), EntryProblem::MissingValue));
        };
        Ok((key, value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.fail(None, EntryProblem::NotAnObject))
    }
}
