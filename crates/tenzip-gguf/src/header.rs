//! Walking a GGUF header: every read is bounds-checked, every count is checked before it sizes anything.

use std::collections::HashSet;
use std::ops::Range;

use tenzip_types::GgmlType;

use crate::{Error, Rule, MAGIC};

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a tensor may have. llama.cpp allows 4; a few more cost nothing.
pub const MAX_DIMS: usize = 8;
/// How deep metadata arrays may nest (llama.cpp writes no nested arrays at all).
pub const MAX_NESTING: usize = 4;

/// Smallest possible tensor info: name length, dimension count, type and offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 4 + 8;
/// Smallest possible metadata entry: key length, value type, a one-byte value.
const MIN_METADATA_ENTRY: u64 = 8 + 4 + 1;

/// A parsed GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// The alignment of tensor data: `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub alignment: u64,
    /// Where tensor data starts: the end of the header rounded up to the alignment, or the end of the
    /// file if that comes first in a file without tensor data.
    pub data_start: u64,
    /// The tensors, in header order.
    pub tensors: Vec<Tensor>,
}

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// The name; bytes that are not UTF-8 are shown as U+FFFD.
    pub name: String,
    /// The type, if this version knows its id.
    pub ggml_type: Option<GgmlType>,
    /// The type id as stored.
    pub type_id: u32,
    /// The shape as stored: innermost dimension first.
    pub shape: Vec<u64>,
    /// Absolute byte range of the data. For a type this version does not know, the size is unknown: the
    /// range runs to the next tensor's data or the end of the file.
    pub range: Range<u64>,
}

impl Header {
    /// Parses and validates the header of `file` (the whole file: tensor ranges are checked against it).
    pub fn parse(file: &[u8]) -> Result<Header, Error> {
        let mut cursor = Cursor { file, pos: 0 };
        if cursor.take(4, "magic")? != MAGIC {
            return Err(cursor.error_at(0, Rule::Magic));
        }
        let version = cursor.u32("version")?;
        match version {
            2 | 3 => {}
            _ if matches!(version.swap_bytes(), 2 | 3) => {
                return Err(cursor.error_at(4, Rule::BigEndian))
            }
            other => return Err(cursor.error_at(4, Rule::Version(other))),
        }
        let tensor_count = cursor.count("tensor", MIN_TENSOR_INFO)?;
        let metadata_count = cursor.count("metadata entry", MIN_METADATA_ENTRY)?;
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..metadata_count {
            let key = cursor.string("metadata key")?;
            let value_type = cursor.u32("metadata value type")?;
            if key == b"general.alignment" {
                alignment = cursor.alignment(value_type)?;
            } else {
                cursor.skip_value(value_type, 0)?;
            }
        }
        let mut infos = Vec::with_capacity(tensor_count as usize);
        let mut names = HashSet::new();
        for _ in 0..tensor_count {
            let info_at = cursor.pos as u64;
            let info = cursor.tensor_info()?;
            if !names.insert(info.name_bytes) {
                return Err(cursor.error_at(info_at, Rule::DuplicateName(info.name)));
            }
            infos.push(info);
        }
        let header_end = cursor.pos as u64;
        let data_start = header_end
            .checked_next_multiple_of(alignment)
            .filter(|&start| start <= file.len() as u64 || infos.is_empty())
            .ok_or_else(|| cursor.error_at(header_end, truncated("padding", alignment, &cursor)))?
            .min(file.len() as u64);
        let tensors = place_tensors(infos, data_start, alignment, file.len() as u64)
            .map_err(|rule| cursor.error_at(header_end, rule))?;
        Ok(Header {
            version,
            alignment,
            data_start,
            tensors,
        })
    }
}

fn truncated(what: &'static str, needed: u64, cursor: &Cursor) -> Rule {
    Rule::Truncated {
        what,
        needed,
        available: cursor.remaining(),
    }
}

/// A tensor info before its data is placed.
struct TensorInfo<'a> {
    name_bytes: &'a [u8],
    name: String,
    type_id: u32,
    shape: Vec<u64>,
    offset: u64,
}

