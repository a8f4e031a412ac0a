//! Outputs appear whole or not at all.
//!
//! * One file ([`AtomicFile`], [`write_atomic`]): written to a hidden temporary file in the
//!   target's folder and renamed over the target once complete.
//! * Several files that belong together ([`OutputSet`]: counts + obs + summary, a checkpoint's
//!   tensors + description): each is staged under a hidden name; once all are complete a commit
//!   journal listing the renames is written (atomically, into every folder of the set), then the
//!   files are renamed and the journals removed. The journal's appearance is the commit point: a
//!   process killed before it leaves the previous set; one killed after it leaves a journal that
//!   the next reader or writer of that folder ([`settle`], called by [`open_input`],
//!   [`AtomicFile::create`] and [`OutputSet::stage`]) rolls forward, so no perturbgen stage ever
//!   reads half of one set and half of another.
//!
//! Hidden names carry the writer's process id (`.<name>.<pid>.staged`, `.<name>.<pid>.<rand>.partial`,
//! `.pgen-commit.<pid>.json`), so that leftovers of a killed writer are recognised and removed by
//! the next writer of the same output.
//!
//! Renames are plain `rename(2)` calls: no library offers a multi-file atomic commit on POSIX
//! file systems, hence this module. Files get the mode the umask gives (0644 under the usual
//! 022), like any file a user's tools create.
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const STAGED: &str = "staged";
const PARTIAL: &str = "partial";
const JOURNAL_PREFIX: &str = ".pgen-commit.";

/// Fault injection for the tests (`tests/python/test_reliability.py`): with
/// `PGEN_FAULT_KILL_AFTER_RENAMES=k`, the process's n-th output-set commit (n from
/// `PGEN_FAULT_AT_COMMIT`, default 1) kills its own process (SIGKILL, as `kill -9` would) after
/// its k-th rename; k = 0 kills it just before the commit journal is written.
const FAULT_ENV: &str = "PGEN_FAULT_KILL_AFTER_RENAMES";
const FAULT_COMMIT_ENV: &str = "PGEN_FAULT_AT_COMMIT";
static COMMITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The rename count after which this commit is to kill its process, if a fault is injected.
fn injected_fault() -> Option<usize> {
    let commit = COMMITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let after: usize = std::env::var(FAULT_ENV).ok()?.parse().ok()?;
    let at: usize = std::env::var(FAULT_COMMIT_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    (commit == at).then_some(after)
}

fn kill_self(renames: usize) {
    log::warn!("{FAULT_ENV}: killing this process after {renames} renames");
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// A file being written; call [`AtomicFile::commit`] to make it appear under its final name.
pub struct AtomicFile {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
}

/// The folder of `target` (created if missing) and its file name.
fn prepare_dir(target: &Path) -> Result<(PathBuf, String)> {
    let dir = parent_dir(target);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() || target.is_dir() {
        return Err(Error::invalid(target, "is a folder or has no file name; expected an output file path"));
    }
    Ok((dir, name))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl AtomicFile {
    /// Starts writing `target`, creating its parent folders and removing temporary files that
    /// killed writers of the same target left behind.
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let (dir, name) = prepare_dir(&target)?;
        settle(&dir)?;
        remove_stale_temporaries(&dir, &name);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}.{}.", std::process::id()))
            .suffix(&format!(".{PARTIAL}"))
            .permissions(umask_permissions())
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&target, e))?;
        Ok(Self { target, temp })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    /// The temporary file's own path, for writers that open files by name (libhdf5); nothing
    /// appears under [`AtomicFile::path`] until [`AtomicFile::commit`].
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// A second handle on the temporary file, for writers that want to own a `File`.
    pub fn file(&self) -> Result<File> {
        self.temp.as_file().try_clone().map_err(|e| Error::io(&self.target, e))
    }

    /// Flushes to disk and renames over the target.
    pub fn commit(self) -> Result<()> {
        self.temp.as_file().sync_all().map_err(|e| Error::io(&self.target, e))?;
        self.temp
            .persist(&self.target)
            .map_err(|e| Error::io(&self.target, e.error))?;
        Ok(())
    }
}

/// Mode 0666 for new files, which `open(2)` narrows by the process's umask (tempfile's default
/// is 0600, which would hide outputs from collaborators on a shared cluster file system).
#[cfg(unix)]
fn umask_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o666)
}

/// Sets 0666 narrowed by the process's umask (read from /proc, which does not change it).
#[cfg(unix)]
fn set_umask_mode(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o666 & !process_umask()))
}

#[cfg(not(unix))]
fn set_umask_mode(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn process_umask() -> u32 {
    let from_proc = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
    });
    from_proc.unwrap_or_else(|| {
        // Without /proc: umask(2) can only be read by setting it; set it straight back.
        let old = unsafe { libc::umask(0o022) };
        unsafe { libc::umask(old) };
        old as u32
    })
}

