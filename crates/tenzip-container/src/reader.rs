use crate::{
    Checksum, Chunk, Error, Manifest, END_MAGIC, FOOTER_LEN, FORMAT_VERSION, MAGIC, MAX_CHUNK_LEN,
    PREAMBLE_LEN,
};

/// The largest manifest a reader inflates: a hostile file cannot make it allocate more. Real manifests take
/// about 150 bytes a chunk, so this allows well over a million chunks.
pub const MAX_MANIFEST_LEN: usize = 256 << 20;

/// A validated `.tzp` container over its bytes: a slice, a vector or a memory map (`B`).
///
/// Opening checks every rule of `FORMAT.md` that can be checked without decoding: afterwards every chunk's
/// payload lies inside the payload area and every length adds up, so [`Container::payload`] cannot fail.
#[derive(Debug)]
pub struct Container<B> {
    bytes: B,
    manifest: Manifest,
}

impl<B: AsRef<[u8]>> Container<B> {
    /// Validates the framing and the manifest of the container `bytes`.
    pub fn open(storage: B) -> Result<Container<B>, Error> {
        let bytes = storage.as_ref();
        let len = bytes.len() as u64;
        if len < PREAMBLE_LEN + FOOTER_LEN {
            return Err(Error::TooShort { len });
        }
        if bytes[..8] != MAGIC {
            return Err(Error::NotTzp);
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                got: version,
                supported: FORMAT_VERSION,
            });
        }
        if read_u32(bytes, 12) != 0 {
            return Err(Error::Inconsistent("reserved flags are not zero".into()));
        }
        let footer = (len - FOOTER_LEN) as usize;
        if bytes[footer + 24..] != END_MAGIC {
            return Err(Error::NoFooter);
        }
        let manifest_offset = read_u64(bytes, footer);
        let manifest_len = read_u64(bytes, footer + 8);
        let manifest_end = manifest_offset.checked_add(manifest_len);
        if manifest_offset < PREAMBLE_LEN || manifest_end != Some(footer as u64) {
            return Err(Error::ManifestBounds {
                offset: manifest_offset,
                len: manifest_len,
            });
        }
        let deflated = &bytes[manifest_offset as usize..footer];
        if Checksum::of(deflated).0 != read_u64(bytes, footer + 16) {
            return Err(Error::ManifestChecksum);
        }
        let json = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_MANIFEST_LEN)
            .map_err(|err| Error::ManifestDeflate(format!("{:?}", err.status)))?;
        let manifest: Manifest = serde_json::from_slice(&json).map_err(Error::ManifestJson)?;
        validate(&manifest, manifest_offset)?;
        Ok(Container {
            bytes: storage,
            manifest,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The coded payload of one of this container's chunks.
    ///
    /// # Panics
    /// If `chunk` does not come from this container's manifest.
    pub fn payload(&self, chunk: &Chunk) -> &[u8] {
        &self.bytes.as_ref()[chunk.offset as usize..(chunk.offset + chunk.stored) as usize]
    }

    /// The container file's bytes, as given to [`Container::open`].
    pub fn storage(&self) -> &B {
        &self.bytes
    }

    /// Length of the whole container file.
    pub fn len(&self) -> u64 {
        self.bytes.as_ref().len() as u64
    }

    /// Whether the container is empty (never true for an opened container).
    pub fn is_empty(&self) -> bool {
        self.bytes.as_ref().is_empty()
    }
}

/// Checks that segments tile the source, chunks tile their segments, and payloads lie in the payload area.
fn validate(manifest: &Manifest, payload_end: u64) -> Result<(), Error> {
    let inconsistent = |message: String| Err(Error::Inconsistent(message));
    if manifest.format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            got: manifest.format_version,
            supported: FORMAT_VERSION,
        });
    }
    let mut expected_offset = 0u64;
    for (index, segment) in manifest.segments.iter().enumerate() {
        if segment.offset != expected_offset {
            return inconsistent(format!(
                "segment {index} starts at {}, the previous one ends at {expected_offset}",
                segment.offset
            ));
        }
        let mut covered = 0u64;
        for chunk in &segment.chunks {
            if chunk.len > MAX_CHUNK_LEN {
                return inconsistent(format!(
                    "segment {index} has a chunk of {} bytes, over the limit",
                    chunk.len
                ));
            }
            let end = chunk.offset.checked_add(chunk.stored);
            if chunk.offset < PREAMBLE_LEN || end.is_none_or(|end| end > payload_end) {
                return inconsistent(format!(
                    "segment {index} has a chunk at {} of {} bytes outside the payload area",
                    chunk.offset, chunk.stored
                ));
            }
            covered += chunk.len;
        }
        if covered != segment.len {
            return inconsistent(format!(
                "segment {index} is {} bytes but its chunks hold {covered}",
                segment.len
            ));
        }
        expected_offset = segment
            .offset
            .checked_add(segment.len)
            .ok_or_else(|| Error::Inconsistent(format!("segment {index} ends past 2^64")))?;
    }
    if expected_offset != manifest.source.len {
        return inconsistent(format!(
            "segments cover {expected_offset} bytes, the source file had {}",
            manifest.source.len
        ));
    }
    Ok(())
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Segment, SegmentKind, Source, Writer};

    fn container() -> Vec<u8> {
        let mut writer = Writer::new(Vec::new()).unwrap();
        let payloads: [&[u8]; 2] = [b"abc", b"defg"];
        let chunks = payloads
            .iter()
            .map(|payload| Chunk {
                offset: writer.append(payload).unwrap(),
                stored: payload.len() as u64,
                len: payload.len() as u64,
                xxh3: Checksum::of(payload),
            })
            .collect();
        let segment = Segment::new(SegmentKind::Bytes, 0..7, "bytes", chunks);
        let source = Source {
            format: "generic".into(),
            len: 7,
        };
        writer
            .finish(&Manifest::new(source, 4, vec![segment]))
            .unwrap()
    }

    /// Rewrites the manifest of a valid container (fixing its checksum) to test the consistency rules.
    fn with_manifest(edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let bytes = container();
        let mut manifest = Container::open(&bytes).unwrap().manifest().clone();
        edit(&mut manifest);
        let mut writer = Writer::new(Vec::new()).unwrap();
        writer
            .append(&bytes[PREAMBLE_LEN as usize..PREAMBLE_LEN as usize + 7])
            .unwrap();
        writer.finish(&manifest).unwrap()
    }

    #[test]
    fn opens_what_the_writer_wrote() {
        let bytes = container();
        let container = Container::open(&bytes).unwrap();
        let segment = &container.manifest().segments[0];
        assert_eq!(container.payload(&segment.chunks[1]), b"defg");
        assert_eq!(segment.stored_len(), 7);
    }

    #[test]
    fn every_framing_rule_has_its_own_error() {
        let good = container();
        assert!(matches!(
            Container::open(&good[..40]),
            Err(Error::TooShort { len: 40 })
        ));
        let mut bad = good.clone();
        bad[1] = b'X';
        assert!(matches!(Container::open(&bad), Err(Error::NotTzp)));
        let mut bad = good.clone();
        bad[8] = 1; // The development builds' version.
        assert!(matches!(
            Container::open(&bad),
            Err(Error::UnsupportedVersion { got: 1, .. })
        ));
        let mut bad = good.clone();
        bad[12] = 1;
        assert!(matches!(Container::open(&bad), Err(Error::Inconsistent(_))));
        assert!(matches!(
            Container::open(&good[..good.len() - 1]),
            Err(Error::NoFooter)
        ));
        let mut bad = good.clone();
        let footer = bad.len() - FOOTER_LEN as usize;
        bad[footer..footer + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Container::open(&bad),
            Err(Error::ManifestBounds { .. })
        ));
        let mut bad = good.clone();
        bad[footer - 3] ^= 1;
        assert!(matches!(
            Container::open(&bad),
            Err(Error::ManifestChecksum)
        ));
    }

    #[test]
    fn inconsistent_manifests_are_rejected() {
        let cases: [fn(&mut Manifest); 5] = [
            |m| m.segments[0].offset = 1,
            |m| m.segments[0].chunks[1].len = MAX_CHUNK_LEN + 1,
            |m| m.segments[0].chunks[1].stored = 1 << 40,
            |m| m.segments[0].len = 8,
            |m| m.source.len = 6,
        ];
        for edit in cases {
            assert!(matches!(
                Container::open(&with_manifest(edit)),
                Err(Error::Inconsistent(_))
            ));
        }
    }

    #[test]
    fn a_manifest_that_does_not_inflate_is_an_error() {
        let bytes = Writer::new(Vec::new())
            .unwrap()
            .finish_with_manifest_bytes(&[0xff; 40])
            .unwrap();
        assert!(matches!(
            Container::open(&bytes),
            Err(Error::ManifestDeflate(_))
        ));
    }

    #[test]
    fn bad_manifest_json_is_an_error() {
        let nested = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let nested = miniz_oxide::deflate::compress_to_vec(nested.as_bytes(), 6);
        let bytes = Writer::new(Vec::new())
            .unwrap()
            .finish_with_manifest_bytes(&nested)
            .unwrap();
        assert!(matches!(
            Container::open(&bytes),
            Err(Error::ManifestJson(_))
        ));
    }
}
