//! Where Fovea keeps what it fetches: one per-user cache folder.

use std::path::PathBuf;

/// `FOVEA_CACHE_DIR`, else `$XDG_CACHE_HOME/fovea`, else `~/.cache/fovea`,
/// else a folder under the system temp dir.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FOVEA_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("fovea");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("fovea");
    }
    std::env::temp_dir().join("fovea-cache")
}