/// Turns relative offsets into absolute ranges, checking alignment, sizes, bounds and overlaps.
fn place_tensors(
    infos: Vec<TensorInfo>,
    data_start: u64,
    alignment: u64,
    file_len: u64,
) -> Result<Vec<Tensor>, Rule> {
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        let ggml_type = GgmlType::from_id(info.type_id);
        if info.offset % alignment != 0 {
            return Err(Rule::Misaligned {
                name: info.name,
                offset: info.offset,
                alignment,
            });
        }
        let start = data_start.checked_add(info.offset);
        let len = match ggml_type {
            Some(ggml_type) => {
                Some(byte_len(ggml_type, &info.shape).ok_or_else(|| Rule::Shape {
                    name: info.name.clone(),
                    shape: info.shape.clone(),
                    ggml_type: ggml_type.name().to_owned(),
                })?)
            }
            None => None,
        };
        let end = start.and_then(|start| start.checked_add(len.unwrap_or(0)));
        let range = match (start, end) {
            (Some(start), Some(end)) if end <= file_len => start..end,
            _ => {
                return Err(Rule::DataPastEnd {
                    name: info.name,
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    len: file_len,
                })
            }
        };
        tensors.push(Tensor {
            name: info.name,
            ggml_type,
            type_id: info.type_id,
            shape: info.shape,
            range,
        });
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&index| (tensors[index].range.start, tensors[index].range.end));
    for (position, &index) in order.iter().enumerate() {
        let next_start = order
            .get(position + 1)
            .map_or(file_len, |&next| tensors[next].range.start);
        let tensor = &tensors[index];
        if tensor.ggml_type.is_none() {
            tensors[index].range.end = next_start;
        } else if tensor.range.end > next_start {
            let next = order[position + 1];
            return Err(Rule::Overlap {
                first: tensor.name.clone(),
                second: tensors[next].name.clone(),
            });
        }
    }
    Ok(tensors)
}

/// Bytes of a tensor of `shape` (innermost first): rows of whole blocks.
fn byte_len(ggml_type: GgmlType, shape: &[u64]) -> Option<u64> {
    let innermost = shape.first().copied().unwrap_or(1);
    if innermost % ggml_type.block_values() != 0 {
        return None;
    }
    let values = tenzip_types::element_count(shape)?;
    ggml_type.byte_len(values)
}

struct Cursor<'a> {
    file: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.file.len() - self.pos) as u64
    }

    fn error_at(&self, offset: u64, rule: Rule) -> Error {
        Error { offset, rule }
    }

    fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], Error> {
        if len > self.remaining() {
            return Err(self.error_at(self.pos as u64, truncated(what, len, self)));
        }
        let bytes = &self.file[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// A count of entries that each take at least `min_entry_len` bytes, refused if they cannot fit.
    fn count(&mut self, what: &'static str, min_entry_len: u64) -> Result<u64, Error> {
        let at = self.pos as u64;
        let count = self.u64(what)?;
        if count > self.remaining() / min_entry_len {
            return Err(self.error_at(
                at,
                Rule::CountTooLarge {
                    what,
                    count,
                    available: self.remaining(),
                },
            ));
        }
        Ok(count)
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let len = self.u64(what)?;
        self.take(len, what)
    }

    /// Reads `general.alignment`, which must be a non-zero power of two stored as a u32.
    fn alignment(&mut self, value_type: u32) -> Result<u64, Error> {
        let at = self.pos as u64;
        if value_type != U32 {
            return Err(self.error_at(at, Rule::Alignment(format!("a value of type {value_type}"))));
        }
        let alignment = self.u32("general.alignment")?;
        if !alignment.is_power_of_two() {
            return Err(self.error_at(at, Rule::Alignment(alignment.to_string())));
        }
        Ok(u64::from(alignment))
    }

    /// Skips one metadata value of `value_type`, arrays included.
    fn skip_value(&mut self, value_type: u32, depth: usize) -> Result<(), Error> {
        if let Some(size) = fixed_size(value_type) {
            self.take(size, "metadata value")?;
            return Ok(());
        }
        match value_type {
            STRING => {
                self.string("metadata string")?;
            }
            ARRAY => {
                if depth == MAX_NESTING {
                    return Err(self.error_at(self.pos as u64, Rule::NestingTooDeep(MAX_NESTING)));
                }
                let item_type = self.u32("array item type")?;
                match fixed_size(item_type) {
                    Some(size) => {
                        let count = self.count("array item", size)?;
                        self.take(count * size, "array items")?;
                    }
                    // Strings take at least their 8-byte length, nested arrays their type and count.
                    None if matches!(item_type, STRING | ARRAY) => {
                        let count = self.count("array item", 8)?;
                        for _ in 0..count {
                            self.skip_value(item_type, depth + 1)?;
                        }
                    }
                    None => {
                        return Err(self.error_at(self.pos as u64 - 4, Rule::ValueType(item_type)))
                    }
                }
            }
            other => return Err(self.error_at(self.pos as u64 - 4, Rule::ValueType(other))),
        }
        Ok(())
    }

    fn tensor_info(&mut self) -> Result<TensorInfo<'a>, Error> {
        let name_bytes = self.string("tensor name")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let dims_at = self.pos as u64;
        let dims = self.u32("dimension count")?;
        if dims as usize > MAX_DIMS {
            return Err(self.error_at(
                dims_at,
                Rule::TooManyDims {
                    name,
                    dims,
                    max: MAX_DIMS,
                },
            ));
        }
        let shape = (0..dims)
            .map(|_| self.u64("dimension"))
            .collect::<Result<_, _>>()?;
        let type_id = self.u32("tensor type")?;
        let offset = self.u64("tensor data offset")?;
        Ok(TensorInfo {
            name_bytes,
            name,
            type_id,
            shape,
            offset,
        })
    }
}

