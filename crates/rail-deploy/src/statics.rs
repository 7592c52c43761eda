//! Staged static files (`deploy.static_strategy = "staged"`): before the maintenance window,
//! `collectstatic` runs into a copy of the live directory; inside the window the copy is swapped in.
//!
//! Names beside the live directory `<dir>` (same parent, so renames stay on one file system):
//! `<dir>.rail-next-<run id>` is the copy being collected into, `<dir>.rail-old-<run id>` the directory it
//! replaced, kept until the run ends. Every operation here can run again after a crash at any point and
//! finishes the same way; the rollback restores the static files from the run's backup like any other
//! component, so it needs neither name.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use fs_err as fs;
use rail_core::restore::resolve_live;

pub(crate) const NEXT_INFIX: &str = ".rail-next-";
pub(crate) const OLD_INFIX: &str = ".rail-old-";

/// The live static directory and its two siblings for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paths {
    pub live: PathBuf,
    pub next: PathBuf,
    pub old: PathBuf,
}

impl Paths {
    /// `None` when no static directory is configured.
    pub(crate) fn new(static_dir: &Path, run_id: &str) -> Option<Self> {
        if static_dir.as_os_str().is_empty() {
            return None;
        }
        let live = resolve_live(static_dir);
        let name = live.file_name()?.to_string_lossy().into_owned();
        Some(Self {
            next: live.with_file_name(format!("{name}{NEXT_INFIX}{run_id}")),
            old: live.with_file_name(format!("{name}{OLD_INFIX}{run_id}")),
            live,
        })
    }
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(rail_core::store::sync_dir(parent)?)
}

/// Start the copy `next` over from the live directory: files keep their modes and modification times,
/// so `collectstatic` copies only what changed. Returns the number of files copied.
pub(crate) fn prepare(paths: &Paths) -> anyhow::Result<u64> {
    if exists(&paths.next) {
        fs::remove_dir_all(&paths.next)?;
    }
    if !exists(&paths.live) {
        fs::create_dir_all(&paths.next)?;
        return Ok(0);
    }
    copy_tree(&paths.live, &paths.next)
        .with_context(|| format!("copying {} to {}", paths.live.display(), paths.next.display()))
}

/// Copy a directory tree: directories, regular files and symbolic links (as links), with modes and
/// modification times. Anything else (sockets, devices) has no place in a static directory and is
/// refused.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    let meta = fs::symlink_metadata(from)?;
    fs::create_dir(to)?;
    let mut copied = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copied += copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
            let modified = fs::symlink_metadata(&src)?.modified()?;
            fs::File::options()
                .write(true)
                .open(&dst)?
                .set_times(std::fs::FileTimes::new().set_modified(modified))?;
            copied += 1;
        } else {
            anyhow::bail!("{} is neither a file, a directory nor a link", src.display());
        }
    }
    fs::set_permissions(to, std::fs::Permissions::from_mode(meta.permissions().mode()))?;
    Ok(copied)
}

/// Whether `collectstatic`'s summary (`N static files copied to '<dir>'…`) names `dir` as its
/// destination. Settings that ignore the `STATIC_ROOT` of the environment name another one, and
/// storages that are not local name none.
pub(crate) fn collected_into(output: &str, dir: &Path) -> bool {
    let wanted = format!(" to '{}'", dir.display());
    output.lines().any(|line| line.contains(&wanted))
}

/// How [`swap_in`] found and left things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    /// The collected copy replaced the live directory.
    Swapped,
    /// An earlier attempt of this step had already done it.
    AlreadyDone,
    /// There is no collected copy (it was never made, or it is gone): collect in place instead.
    NothingStaged,
}

/// Put the collected copy in place of the live directory: `live → old`, then `next → live`, each
/// rename made durable. Safe to run again after a crash between the two renames.
pub(crate) fn swap_in(paths: &Paths) -> anyhow::Result<Swap> {
    let (live, next, old) = (exists(&paths.live), exists(&paths.next), exists(&paths.old));
    if !next {
        if !live && old {
            // No swap leaves this (`next` only goes by becoming `live`): the live directory was removed
            // by hand. Put the old one back rather than serve none; the caller collects in place.
            fs::rename(&paths.old, &paths.live)?;
            sync_parent(&paths.live)?;
            return Ok(Swap::NothingStaged);
        }
        return Ok(if old { Swap::AlreadyDone } else { Swap::NothingStaged });
    }
    if live {
        if old {
            // Only a run that died after the first rename of an earlier attempt and then had its live
            // directory recreated gets here; the newest old copy is the one to keep.
            fs::remove_dir_all(&paths.old)?;
        }
        fs::rename(&paths.live, &paths.old)?;
    }
    fs::rename(&paths.next, &paths.live)?;
    sync_parent(&paths.live)?;
    tracing::info!(live = %paths.live.display(), "collected static files swapped in");
    Ok(Swap::Swapped)
}

