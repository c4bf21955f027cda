use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use tenzip_types::{Dtype, TensorEntry};

use crate::Error;

/// The largest header accepted, checked before anything is allocated (the same cap as the `safetensors`
/// crate).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

const METADATA_KEY: &str = "__metadata__";

/// A validated safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Bytes from the start of the file to the start of tensor data: the 8-byte prefix plus the JSON and its
    /// padding. `file[..len]` is the header exactly as written.
    pub len: u64,
    /// Tensors in file order (by data offset), with absolute byte ranges.
    pub tensors: Vec<TensorEntry>,
    /// The `__metadata__` map, if present.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A tensor entry as the JSON states it, before validation.
#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The header's top-level object, keys kept in written order and duplicates rejected (serde_json's own maps
/// silently keep the last duplicate, which would let two tensors claim one name).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if !seen.insert(name.clone()) {
                        return Err(de::Error::custom(DuplicateMarker(name)));
                    }
                    entries.push((name, value));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// Carries a duplicate name out through serde's string-only custom errors.
struct DuplicateMarker(String);

impl fmt::Display for DuplicateMarker {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{DUPLICATE_PREFIX}{}", self.0)
    }
}

const DUPLICATE_PREFIX: &str = "tenzip-duplicate-name:";

impl Header {
    /// Reads and validates the header of `file`, the whole safetensors file (typically memory-mapped). On
    /// success the tensors tile `file[len..]` exactly: no gaps, no overlaps, no trailing bytes.
    pub fn parse(file: &[u8]) -> Result<Header, Error> {
        let file_len = file.len() as u64;
        let prefix: [u8; 8] = file
            .get(..8)
            .and_then(|p| p.try_into().ok())
            .ok_or(Error::TooShort { len: file_len })?;
        let json_len = u64::from_le_bytes(prefix);
        if json_len > MAX_HEADER_LEN {
            return Err(Error::HeaderTooLarge {
                len: json_len,
                limit: MAX_HEADER_LEN,
            });
        }
        let available = file_len - 8;
        if json_len > available {
            return Err(Error::HeaderPastEnd {
                len: json_len,
                available,
            });
        }
        let len = 8 + json_len;
        let json = &file[8..len as usize];
        if json.first() != Some(&b'{') {
            return Err(Error::HeaderStart);
        }
        let json = std::str::from_utf8(json).map_err(|_| Error::HeaderNotUtf8)?;
        let Entries(entries) = serde_json::from_str(json).map_err(|err| {
            let message = err.to_string();
            match message.strip_prefix(DUPLICATE_PREFIX) {
                Some(rest) => {
                    Error::DuplicateName(rest.split(" at line ").next().unwrap_or(rest).to_owned())
                }
                None => Error::Json(err),
            }
        })?;

        let mut metadata = None;
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            if name == METADATA_KEY {
                metadata = Some(serde_json::from_value(value).map_err(|_| Error::Metadata)?);
                continue;
            }
            let raw: RawTensor = serde_json::from_value(value).map_err(Error::Json)?;
            tensors.push(validate_tensor(name, raw)?);
        }
        tile(&mut tensors, file_len - len)?;
        for tensor in &mut tensors {
            tensor.range = tensor.range.start + len..tensor.range.end + len;
        }
        Ok(Header {
            len,
            tensors,
            metadata,
        })
    }
}

/// Checks one entry on its own: known dtype, shape arithmetic, offsets that match the size.
fn validate_tensor(name: String, raw: RawTensor) -> Result<TensorEntry, Error> {
    let Some(dtype) = Dtype::parse(&raw.dtype) else {
        return Err(Error::UnknownDtype {
            name,
            dtype: raw.dtype,
        });
    };
    let elements = tenzip_types::element_count(&raw.shape);
    let Some(bits) = elements.and_then(|elements| elements.checked_mul(dtype.bits())) else {
        return Err(Error::ShapeOverflow {
            name,
            shape: raw.shape,
        });
    };
    if bits % 8 != 0 {
        return Err(Error::PartialByte {
            name,
            elements: bits / dtype.bits(),
            bits: dtype.bits(),
        });
    }
    let [begin, end] = raw.data_offsets;
    if end < begin {
        return Err(Error::OffsetsReversed { name, begin, end });
    }
    if end - begin != bits / 8 {
        return Err(Error::SizeMismatch {
            name,
            expected: bits / 8,
            got: end - begin,
        });
    }
    Ok(TensorEntry {
        name,
        dtype,
        shape: raw.shape,
        range: begin..end,
    })
}