#[cfg(not(unix))]
fn umask_permissions() -> std::fs::Permissions {
    std::fs::metadata(".").map(|m| m.permissions()).expect("current folder")
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

/// Opens an input file after completing any interrupted commit in its folder (see the module
/// documentation), so that it is never one half of an output set.
pub fn open_input(path: &Path) -> Result<File> {
    settle(&parent_dir(path))?;
    File::open(path).map_err(|e| Error::io(path, e))
}

/// The name a user knows for a path: a staged or temporary file's target (errors that a
/// writer reports against its temporary path name the output instead).
pub fn public_path(path: &Path) -> PathBuf {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return path.to_path_buf() };
    if let Some((target, _pid)) = parse_hidden(name) {
        return parent_dir(path).join(target);
    }
    path.to_path_buf()
}

/// `.<target>.<pid>.staged` or `.<target>.<pid>.<random>.partial` → (target, pid).
fn parse_hidden(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix('.')?;
    let (stem, kind) = rest.rsplit_once('.')?;
    let stem = match kind {
        STAGED => stem,
        PARTIAL => stem.rsplit_once('.')?.0,
        _ => return None,
    };
    let (target, pid) = stem.rsplit_once('.')?;
    let pid = pid.parse().ok()?;
    (!target.is_empty()).then_some((target, pid))
}

pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // kill(pid, 0) checks existence without sending anything; EPERM means it exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes temporary files of `name` in `dir` whose writer process is gone (a kill -9 leaves
/// them; nothing else would ever remove them).
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if let Some((target, pid)) = parse_hidden(file_name) {
            if target == name && !process_alive(pid) {
                log::info!("removing {} (left by a killed writer, process {pid})", dir.join(file_name).display());
                let _ = std::fs::remove_file(dir.join(file_name));
            }
        }
    }
}

/// What a commit journal holds: the renames still to do and every journal of the set.
#[derive(serde::Serialize, serde::Deserialize)]
struct Journal {
    pid: u32,
    renames: Vec<(PathBuf, PathBuf)>,
    journals: Vec<PathBuf>,
}

/// Completes output-set commits in `dir` that a killed process left half done (renames the
/// rest of the set into place, then removes the journals). A commit of a live process is
/// waited for briefly.
pub fn settle(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let journals: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(JOURNAL_PREFIX) && n.ends_with(".json")))
        .collect();
    for path in journals {
        let journal: Journal = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::invalid(&path, format!("unreadable commit journal ({e}); remove it and rerun the stage that writes this folder")))?,
            Err(_) => continue, // completed meanwhile
        };
        if journal.pid != std::process::id() && process_alive(journal.pid) {
            // A live writer finishes its renames within milliseconds.
            for _ in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                if !path.exists() {
                    break;
                }
            }
            if path.exists() {
                return Err(Error::invalid(&path, format!("outputs in this folder are being committed by process {}", journal.pid)));
            }
            continue;
        }
        log::warn!("{}: completing an output set a killed process (pid {}) left half renamed", dir.display(), journal.pid);
        for (temp, target) in &journal.renames {
            if temp.exists() {
                std::fs::rename(temp, target).map_err(|e| Error::io(target, e))?;
            }
        }
        for j in &journal.journals {
            let _ = std::fs::remove_file(j);
        }
    }
    Ok(())
}

