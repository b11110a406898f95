//! Recordings spilled to disk, so they survive restarts. Each recording is
//! one file written to a temporary name and renamed into place, with a
//! SHA-256 of its contents at the end; a file that is truncated, corrupt or
//! does not fit the loaded network is deleted and reported as a miss, never
//! served. The folder is bounded by bytes, oldest files removed first.

use crate::error::{Error, Result};
use crate::record::{Bits, LayerRecording, Recording, Switches};
use crate::supply::write_atomically;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FOVEAREC";
const VERSION: u32 = 1;
const EXTENSION: &str = "rec";

/// A folder of recordings.
pub struct DiskStore {
    dir: PathBuf,
    limit: u64,
}

impl DiskStore {
    /// Opens (creating) the folder and removes temporary files left by an
    /// interrupted write.
    pub fn open(dir: &Path, limit: u64) -> Result<DiskStore> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".partial-") {
                tracing::info!(file = %name, "removing an unfinished cache write");
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            limit,
        })
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        // Ids are hex digests; anything else never names a file.
        (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.dir.join(format!("{id}.{EXTENSION}")))
    }

    pub fn save(&self, rec: &Recording) -> Result<()> {
        let Some(path) = self.path(&rec.id) else {
            return Err(Error::invalid("recording_id", "is not a hex digest"));
        };
        let bytes = encode(rec);
        write_atomically(&path, |f| f.write_all(&bytes))?;
        self.enforce_limit(&path);
        Ok(())
    }

    /// Loads a recording; a damaged file is deleted and reported as absent.
    pub fn load(&self, id: &str, check: impl Fn(&Recording) -> bool) -> Option<Recording> {
        let path = self.path(id)?;
        let mut bytes = Vec::new();
        fs::File::open(&path).ok()?.read_to_end(&mut bytes).ok()?;
        match decode(&bytes) {
            Ok(rec) if rec.id == id && check(&rec) => Some(rec),
            Ok(_) => {
                tracing::warn!(file = %path.display(), "cached recording does not fit this model; discarded");
                let _ = fs::remove_file(&path);
                None
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), "corrupt cached recording discarded: {e}");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    pub fn remove(&self, id: &str) -> bool {
        self.path(id).is_some_and(|p| fs::remove_file(p).is_ok())
    }

    /// Deletes the oldest files until the folder is within its bound
    /// (`keep` stays).
    fn enforce_limit(&self, keep: &Path) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == EXTENSION))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.limit {
                break;
            }
            if path != keep && fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_bits(out: &mut Vec<u8>, b: &Bits) {
    put_u32(out, b.len() as u32);
    put_u32(out, b.words().len() as u32);
    for w in b.words() {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

pub fn encode(rec: &Recording) -> Vec<u8> {
    let mut out = Vec::with_capacity(rec.bytes() + 1024);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_bytes(&mut out, rec.id.as_bytes());
    put_bytes(&mut out, rec.label.as_bytes());
    put_u32(&mut out, rec.original_width);
    put_u32(&mut out, rec.original_height);
    put_u32(&mut out, rec.image.width());
    put_u32(&mut out, rec.image.height());
    put_bytes(&mut out, rec.image.as_raw());
    put_u32(&mut out, rec.input.len() as u32);
    for v in &rec.input {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_u32(&mut out, rec.scores.len() as u32);
    for v in &rec.scores {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_u32(&mut out, rec.layers.len() as u32);
    for l in &rec.layers {
        put_u32(&mut out, l.channels as u32);
        put_u32(&mut out, l.height as u32);
        put_u32(&mut out, l.width as u32);
        put_u32(&mut out, l.activations.len() as u32);
        for v in &l.activations {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        put_bits(&mut out, &l.mask);
        match &l.switches {
            Some(Switches::Bits(s)) => {
                out.push(1);
                put_bits(&mut out, s);
            }
            Some(Switches::Cells(cells)) => {
                out.push(2);
                put_u32(&mut out, cells.len() as u32);
                for c in cells {
                    put_u32(&mut out, *c);
                }
            }
            None => out.push(0),
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Bounds-checked reading of an encoded recording.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(Error::Runtime("truncated".into()));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn len(&mut self, elem: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(elem) > self.b.len() - self.at {
            return Err(Error::Runtime("length past the end".into()));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Error::Runtime("bad text".into()))
    }

    fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn bits(&mut self) -> Result<Bits> {
        let len = self.u32()? as usize;
        let n = self.len(8)?;
        let words = self
            .take(n * 8)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Bits::from_words(words, len).ok_or_else(|| Error::Runtime("bit count mismatch".into()))
    }
}

pub fn decode(bytes: &[u8]) -> Result<Recording> {
    if bytes.len() < MAGIC.len() + 4 + 32 {
        return Err(Error::Runtime("too short".into()));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(Error::Runtime("checksum mismatch".into()));
    }
    let mut r = Reader { b: body, at: 0 };
    if r.take(8)? != MAGIC || r.u32()? != VERSION {
        return Err(Error::Runtime("not a recording of this version".into()));
    }
    let id = r.string()?;
    let label = r.string()?;
    let original_width = r.u32()?;
    let original_height = r.u32()?;
    let (w, h) = (r.u32()?, r.u32()?);
    let n = r.len(1)?;
    let raw = r.take(n)?.to_vec();
    let image = image::RgbImage::from_raw(w, h, raw)
        .ok_or_else(|| Error::Runtime("image size mismatch".into()))?;
    let input = r.f32s()?;
    let scores = r.f32s()?;
    let n_layers = r.len(12)?;
    let mut layers = Vec::with_capacity(n_layers);
    for _ in 0..n_layers {
        let (channels, height, width) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        let n = r.len(2)?;
        if n != channels * height * width {
            return Err(Error::Runtime("layer size mismatch".into()));
        }
        let activations = r
            .take(n * 2)?
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        let mask = r.bits()?;
        let switches = match r.take(1)?[0] {
            0 => None,
            1 => Some(Switches::Bits(r.bits()?)),
            2 => {
                let n = r.len(4)?;
                let cells: Vec<u32> = (0..n).map(|_| r.u32()).collect::<Result<_>>()?;
                // Each cell is a position on the previous layer's plane.
                let plane = layers
                    .last()
                    .map_or(0, |l: &LayerRecording| l.height * l.width);
                if cells.iter().any(|&c| c as usize >= plane) {
                    return Err(Error::Runtime("pool switch outside its input".into()));
                }
                Some(Switches::Cells(cells))
            }
            _ => return Err(Error::Runtime("unknown switch kind".into())),
        };
        if mask.len() != n {
            return Err(Error::Runtime("mask size mismatch".into()));
        }
        layers.push(LayerRecording {
            channels,
            height,
            width,
            activations,
            mask,
            switches,
        });
    }
    Ok(Recording {
        id,
        label,
        original_width,
        original_height,
        image,
        input,
        layers,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Recording {
        Recording {
            id: "ab12".into(),
            label: "cat".into(),
            original_width: 5,
            original_height: 4,
            image: image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3])),
            input: vec![0.5; 12],
            layers: vec![
                LayerRecording {
                    channels: 1,
                    height: 2,
                    width: 2,
                    activations: vec![half::f16::from_f32(1.5); 4],
                    mask: Bits::from_fn(4, |i| i % 2 == 0),
                    switches: Some(Switches::Bits(Bits::from_fn(16, |i| i == 3))),
                },
                LayerRecording {
                    channels: 1,
                    height: 1,
                    width: 1,
                    activations: vec![half::f16::from_f32(0.5)],
                    mask: Bits::from_fn(1, |_| true),
                    switches: Some(Switches::Cells(vec![3, 0])),
                },
            ],
            scores: vec![0.25, 0.75],
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_caught() {
        let rec = sample();
        let bytes = encode(&rec);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.layers[0].mask, rec.layers[0].mask);
        assert_eq!(back.layers[0].switches, rec.layers[0].switches);
        assert_eq!(back.layers[1].switches, rec.layers[1].switches);
        assert_eq!(back.input, rec.input);
        // A cell beyond the previous layer's plane is refused, checksum or
        // not.
        let mut beyond = rec.clone();
        beyond.layers[1].switches = Some(Switches::Cells(vec![4, 0]));
        assert!(decode(&encode(&beyond)).is_err());
        assert_eq!(back.image, rec.image);
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i}");
        }
    }

    #[test]
    fn store_discards_damaged_files_and_ignores_foreign_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.rec.partial-1-2"), b"half").unwrap();
        let store = DiskStore::open(dir.path(), 1 << 30).unwrap();
        assert!(!dir.path().join("x.rec.partial-1-2").exists());
        let rec = sample();
        store.save(&rec).unwrap();
        assert!(store.load("ab12", |_| true).is_some());
        let path = dir.path().join("ab12.rec");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert!(store.load("ab12", |_| true).is_none());
        assert!(!path.exists(), "the damaged file is removed");
        assert!(store.load("../etc/passwd", |_| true).is_none());
    }
}
