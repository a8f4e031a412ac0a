//! Outputs appear whole or not at all: everything is written to a temporary file in the target's
//! folder and renamed over the target only once complete. A failure drops the temporary file.
use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; call [`AtomicFile::commit`] to make it appear under its final name.
pub struct AtomicFile {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
}

/// The folder of `target` (created if missing) and its file name.
fn prepare_dir(target: &Path) -> Result<(PathBuf, String)> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((dir, name))
}

impl AtomicFile {
    /// Starts writing `target`, creating its parent folders.
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let (dir, name) = prepare_dir(&target)?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        Ok(Self { target, temp })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    /// A second handle on the temporary file, for writers that want to own a `File`.
    pub fn file(&self) -> Result<File> {
        self.temp.as_file().try_clone().map_err(|e| Error::io(&self.target, e))
    }

    /// Flushes to disk and renames over the target.
    pub fn commit(self) -> Result<()> {
        // tempfile creates files readable by the owner only; outputs are ordinary files.
        set_readable(self.temp.as_file()).map_err(|e| Error::io(&self.target, e))?;
        self.temp.as_file().sync_all().map_err(|e| Error::io(&self.target, e))?;
        self.temp
            .persist(&self.target)
            .map_err(|e| Error::io(&self.target, e.error))?;
        Ok(())
    }
}

/// Writes a whole text/bytes file atomically through a buffered writer.
pub fn write_atomic(
    target: impl AsRef<Path>,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let file = AtomicFile::create(target)?;
    let mut w = BufWriter::new(file.file()?);
    body(&mut w).map_err(|e| Error::io(file.path(), e))?;
    w.flush().map_err(|e| Error::io(file.path(), e))?;
    drop(w);
    file.commit()
}

/// Several outputs that appear together or not at all. Each output is first written (by any
/// writer, itself atomic) under a hidden temporary name beside its final one; [`OutputSet::commit`]
/// renames them all once every one is complete. Dropping the set without committing deletes them.
#[derive(Default)]
pub struct OutputSet {
    staged: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl OutputSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The temporary path to write `target` to.
    pub fn stage(&mut self, target: impl AsRef<Path>) -> Result<PathBuf> {
        let target = target.as_ref().to_path_buf();
        let (dir, name) = prepare_dir(&target)?;
        let temp = dir.join(format!(".{name}.{}.staged", std::process::id()));
        self.staged.push((temp.clone(), target));
        Ok(temp)
    }

    /// Renames every output into place. If one rename fails, the outputs already renamed
    /// are removed again (and the rest of the staged files by `Drop`), so a failed stage
    /// leaves none of its outputs behind.
    pub fn commit(mut self) -> Result<()> {
        for (k, (temp, target)) in self.staged.iter().enumerate() {
            if let Err(e) = std::fs::rename(temp, target) {
                for (_, done) in &self.staged[..k] {
                    let _ = std::fs::remove_file(done);
                }
                return Err(Error::io(target, e));
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        if !self.committed {
            for (temp, _) in &self.staged {
                let _ = std::fs::remove_file(temp);
            }
        }
    }
}

#[cfg(unix)]
fn set_readable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_file: &File) -> std::io::Result<()> {
    Ok(())
}
