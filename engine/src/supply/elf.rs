//! Which shared libraries an ELF file needs and where the dynamic loader
//! would find them: the facts behind `fovead doctor` and the check that a
//! fetched CUDA set is complete. Parsing is the `object` crate's; only the
//! loader's search order (ld.so(8)) is written here, since no crate models it.

use crate::error::{Error, Result};
use object::read::elf::ElfFile64;
use object::{Endianness, ReadCache, elf};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The dynamic section of one shared library.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// DT_RPATH entries, `$ORIGIN` expanded.
    pub rpath: Vec<PathBuf>,
    /// DT_RUNPATH entries, `$ORIGIN` expanded.
    pub runpath: Vec<PathBuf>,
}

/// Reads the dynamic section of `path` (only the headers and that section
/// are read, not the whole file).
pub fn read(path: &Path) -> Result<Dynamic> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let cache = ReadCache::new(file);
    let bad = |e: object::Error| {
        Error::Supply(format!("{}: not a 64-bit ELF library: {e}", path.display()))
    };
    let parsed = ElfFile64::<Endianness, _>::parse(&cache).map_err(bad)?;
    let table = parsed.elf_dynamic_table().map_err(bad)?;
    let origin = path.parent().unwrap_or(Path::new("/"));
    let expand = |s: &str| -> Vec<PathBuf> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(|p| {
                PathBuf::from(
                    p.replace("${ORIGIN}", &origin.to_string_lossy())
                        .replace("$ORIGIN", &origin.to_string_lossy()),
                )
            })
            .collect()
    };
    let mut out = Dynamic::default();
    for d in &table {
        let text = || {
            table
                .string(d)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .map_err(bad)
        };
        match d.tag {
            elf::DT_NEEDED => out.needed.push(text()?),
            elf::DT_SONAME => out.soname = Some(text()?),
            elf::DT_RPATH => out.rpath.extend(expand(&text()?)),
            elf::DT_RUNPATH => out.runpath.extend(expand(&text()?)),
            _ => {}
        }
    }
    Ok(out)
}

/// The loader's view of the system: LD_LIBRARY_PATH, the ld.so cache and
/// the default folders.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub ld_library_path: Vec<PathBuf>,
    /// soname -> path, from `ldconfig -p` (entries of this machine's ABI).
    pub ld_cache: HashMap<String, PathBuf>,
}

impl Search {
    /// The search of this process: its LD_LIBRARY_PATH, as the loader read
    /// it at start, and the system's ld.so cache.
    pub fn system() -> Search {
        let ld_library_path = std::env::var_os("LD_LIBRARY_PATH")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let ld_cache = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
            .iter()
            .find_map(|exe| std::process::Command::new(exe).arg("-p").output().ok())
            .filter(|o| o.status.success())
            .map(|o| parse_ldconfig(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default();
        Search {
            ld_library_path,
            ld_cache,
        }
    }

    /// Where the loader finds `name` for a library with `requester`'s
    /// dynamic section: an object already loaded under that soname
    /// (`loaded`), DT_RPATH (when there is no DT_RUNPATH), LD_LIBRARY_PATH,
    /// DT_RUNPATH, the ld.so cache, then the default folders.
    pub fn resolve(
        &self,
        name: &str,
        requester: &Dynamic,
        loaded: &HashMap<String, PathBuf>,
    ) -> Option<PathBuf> {
        if name.contains('/') {
            let p = PathBuf::from(name);
            return p.is_file().then_some(p);
        }
        if let Some(p) = loaded.get(name) {
            return Some(p.clone());
        }
        let in_dirs = |dirs: &[PathBuf]| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        if requester.runpath.is_empty()
            && let Some(p) = in_dirs(&requester.rpath)
        {
            return Some(p);
        }
        if let Some(p) = in_dirs(&self.ld_library_path) {
            return Some(p);
        }
        if let Some(p) = in_dirs(&requester.runpath) {
            return Some(p);
        }
        if let Some(p) = self.ld_cache.get(name).filter(|p| p.is_file()) {
            return Some(p.clone());
        }
        in_dirs(&DEFAULT_DIRS.iter().map(PathBuf::from).collect::<Vec<_>>())
    }
}

const DEFAULT_DIRS: &[&str] = &["/lib", "/usr/lib", "/lib64", "/usr/lib64"];

/// The ABI tag `ldconfig -p` gives this machine's libraries.
const ABI: &str = if cfg!(target_arch = "aarch64") {
    "AArch64"
} else {
    "x86-64"
};

fn parse_ldconfig(text: &str) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        // "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1"
        let Some((left, path)) = line.split_once("=>") else {
            continue;
        };
        let Some((name, tags)) = left.trim().split_once(' ') else {
            continue;
        };
        if !tags.contains(ABI) {
            continue;
        }
        out.entry(name.to_string())
            .or_insert_with(|| PathBuf::from(path.trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldconfig_lines_of_other_abis_are_skipped() {
        let text = "3 libs found in cache `/etc/ld.so.cache'\n\
            \tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n\
            \tlibz.so.1 (libc6,AArch64) => /lib/aarch64-linux-gnu/libz.so.1\n\
            \tlibz.so.1 (libc6) => /lib/i386-linux-gnu/libz.so.1\n";
        let m = parse_ldconfig(text);
        assert_eq!(m.len(), 1);
        let expected = if cfg!(target_arch = "aarch64") {
            "/lib/aarch64-linux-gnu/libz.so.1"
        } else {
            "/lib/x86_64-linux-gnu/libz.so.1"
        };
        assert_eq!(m["libz.so.1"], PathBuf::from(expected));
    }

    #[test]
    fn this_test_binary_needs_libc_and_the_loader_finds_it() {
        let exe = std::env::current_exe().unwrap();
        let d = read(&exe).unwrap();
        assert!(d.needed.iter().any(|n| n == "libc.so.6"), "{d:?}");
        let search = Search::system();
        let libc = search.resolve("libc.so.6", &d, &HashMap::new()).unwrap();
        // The file the loader found is the one this process mapped.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let canonical = std::fs::canonicalize(&libc).unwrap();
        assert!(
            maps.contains(&*canonical.to_string_lossy()),
            "{} not mapped",
            canonical.display()
        );
        assert!(
            search
                .resolve("libfovea-no-such.so.1", &d, &HashMap::new())
                .is_none()
        );
    }

    #[test]
    fn runpath_is_searched_and_rpath_only_without_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libx.so.1"), b"").unwrap();
        let mut d = Dynamic {
            rpath: vec!["/nonexistent".into()],
            runpath: vec![dir.path().to_path_buf()],
            ..Default::default()
        };
        let s = Search::default();
        assert_eq!(
            s.resolve("libx.so.1", &d, &HashMap::new()),
            Some(dir.path().join("libx.so.1"))
        );
        d.runpath.clear();
        d.rpath = vec![dir.path().to_path_buf()];
        assert_eq!(
            s.resolve("libx.so.1", &d, &HashMap::new()),
            Some(dir.path().join("libx.so.1"))
        );
    }
}
