//! A checkpoint file: named byte sections with a checksum, written atomically.
//!
//! Layout (little endian):
//!
//! ```text
//! magic     8 bytes  "DLMCKPT\0"
//! checksum  u64      FNV-1a 64 of every byte after this field
//! version   u32      2
//! body_len  u64      length of the sections
//! sections           repeated: name length u8, name (UTF-8), length u64, bytes
//! ```
//!
//! Writing goes to a temporary file in the same directory, is flushed with `fsync`, renamed
//! over the target and the directory is synced, so a crash leaves either the old file or the new
//! one, never a mix. Reading checks, in order: the magic (else a foreign file), the declared
//! length (else a truncated file), the checksum over version, length and body (else corrupted
//! bytes), the version; each failure has its own [`CoreError`]. Later versions keep this header.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CoreError;
use dlm_sched::InvalidInput;

/// The first bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"DLMCKPT\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 2;
/// Magic, checksum, version, body length.
const HEADER_LEN: usize = 8 + 8 + 4 + 8;

/// FNV-1a, 64-bit (Fowler, Noll & Vo): enough to detect accidental corruption.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CoreError + '_ {
    move |source| CoreError::Io { path: path.to_path_buf(), source }
}

/// Writes `sections` to `path` atomically.
///
/// # Errors
/// [`CoreError::Io`] if the directory cannot be written; [`CoreError::Invalid`] for a
/// section name longer than 255 bytes.
pub fn write_sections(path: &Path, sections: &[(&str, &[u8])]) -> Result<(), CoreError> {
    let mut body = Vec::new();
    for (name, bytes) in sections {
        let name_len = u8::try_from(name.len()).map_err(|_| {
            CoreError::Invalid(InvalidInput::size(
                "checkpoint",
                "section name length",
                name.len(),
                "at most 255 bytes",
            ))
        })?;
        body.push(name_len);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        body.extend_from_slice(bytes);
    }
    let mut checked = Vec::with_capacity(12 + body.len());
    checked.extend_from_slice(&VERSION.to_le_bytes());
    checked.extend_from_slice(&(body.len() as u64).to_le_bytes());
    checked.extend_from_slice(&body);
    let mut file_bytes = Vec::with_capacity(16 + checked.len());
    file_bytes.extend_from_slice(MAGIC);
    file_bytes.extend_from_slice(&fnv1a64(&checked).to_le_bytes());
    file_bytes.extend_from_slice(&checked);

    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(directory).map_err(io_error(directory))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary: PathBuf = directory.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        file.write_all(&file_bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        // Persist the rename itself (directories can be opened for fsync on Unix).
        if let Ok(dir) = File::open(directory) {
            let _ = dir.sync_all();
        }
        Ok(())
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temporary);
        CoreError::Io { path: path.to_path_buf(), source }
    })
}

/// The sections of a checkpoint file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    path: PathBuf,
    sections: Vec<(String, Vec<u8>)>,
}

impl Sections {
    /// The bytes of section `name`.
    ///
    /// # Errors
    /// [`CoreError::MissingSection`] if there is none.
    pub fn get(&self, name: &str) -> Result<&[u8], CoreError> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes.as_slice())
            .ok_or_else(|| CoreError::MissingSection { path: self.path.clone(), name: name.into() })
    }

    /// Whether section `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.sections.iter().any(|(n, _)| n == name)
    }

    /// The file the sections were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads and verifies a checkpoint file.