const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// The size of a metadata value of fixed size: u8, i8, u16, i16, u32, i32, f32, bool, u64, i64, f64.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes GGUF headers for tests, with the data section appended after padding to `alignment`.
    struct Gguf {
        version: u32,
        metadata: Vec<(Vec<u8>, u32, Vec<u8>)>,
        tensors: Vec<(Vec<u8>, Vec<u64>, u32, u64)>,
        alignment: usize,
        data_len: usize,
    }

    impl Gguf {
        fn new() -> Gguf {
            Gguf {
                version: 3,
                metadata: Vec::new(),
                tensors: Vec::new(),
                alignment: 32,
                data_len: 0,
            }
        }

        fn meta(mut self, key: &str, value_type: u32, value: Vec<u8>) -> Gguf {
            self.metadata
                .push((key.as_bytes().to_vec(), value_type, value));
            self
        }

        fn tensor(mut self, name: &[u8], shape: &[u64], type_id: u32, offset: u64) -> Gguf {
            self.tensors
                .push((name.to_vec(), shape.to_vec(), type_id, offset));
            self
        }

        fn data(mut self, len: usize) -> Gguf {
            self.data_len = len;
            self
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&self.version.to_le_bytes());
            out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
            out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
            for (key, value_type, value) in &self.metadata {
                out.extend_from_slice(&(key.len() as u64).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&value_type.to_le_bytes());
                out.extend_from_slice(value);
            }
            for (name, shape, type_id, offset) in &self.tensors {
                out.extend_from_slice(&(name.len() as u64).to_le_bytes());
                out.extend_from_slice(name);
                out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
                for dim in shape {
                    out.extend_from_slice(&dim.to_le_bytes());
                }
                out.extend_from_slice(&type_id.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
            out.resize(out.len().next_multiple_of(self.alignment), 0);
            out.extend((0..self.data_len).map(|i| i as u8));
            out
        }
    }

    fn string(text: &str) -> Vec<u8> {
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn rule(file: &[u8]) -> Rule {
        Header::parse(file).unwrap_err().rule
    }

    #[test]
    fn reads_tensors_metadata_and_alignment() {
        let mut strings = 8u32.to_le_bytes().to_vec();
        strings.extend_from_slice(&2u64.to_le_bytes());
        strings.extend(string("a"));
        strings.extend(string("ü"));
        let file = Gguf::new()
            .meta("general.name", STRING, string("tiny"))
            .meta("tokens", ARRAY, strings)
            .meta("general.alignment", U32, 64u32.to_le_bytes().to_vec())
            .meta("x", 12, 1.5f64.to_le_bytes().to_vec())
            .tensor(b"q8", &[64, 2], 8, 0)
            .tensor(b"f32", &[3], 0, 192)
            .data(192 + 12);
        let file = Gguf {
            alignment: 64,
            ..file
        }
        .bytes();
        let header = Header::parse(&file).unwrap();
        assert_eq!(header.alignment, 64);
        assert_eq!(header.data_start % 64, 0);
        let start = header.data_start;
        assert_eq!(header.tensors[0].range, start..start + 4 * 34);
        assert_eq!(header.tensors[0].ggml_type, Some(GgmlType::Q8_0));
        assert_eq!(header.tensors[1].range, start + 192..start + 204);
    }

    #[test]
    fn version_2_long_and_non_utf8_names_and_unknown_types_are_read() {
        let long_name = vec![b'n'; 300];
        let file = Gguf {
            version: 2,
            ..Gguf::new()
        }
        .tensor(&long_name, &[4], 0, 0)
        .tensor(b"bad\xff", &[4], 0, 32)
        .tensor(b"future", &[7], 4000, 64)
        .data(100)
        .bytes();
        let header = Header::parse(&file).unwrap();
        assert_eq!(header.version, 2);
        assert_eq!(header.tensors[0].name.len(), 300);
        assert_eq!(header.tensors[1].name, "bad\u{fffd}");
        let future = &header.tensors[2];
        assert_eq!((future.ggml_type, future.type_id), (None, 4000));
        assert_eq!(
            future.range.end,
            file.len() as u64,
            "unknown sizes run to the end"
        );
    }

    #[test]
    fn a_file_without_tensors_needs_no_padding() {
        let mut file = Gguf::new().meta("k", 0, vec![7]).bytes();
        file.truncate(4 + 4 + 8 + 8 + 8 + 1 + 4 + 1);
        let header = Header::parse(&file).unwrap();
        assert_eq!(header.data_start, file.len() as u64);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let file = Gguf::new()
            .meta("general.alignment", U32, 32u32.to_le_bytes().to_vec())
            .meta("name", STRING, string("x"))
            .tensor(b"w", &[32], 8, 0)
            .data(34)
            .bytes();
        assert!(Header::parse(&file).is_ok());
        for len in 0..file.len() {
            assert!(Header::parse(&file[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn each_broken_rule_has_its_own_error() {
        assert_eq!(rule(b"GGML...."), Rule::Magic);
        let v1 = Gguf {
            version: 1,
            ..Gguf::new()
        }
        .bytes();
        assert_eq!(rule(&v1), Rule::Version(1));
        let big_endian = Gguf {
            version: 3u32.swap_bytes(),
            ..Gguf::new()
        }
        .bytes();
        assert_eq!(rule(&big_endian), Rule::BigEndian);

        let mut absurd = Gguf::new().bytes();
        absurd[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            rule(&absurd),
            Rule::CountTooLarge { what: "tensor", .. }
        ));

        let unknown_value = Gguf::new().meta("k", 13, vec![0; 8]).bytes();
        assert_eq!(rule(&unknown_value), Rule::ValueType(13));

        let mut nested = Vec::new();
        for _ in 0..=MAX_NESTING {
            nested.extend_from_slice(&ARRAY.to_le_bytes());
            nested.extend_from_slice(&1u64.to_le_bytes());
        }
        nested.extend_from_slice(&0u32.to_le_bytes());
        nested.extend_from_slice(&0u64.to_le_bytes());
        let deep = Gguf::new().meta("k", ARRAY, nested).bytes();
        assert_eq!(rule(&deep), Rule::NestingTooDeep(MAX_NESTING));

        let huge_array = {
            let mut value = 0u32.to_le_bytes().to_vec();
            value.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
            Gguf::new().meta("k", ARRAY, value).bytes()
        };
        assert!(matches!(rule(&huge_array), Rule::CountTooLarge { .. }));

        let odd_alignment = Gguf::new()
            .meta("general.alignment", U32, 24u32.to_le_bytes().to_vec())
            .bytes();
        assert_eq!(rule(&odd_alignment), Rule::Alignment("24".into()));
        let wide_alignment = Gguf::new()
            .meta("general.alignment", 10, 32u64.to_le_bytes().to_vec())
            .bytes();
        assert!(matches!(rule(&wide_alignment), Rule::Alignment(_)));

        let dims = Gguf::new().tensor(b"w", &[1; 9], 0, 0).data(4).bytes();
        assert!(matches!(rule(&dims), Rule::TooManyDims { dims: 9, .. }));
        let partial_block = Gguf::new().tensor(b"w", &[33], 8, 0).data(68).bytes();
        assert!(matches!(rule(&partial_block), Rule::Shape { .. }));
        let overflow = Gguf::new().tensor(b"w", &[1 << 40, 1 << 40], 0, 0).bytes();
        assert!(matches!(rule(&overflow), Rule::Shape { .. }));
        let misaligned = Gguf::new().tensor(b"w", &[1], 0, 4).data(8).bytes();
        assert!(matches!(
            rule(&misaligned),
            Rule::Misaligned { offset: 4, .. }
        ));
        let past_end = Gguf::new().tensor(b"w", &[16], 0, 0).data(63).bytes();
        assert!(matches!(rule(&past_end), Rule::DataPastEnd { .. }));
        let far_offset = Gguf::new().tensor(b"w", &[1], 0, u64::MAX - 31).bytes();
        assert!(matches!(rule(&far_offset), Rule::DataPastEnd { .. }));
        let overlap = Gguf::new()
            .tensor(b"a", &[16], 0, 0)
            .tensor(b"b", &[16], 0, 32)
            .data(128)
            .bytes();
        assert!(matches!(rule(&overlap), Rule::Overlap { .. }));
        let twice = Gguf::new()
            .tensor(b"a", &[8], 0, 0)
            .tensor(b"a", &[8], 0, 32)
            .data(64)
            .bytes();
        assert_eq!(rule(&twice), Rule::DuplicateName("a".into()));
    }

    #[test]
    fn errors_name_the_offset() {
        let file = Gguf::new().tensor(b"w", &[1; 9], 0, 0).bytes();
        let error = Header::parse(&file).unwrap_err();
        assert_eq!(
            error.offset,
            24 + 8 + 1,
            "the dimension count after the name"
        );
        assert!(error
            .to_string()
            .starts_with("at byte 33: tensor \"w\" has 9 dimensions"));
    }
}