/// Remove every `next` and `old` sibling of the live static directory: this run's and those of runs
/// that died. Called with the run lock held, when the run ends, so no other run owns one.
pub(crate) fn cleanup(static_dir: &Path) {
    let live = resolve_live(static_dir);
    let (Some(parent), Some(name)) = (live.parent(), live.file_name()) else { return };
    let name = name.to_string_lossy();
    let prefixes = [format!("{name}{NEXT_INFIX}"), format!("{name}{OLD_INFIX}")];
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| file_name.starts_with(p.as_str())) {
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed a static staging directory");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not remove a static staging directory");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Every entry under `dir`: its path, what it holds (content and mtime, a link's target) and mode.
    fn tree(dir: &Path) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.push((rel, "dir".into(), meta.mode() & 0o7777));
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                out.push((rel, fs::read_link(&path).unwrap().display().to_string(), 0));
            } else {
                let body = fs::read_to_string(&path).unwrap();
                out.push((rel, format!("{body}@{}", meta.mtime()), meta.mode() & 0o7777));
            }
        }
    }

    fn sample(dir: &Path) -> PathBuf {
        let live = dir.join("static");
        fs::create_dir_all(live.join("css")).unwrap();
        fs::write(live.join("css/site.css"), "body{}").unwrap();
        fs::write(live.join("app.js"), "1").unwrap();
        fs::set_permissions(live.join("app.js"), std::fs::Permissions::from_mode(0o640)).unwrap();
        symlink("css/site.css", live.join("alias.css")).unwrap();
        // An old modification time, which the copy must keep.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(live.join("app.js"))
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();
        live
    }

    #[test]
    fn the_copy_keeps_contents_modes_times_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let live = sample(dir.path());
        let paths = Paths::new(&live, "run1").unwrap();
        assert_eq!(paths.next, dir.path().join("static.rail-next-run1"));
        assert_eq!(prepare(&paths).unwrap(), 2);
        assert_eq!(tree(&paths.next), tree(&live));
        // Preparing again starts over from the live directory.
        fs::write(paths.next.join("stray"), "x").unwrap();
        prepare(&paths).unwrap();
        assert_eq!(tree(&paths.next), tree(&live));
    }

    #[test]
    fn a_missing_live_directory_gives_an_empty_copy() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("static"), "r").unwrap();
        assert_eq!(prepare(&paths).unwrap(), 0);
        assert!(paths.next.is_dir());
    }

    #[test]
    fn the_swap_finishes_from_any_cut_and_runs_twice() {
        let dir = tempfile::tempdir().unwrap();
        let live = sample(dir.path());
        let paths = Paths::new(&live, "r").unwrap();
        prepare(&paths).unwrap();
        fs::write(paths.next.join("new.css"), "new").unwrap();
        let collected = tree(&paths.next);
        let before = tree(&live);

        // Cut after the first rename: live is aside, next not yet in.
        fs::rename(&paths.live, &paths.old).unwrap();
        assert_eq!(swap_in(&paths).unwrap(), Swap::Swapped);
        assert_eq!(tree(&live), collected);
        assert_eq!(tree(&paths.old), before);
        // Again: nothing left to do.
        assert_eq!(swap_in(&paths).unwrap(), Swap::AlreadyDone);
        assert_eq!(tree(&live), collected);

        cleanup(&live);
        assert!(!paths.old.exists() && !paths.next.exists());
        assert_eq!(tree(&live), collected);
        assert_eq!(swap_in(&paths).unwrap(), Swap::NothingStaged);
    }

    #[test]
    fn a_whole_swap_keeps_the_old_directory_until_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let live = sample(dir.path());
        let paths = Paths::new(&live, "r").unwrap();
        prepare(&paths).unwrap();
        fs::write(paths.next.join("new.css"), "new").unwrap();
        let before = tree(&live);
        assert_eq!(swap_in(&paths).unwrap(), Swap::Swapped);
        assert!(live.join("new.css").is_file());
        assert_eq!(tree(&paths.old), before);
        // Another run's leftovers go too; unrelated siblings stay.
        fs::create_dir(dir.path().join("static.rail-next-dead")).unwrap();
        fs::create_dir(dir.path().join("static.rail-pre-20260101")).unwrap();
        cleanup(&live);
        assert!(!dir.path().join("static.rail-next-dead").exists());
        assert!(dir.path().join("static.rail-pre-20260101").exists());
        assert!(!paths.old.exists());
    }

    #[test]
    fn a_linked_static_dir_is_replaced_behind_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = sample(dir.path());
        let link = dir.path().join("public");
        symlink(&real, &link).unwrap();
        let paths = Paths::new(&link, "r").unwrap();
        assert_eq!(paths.live, fs::canonicalize(&real).unwrap());
        prepare(&paths).unwrap();
        fs::write(paths.next.join("new.css"), "new").unwrap();
        swap_in(&paths).unwrap();
        assert!(link.join("new.css").is_file());
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn the_destination_is_read_from_the_summary() {
        let out = "\n129 static files copied to '/srv/static.rail-next-r', 3 unmodified.\n";
        assert!(collected_into(out, Path::new("/srv/static.rail-next-r")));
        assert!(!collected_into(out, Path::new("/srv/static")));
        assert!(!collected_into("12 static files copied.\n", Path::new("/srv/static")));
    }
}