///
/// # Errors
/// [`CoreError::Io`], [`CoreError::ForeignCheckpoint`], [`CoreError::CheckpointVersion`],
/// [`CoreError::TruncatedCheckpoint`] or [`CoreError::CorruptCheckpoint`].
pub fn read_sections(path: &Path) -> Result<Sections, CoreError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    let truncated = |needed: usize| CoreError::TruncatedCheckpoint {
        path: path.to_path_buf(),
        needed: needed as u64,
        available: bytes.len() as u64,
    };
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] || head.is_empty() {
        return Err(CoreError::ForeignCheckpoint {
            path: path.to_path_buf(),
            found: head.to_vec(),
            expected: MAGIC.to_vec(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (expected, body_len) = (word(8), word(20));
    let needed = usize::try_from(body_len).ok().and_then(|len| len.checked_add(HEADER_LEN));
    match needed {
        Some(needed) if needed <= bytes.len() => {}
        _ => return Err(truncated(HEADER_LEN.saturating_add(body_len as usize))),
    }
    let found = fnv1a64(&bytes[16..]);
    if found != expected {
        return Err(CoreError::CorruptCheckpoint { path: path.to_path_buf(), expected, found });
    }
    let version = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(CoreError::CheckpointVersion {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    // The checksum holds, so the sections are as written; a malformed one is still an error.
    let corrupt = || CoreError::CorruptCheckpoint { path: path.to_path_buf(), expected, found };
    let body = &bytes[HEADER_LEN..];
    let mut sections = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let name_end = at + 1 + usize::from(body[at]);
        let len_end = name_end + 8;
        let len = body.get(name_end..len_end).ok_or_else(corrupt)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().expect("8 bytes")))
            .map_err(|_| corrupt())?;
        let end = len_end.checked_add(len).filter(|&end| end <= body.len()).ok_or_else(corrupt)?;
        let name = String::from_utf8_lossy(&body[at + 1..name_end]).into_owned();
        sections.push((name, body[len_end..end].to_vec()));
        at = end;
    }
    Ok(Sections { path: path.to_path_buf(), sections })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dlm-checkpoint-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("run.ckpt")
    }

    #[test]
    fn round_trip_and_overwrite() {
        let path = scratch("roundtrip");
        write_sections(&path, &[("meta", b"{}"), ("model", &[1, 2, 3])]).unwrap();
        let sections = read_sections(&path).unwrap();
        assert_eq!(sections.get("model").unwrap(), &[1, 2, 3]);
        assert!(sections.contains("meta") && !sections.contains("ema"));
        assert!(matches!(sections.get("ema"), Err(CoreError::MissingSection { .. })));
        write_sections(&path, &[("model", &[9])]).unwrap();
        assert_eq!(read_sections(&path).unwrap().get("model").unwrap(), &[9]);
        // No temporary file is left behind.
        let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1);
    }

    #[test]
    fn truncated_corrupted_and_foreign_files_give_typed_errors() {
        let path = scratch("damaged");
        write_sections(&path, &[("model", &[7; 100])]).unwrap();
        let good = fs::read(&path).unwrap();

        // Cut anywhere, at a section boundary or inside the header: truncated.
        let boundary = HEADER_LEN + 1 + "model".len() + 8;
        for cut in [good.len() - 1, good.len() - 60, boundary, HEADER_LEN, HEADER_LEN - 3, 5] {
            fs::write(&path, &good[..cut]).unwrap();
            let err = read_sections(&path).unwrap_err();
            assert!(matches!(err, CoreError::TruncatedCheckpoint { .. }), "cut {cut}: {err}");
        }

        // A flipped bit anywhere after the magic, length fields and version included: corrupt
        // (or, for the body length, truncated: it then claims more bytes than there are).
        for at in [HEADER_LEN + 40, HEADER_LEN + 3, 16, 8] {
            let mut flipped = good.clone();
            flipped[at] ^= 0x10;
            fs::write(&path, &flipped).unwrap();
            let err = read_sections(&path).unwrap_err();
            assert!(matches!(err, CoreError::CorruptCheckpoint { .. }), "byte {at}: {err}");
        }
        let mut longer = good.clone();
        longer[20] ^= 0x80;
        fs::write(&path, &longer).unwrap();
        assert!(matches!(read_sections(&path), Err(CoreError::TruncatedCheckpoint { .. })));

        fs::write(&path, b"PK\x03\x04 a zip file, say").unwrap();
        assert!(matches!(read_sections(&path), Err(CoreError::ForeignCheckpoint { .. })));
        fs::write(&path, b"").unwrap();
        assert!(matches!(read_sections(&path), Err(CoreError::ForeignCheckpoint { .. })));

        // A file of another version (with a valid checksum): a version error.
        let mut future = good[16..].to_vec();
        future[0] = 3;
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&fnv1a64(&future).to_le_bytes());
        file.extend_from_slice(&future);
        fs::write(&path, &file).unwrap();
        assert!(matches!(read_sections(&path), Err(CoreError::CheckpointVersion { found: 3, .. })));

        let missing = path.with_file_name("absent.ckpt");
        assert!(matches!(read_sections(&missing), Err(CoreError::Io { .. })));
    }
}