/// Several outputs that appear together or not at all (see the module documentation). Each
/// output is first written (by any writer) to the path [`OutputSet::stage`] returns;
/// [`OutputSet::commit`] renames them all once every one is complete. Dropping the set without
/// committing deletes them.
#[derive(Default)]
pub struct OutputSet {
    staged: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl OutputSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The temporary path to write `target` to. The same target twice is refused (it would be
    /// one file written twice, not two outputs).
    pub fn stage(&mut self, target: impl AsRef<Path>) -> Result<PathBuf> {
        let target = target.as_ref().to_path_buf();
        let (dir, name) = prepare_dir(&target)?;
        let canonical = absolute(&dir)?.join(&name);
        for (_, earlier) in &self.staged {
            if absolute(&parent_dir(earlier))?.join(earlier.file_name().unwrap_or_default()) == canonical {
                return Err(Error::invalid(&target, "given for two different outputs of this stage; each output needs its own path"));
            }
        }
        settle(&dir)?;
        remove_stale_temporaries(&dir, &name);
        let temp = dir.join(format!(".{name}.{}.{STAGED}", std::process::id()));
        self.staged.push((temp.clone(), target));
        Ok(temp)
    }

    /// Makes every staged output appear: syncs them, writes the commit journal into each of the
    /// set's folders, renames, removes the journals. A failure before the journal leaves the
    /// previous outputs as they were.
    pub fn commit(mut self) -> Result<()> {
        for (temp, target) in &self.staged {
            let file = File::open(temp).map_err(|e| Error::io(target, e))?;
            // Writers of other libraries choose their own modes (safetensors: 0600); outputs get
            // the mode the umask gives any new file.
            set_umask_mode(&file).map_err(|e| Error::io(target, e))?;
            file.sync_all().map_err(|e| Error::io(target, e))?;
        }
        // Absolute paths: a reader that completes the commit may run in another folder.
        let renames = self
            .staged
            .iter()
            .map(|(temp, target)| Ok((absolute(temp)?, absolute(target)?)))
            .collect::<Result<Vec<_>>>()?;
        let dirs: BTreeSet<PathBuf> = renames.iter().map(|(_, t)| parent_dir(t)).collect();
        let journal = Journal {
            pid: std::process::id(),
            renames,
            journals: dirs.iter().map(|d| d.join(format!("{JOURNAL_PREFIX}{}.json", std::process::id()))).collect(),
        };
        let body = serde_json::to_vec(&journal).map_err(|e| Error::Data(format!("commit journal: {e}")))?;
        let fault = injected_fault();
        if fault == Some(0) {
            kill_self(0);
        }
        for path in &journal.journals {
            if let Err(e) = write_atomic(path, |w| w.write_all(&body)) {
                for j in &journal.journals {
                    let _ = std::fs::remove_file(j);
                }
                return Err(e);
            }
        }
        for (k, (temp, target)) in self.staged.iter().enumerate() {
            // The journal is written: from here on the new set is committed, and a failed rename
            // (which rename(2) in one folder does not do short of a vanished file) is an error the
            // next settle() retries.
            std::fs::rename(temp, target).map_err(|e| Error::io(target, e))?;
            if fault == Some(k + 1) {
                kill_self(k + 1);
            }
        }
        for j in &journal.journals {
            let _ = std::fs::remove_file(j);
        }
        self.committed = true;
        Ok(())
    }
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).map_err(|e| Error::io(dir, e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_map_back_to_their_targets() {
        assert_eq!(parse_hidden(".counts.parquet.123.staged"), Some(("counts.parquet", 123)));
        assert_eq!(parse_hidden(".counts.parquet.123.AbC9x.partial"), Some(("counts.parquet", 123)));
        assert_eq!(parse_hidden("counts.parquet"), None);
        assert_eq!(parse_hidden(".counts.parquet.x.staged"), None);
        assert_eq!(public_path(Path::new("a/b/.obs.parquet.77.staged")), PathBuf::from("a/b/obs.parquet"));
    }

    #[test]
    fn the_same_output_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = OutputSet::new();
        set.stage(dir.path().join("x")).unwrap();
        let err = set.stage(dir.path().join("x")).unwrap_err().to_string();
        assert!(err.contains("given for two different outputs"), "{err}");
    }

    #[test]
    fn an_interrupted_commit_is_rolled_forward_by_the_next_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        // What a writer killed after its first rename leaves: a renamed, b staged, the journal.
        let dead_pid = 999_999_999u32; // above Linux's pid_max: never a live process
        let staged_b = dir.path().join(format!(".b.txt.{dead_pid}.staged"));
        std::fs::write(&a, "new a").unwrap();
        std::fs::write(&staged_b, "new b").unwrap();
        let journal = Journal {
            pid: dead_pid,
            renames: vec![(dir.path().join(format!(".a.txt.{dead_pid}.staged")), a.clone()), (staged_b.clone(), b.clone())],
            journals: vec![dir.path().join(format!("{JOURNAL_PREFIX}{dead_pid}.json"))],
        };
        std::fs::write(&journal.journals[0], serde_json::to_vec(&journal).unwrap()).unwrap();
        let mut text = String::new();
        use std::io::Read;
        open_input(&b).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "new b");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new a");
        assert!(!journal.journals[0].exists() && !staged_b.exists());
    }

    #[test]
    fn stale_temporaries_of_a_dead_writer_are_removed_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".out.csv.999999999.Zq1.partial");
        let other = dir.path().join(".other.csv.999999999.staged");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&other, "half").unwrap();
        write_atomic(dir.path().join("out.csv"), |w| w.write_all(b"whole")).unwrap();
        assert!(!stale.exists(), "the stale temporary of out.csv is removed");
        assert!(other.exists(), "another output's temporary is left to its own writer");
    }

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_umask_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, |w| w.write_all(b"x")).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o666 & !process_umask());
        // A staged file some library wrote 0600 is committed with the umask's mode too.
        let mut set = OutputSet::new();
        let staged = set.stage(dir.path().join("g")).unwrap();
        std::fs::write(&staged, "y").unwrap();
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).unwrap();
        set.commit().unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("g")).unwrap().permissions().mode() & 0o777, 0o666 & !process_umask());
    }
}
