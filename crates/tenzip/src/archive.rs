//! Reading single tensors back from a `.tzp` file without restoring the whole file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tenzip_codec::Scratch;
use tenzip_container::{Container, Manifest, Segment, SegmentKind};

use crate::engine::{decode_checked, segment_layout};
use tenzip_safetensors::{serialize, OwnedTensor, Padding, TensorData};
use tenzip_types::Dtype;

use crate::file::{map, write_file_atomically};
use crate::mapped::Input;
use crate::{Error, ErrorKind};

/// An opened `.tzp` file: its manifest, and the tensors it holds, each readable on its own.
///
/// Reading a tensor decodes only that tensor's chunks and checks each chunk's checksum and the tensor's own,
/// so the cost follows the tensor's size, not the file's.
///
/// ```no_run
/// let archive = tenzip::Archive::open("model.safetensors.tzp")?;
/// for name in archive.tensor_names() {
///     println!("{name}");
/// }
/// let bytes = archive.read_tensor("embeddings.word_embeddings.weight")?;
/// # Ok::<(), tenzip::Error>(())
/// ```
pub struct Archive {
    path: PathBuf,
    container: Container<Input>,
    /// Tensor name to segment index.
    tensors: HashMap<String, usize>,
}

impl Archive {
    /// Opens and validates the `.tzp` file at `path` (framing and manifest; payloads are checked as read).
    pub fn open(path: impl AsRef<Path>) -> Result<Archive, Error> {
        let path = path.as_ref();
        let container = Container::open(map(path)?).map_err(|err| Error::new(path, err))?;
        let tensors = container
            .manifest()
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| segment.kind == SegmentKind::Tensor)
            .filter_map(|(index, segment)| Some((segment.name.clone()?, index)))
            .collect();
        Ok(Archive {
            path: path.to_owned(),
            container,
            tensors,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        self.container.manifest()
    }

    /// Tensor names, in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensor_segments()
            .filter_map(|segment| segment.name.as_deref())
    }

    /// The manifest entry of tensor `name` (dtype, shape, sizes, layout).
    pub fn tensor(&self, name: &str) -> Option<&Segment> {
        self.tensors
            .get(name)
            .map(|&index| &self.manifest().segments[index])
    }

    /// The bytes of tensor `name`, exactly as in the original file.
    pub fn read_tensor(&self, name: &str) -> Result<Vec<u8>, Error> {
        let segment = self
            .tensor(name)
            .ok_or_else(|| Error::new(&self.path, ErrorKind::NoSuchTensor(name.to_owned())))?;
        self.read_segment(segment)
            .map_err(|kind| Error::new(&self.path, kind))
    }

    /// Writes tensor `name`'s bytes to `path` (atomically); returns the bytes written.
    pub fn write_tensor(&self, name: &str, path: &Path, overwrite: bool) -> Result<u64, Error> {
        let bytes = self.read_tensor(name)?;
        write_file_atomically(path, &bytes, overwrite, &self.path)?;
        Ok(bytes.len() as u64)
    }

    /// Writes a new safetensors file at `path` holding just the tensors `names`, in that order (a name given
    /// twice is written once, where it first appears: safetensors names are unique); returns its size.
    pub fn write_safetensors(
        &self,
        names: &[&str],
        path: &Path,
        overwrite: bool,
    ) -> Result<u64, Error> {
        let mut tensors = Vec::with_capacity(names.len());
        let mut seen = std::collections::HashSet::new();
        for &name in names.iter().filter(|&&name| seen.insert(name)) {
            let bytes = self.read_tensor(name)?;
            let segment = self.tensor(name).expect("read_tensor found it");
            let dtype = segment
                .dtype
                .as_deref()
                .and_then(Dtype::parse)
                .ok_or_else(|| {
                    Error::new(
                        &self.path,
                        ErrorKind::NoSuchTensor(format!("{name} (no safetensors dtype)")),
                    )
                })?;
            tensors.push(OwnedTensor {
                name: name.to_owned(),
                dtype,
                shape: segment.shape.clone().unwrap_or_default(),
                bytes,
            });
        }
        let data: Vec<TensorData> = tensors.iter().map(OwnedTensor::as_data).collect();
        let file = serialize(&data, None, Padding::Align8);
        write_file_atomically(path, &file, overwrite, &self.path)?;
        Ok(file.len() as u64)
    }

    fn tensor_segments(&self) -> impl Iterator<Item = &Segment> {
        self.manifest()
            .segments
            .iter()
            .filter(|segment| segment.kind == SegmentKind::Tensor)
    }

    fn read_segment(&self, segment: &Segment) -> Result<Vec<u8>, ErrorKind> {
        let layout = segment_layout(segment)?;
        let mut bytes = vec![0; segment.len as usize];
        let mut scratch = Scratch::default();
        let mut start = 0;
        for (index, chunk) in segment.chunks.iter().enumerate() {
            let end = start + chunk.len as usize;
            decode_checked(
                &self.container,
                segment,
                layout,
                index,
                &mut bytes[start..end],
                &mut scratch,
            )?;
            start = end;
        }
        Ok(bytes)
    }
}
