//! The sample images that ship with Fovea (see `SOURCES.md` beside this
//! crate). They are embedded in the binaries, so an installed `fovea-tui`
//! has a picture to open even far from the repository.

use std::io;
use std::path::{Path, PathBuf};

/// One shipped picture.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

/// Every sample, the default first.
pub const SAMPLES: &[Sample] = &[
    Sample {
        name: "chelsea.png",
        bytes: include_bytes!("../chelsea.png"),
    },
    Sample {
        name: "astronaut.png",
        bytes: include_bytes!("../astronaut.png"),
    },
    Sample {
        name: "rocket.jpg",
        bytes: include_bytes!("../rocket.jpg"),
    },
];

/// The sample opened when no image is given.
pub const DEFAULT: &str = "chelsea.png";

/// The samples folder of the source tree this was built from. Tests and
/// the benchmark read it; it may be gone where a binary was installed.
pub fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A sample's path in the source tree (for tests and the benchmark).
pub fn source_path(name: &str) -> PathBuf {
    source_dir().join(name)
}

/// The embedded bytes of a sample by file name.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    SAMPLES.iter().find(|s| s.name == name).map(|s| s.bytes)
}

/// A folder holding every sample as a file: the source tree's when it is
/// still there and intact, else `fallback`, where the embedded copies are
/// written (again, if one was changed or removed).
pub fn folder(fallback: &Path) -> io::Result<PathBuf> {
    let source = source_dir();
    if holds_all(&source) {
        return Ok(source);
    }
    write_all(fallback)?;
    Ok(fallback.to_path_buf())
}

fn holds_all(dir: &Path) -> bool {
    SAMPLES
        .iter()
        .all(|s| std::fs::read(dir.join(s.name)).is_ok_and(|b| b == s.bytes))
}

/// Writes the samples into `dir`, each through a temporary file and a
/// rename, so a reader never sees half a picture.
fn write_all(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for s in SAMPLES {
        let path = dir.join(s.name);
        if std::fs::read(&path).is_ok_and(|b| b == s.bytes) {
            continue;
        }
        let tmp = dir.join(format!(".{}.{}.tmp", s.name, std::process::id()));
        std::fs::write(&tmp, s.bytes)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_folder_holds_every_embedded_sample() {
        assert!(holds_all(&source_dir()));
        assert_eq!(SAMPLES[0].name, DEFAULT);
        let total: usize = SAMPLES.iter().map(|s| s.bytes.len()).sum();
        assert!(total < 3 << 20, "samples take {total} bytes");
    }

    #[test]
    fn a_fallback_folder_is_filled_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("samples");
        write_all(&target).unwrap();
        assert!(holds_all(&target));
        std::fs::write(target.join(DEFAULT), b"damaged").unwrap();
        std::fs::remove_file(target.join("rocket.jpg")).unwrap();
        assert!(!holds_all(&target));
        write_all(&target).unwrap();
        assert!(holds_all(&target));
        let names: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            SAMPLES.len(),
            "no temporary file left: {names:?}"
        );
    }

    #[test]
    fn bytes_by_name() {
        assert!(bytes("astronaut.png").is_some_and(|b| b.starts_with(b"\x89PNG")));
        assert!(bytes("missing.png").is_none());
    }
}
