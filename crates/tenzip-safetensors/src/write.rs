//! Writing safetensors files: used by `extract`-style tools, fixtures and tests.

use std::collections::BTreeMap;

use tenzip_types::Dtype;

/// A tensor to write: name, dtype, shape and its raw little-endian bytes.
#[derive(Debug, Clone, Copy)]
pub struct TensorData<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// The element type.
    pub dtype: Dtype,
    /// The shape.
    pub shape: &'a [u64],
    /// The raw bytes; their length must match shape and dtype.
    pub bytes: &'a [u8],
}

/// A tensor to write that owns its parts, for callers that gather tensors before serializing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTensor {
    /// The tensor's name.
    pub name: String,
    /// The element type.
    pub dtype: Dtype,
    /// The shape.
    pub shape: Vec<u64>,
    /// The raw bytes; their length must match shape and dtype.
    pub bytes: Vec<u8>,
}

impl OwnedTensor {
    /// A borrowed view for [`serialize`].
    pub fn as_data(&self) -> TensorData<'_> {
        TensorData {
            name: &self.name,
            dtype: self.dtype,
            shape: &self.shape,
            bytes: &self.bytes,
        }
    }
}

/// How many spaces follow the header JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Pad so the data starts at a multiple of 8 bytes, as the `safetensors` library does.
    Align8,
    /// Exactly this many spaces.
    Spaces(usize),
}

/// Serialises `tensors` (in the order given, packed back to back) into a safetensors file.
///
/// # Panics
/// If a tensor's byte length does not match its shape and dtype.
pub fn serialize(
    tensors: &[TensorData],
    metadata: Option<&BTreeMap<String, String>>,
    padding: Padding,
) -> Vec<u8> {
    let mut json = String::from("{");
    let mut entries = Vec::new();
    if let Some(metadata) = metadata {
        entries.push(format!(
            "\"__metadata__\":{}",
            serde_json::to_string(metadata).expect("strings serialize")
        ));
    }
    let mut offset = 0u64;
    for tensor in tensors {
        let elements: u64 = tensor.shape.iter().product();
        assert_eq!(
            elements * tensor.dtype.bits(),
            tensor.bytes.len() as u64 * 8,
            "{} has the wrong size",
            tensor.name
        );
        let end = offset + tensor.bytes.len() as u64;
        entries.push(format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{offset},{end}]}}",
            serde_json::to_string(tensor.name).expect("strings serialize"),
            tensor.dtype.name(),
            tensor.shape,
        ));
        offset = end;
    }
    json += &entries.join(",");
    json.push('}');
    let spaces = match padding {
        Padding::Align8 => (8 - json.len() % 8) % 8,
        Padding::Spaces(spaces) => spaces,
    };
    json.extend(std::iter::repeat_n(' ', spaces));

    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(json.as_bytes());
    for tensor in tensors {
        file.extend_from_slice(tensor.bytes);
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Header;

    #[test]
    fn written_files_parse_back() {
        let metadata = BTreeMap::from([("format".to_owned(), "pt ✓".to_owned())]);
        let tensors = [
            TensorData {
                name: "b\"q",
                dtype: Dtype::F16,
                shape: &[2],
                bytes: &[1, 2, 3, 4],
            },
            TensorData {
                name: "a",
                dtype: Dtype::U8,
                shape: &[0],
                bytes: &[],
            },
        ];
        for padding in [Padding::Align8, Padding::Spaces(13)] {
            let file = serialize(&tensors, Some(&metadata), padding);
            let header = Header::parse(&file).unwrap();
            assert_eq!(header.tensors.len(), 2);
            assert_eq!(header.metadata.as_ref(), Some(&metadata));
            assert_eq!(
                &file[header.tensors[0].range.start as usize..][..4],
                &[1, 2, 3, 4]
            );
            if padding == Padding::Align8 {
                assert_eq!(header.len % 8, 0);
            }
        }
    }
}