/// Sorts tensors by offset and checks they cover `0..data_len` exactly once.
fn tile(tensors: &mut [TensorEntry], data_len: u64) -> Result<(), Error> {
    tensors.sort_by_key(|tensor| (tensor.range.start, tensor.range.end));
    let mut expected = 0u64;
    let mut previous: Option<&TensorEntry> = None;
    for tensor in tensors.iter() {
        let begin = tensor.range.start;
        if begin > expected {
            return Err(Error::Gap {
                name: tensor.name.clone(),
                begin,
                expected,
            });
        }
        if begin < expected {
            let previous = previous.map_or_else(String::new, |p| p.name.clone());
            return Err(Error::Overlap {
                name: tensor.name.clone(),
                previous,
                begin,
                expected,
            });
        }
        expected = tensor.range.end;
        previous = Some(tensor);
    }
    if expected != data_len {
        return Err(Error::DataLength {
            covered: expected,
            available: data_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(json.as_bytes());
        file.resize(file.len() + data_len, 0);
        file
    }

    fn parse(json: &str, data_len: usize) -> Result<Header, Error> {
        Header::parse(&file(json, data_len))
    }

    #[test]
    fn accepts_a_valid_header_with_padding_and_metadata() {
        let json = r#"{"__metadata__":{"format":"pt","note":"übung"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}   "#;
        let header = parse(json, 12).unwrap();
        assert_eq!(header.len, 8 + json.len() as u64);
        let names: Vec<_> = header.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "tensors come back in file order");
        assert_eq!(header.tensors[1].range, header.len + 4..header.len + 12);
        assert_eq!(header.metadata.unwrap()["note"], "übung");
    }

    #[test]
    fn accepts_empty_and_zero_sized_tensors() {
        assert!(parse("{}", 0).unwrap().tensors.is_empty());
        let json = r#"{"e":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]},"s":{"dtype":"F16","shape":[],"data_offsets":[0,2]}}"#;
        let header = parse(json, 2).unwrap();
        assert_eq!(header.tensors.len(), 2);
    }

    #[test]
    fn every_rule_has_its_own_error() {
        assert!(matches!(
            Header::parse(&[1, 2, 3]),
            Err(Error::TooShort { len: 3 })
        ));
        assert!(matches!(
            Header::parse(&u64::MAX.to_le_bytes()),
            Err(Error::HeaderTooLarge { .. })
        ));
        assert!(matches!(
            Header::parse(&100u64.to_le_bytes()),
            Err(Error::HeaderPastEnd {
                len: 100,
                available: 0
            })
        ));
        assert!(matches!(parse(" {}", 0), Err(Error::HeaderStart)));
        let mut not_utf8 = file("{\"\u{e9}\":1}", 0);
        not_utf8[11] = 0xff;
        assert!(matches!(
            Header::parse(&not_utf8),
            Err(Error::HeaderNotUtf8)
        ));
        assert!(matches!(parse("{\"a\":", 0), Err(Error::Json(_))));
        assert!(matches!(parse("[]", 0), Err(Error::HeaderStart)));
        assert!(matches!(
            parse(r#"{"a":{"dtype":"F32"}}"#, 0),
            Err(Error::Json(_))
        ));
        let t = r#"{"dtype":"U8","shape":[1],"data_offsets":[0,1]}"#;
        match parse(&format!(r#"{{"x":{t},"x":{t}}}"#), 1) {
            Err(Error::DuplicateName(name)) => assert_eq!(name, "x"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"__metadata__":{"a":1}}"#, 0),
            Err(Error::Metadata)
        ));
        assert!(matches!(
            parse(r#"{"x":{"dtype":"F12","shape":[1],"data_offsets":[0,1]}}"#, 1),
            Err(Error::UnknownDtype { dtype, .. }) if dtype == "F12"
        ));
        assert!(matches!(
            parse(
                r#"{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,1]}}"#,
                1
            ),
            Err(Error::ShapeOverflow { .. })
        ));
        assert!(matches!(
            parse(
                r#"{"x":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}"#,
                1
            ),
            Err(Error::PartialByte {
                elements: 3,
                bits: 4,
                ..
            })
        ));
        assert!(matches!(
            parse(
                r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#,
                1
            ),
            Err(Error::OffsetsReversed {
                begin: 1,
                end: 0,
                ..
            })
        ));
        assert!(matches!(
            parse(
                r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                4
            ),
            Err(Error::SizeMismatch {
                expected: 8,
                got: 4,
                ..
            })
        ));
        assert!(matches!(
            parse(
                r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
                2
            ),
            Err(Error::Gap {
                begin: 1,
                expected: 0,
                ..
            })
        ));
        assert!(matches!(
            parse(
                &format!(r#"{{"x":{t},"y":{{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}}}"#),
                2
            ),
            Err(Error::Overlap {
                begin: 0,
                expected: 1,
                ..
            })
        ));
        assert!(matches!(
            parse(&format!(r#"{{"x":{t}}}"#), 2),
            Err(Error::DataLength {
                covered: 1,
                available: 2
            })
        ));
        assert!(matches!(
            parse(&format!(r#"{{"x":{t}}}"#), 0),
            Err(Error::DataLength {
                covered: 1,
                available: 0
            })
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let json = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        assert!(matches!(parse(&json, 0), Err(Error::Json(_))));
    }
}
