//! The static and media parts of a restore: extract beside the live directory, then swap by rename.
//!
//! Names beside a live directory `<dir>` (same parent, so renames stay on one file system):
//! `<dir>.rail-extract-<stamp>` while extracting, `<dir>.rail-restore-<stamp>` once complete,
//! `<dir>.rail-pre-<stamp>` for the replaced directory, `<dir>.rail-failed-<stamp>` for a restored one an
//! undo puts aside. Each name says what its content is, so [`repair`] can finish any cut sequence.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::{DirOutcome, Leftover, LeftoverKind, RestoreError};
use crate::archive::{self, ExtractOptions};
use crate::backup::{BackupSet, ComponentKind, Progress, SchemaSnapshot};

pub const DIR_EXTRACT_INFIX: &str = ".rail-extract-";
pub const DIR_RESTORE_INFIX: &str = ".rail-restore-";
pub const DIR_PRE_INFIX: &str = ".rail-pre-";
pub const DIR_FAILED_INFIX: &str = ".rail-failed-";
/// Schema files larger than this are not read into memory.
const MAX_SCHEMA: u64 = 64 * 1024 * 1024;

/// An archive extracted beside its live directory.
#[derive(Debug, Clone, Serialize)]
pub(super) struct StagedDir {
    pub component: ComponentKind,
    pub live: PathBuf,
    pub staged: PathBuf,
}

fn sibling(live: &Path, infix: &str, stamp: &str) -> PathBuf {
    let name = live.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    live.with_file_name(format!("{name}{infix}{stamp}"))
}

/// A sibling name not taken yet (`_2`, `_3`… when it is).
fn free_sibling(live: &Path, infix: &str, stamp: &str) -> PathBuf {
    let mut path = sibling(live, infix, stamp);
    let mut n = 2;
    while fs_err::symlink_metadata(&path).is_ok() {
        path = sibling(live, infix, &format!("{stamp}_{n}"));
        n += 1;
    }
    path
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io { path: path.to_owned(), source }
}

/// The live directory a configured path stands for: a symbolic link is followed, so the directory it
/// points to is replaced and the link stays.
pub fn resolve_live(configured: &Path) -> PathBuf {
    match fs_err::symlink_metadata(configured) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs_err::canonicalize(configured).unwrap_or_else(|_| configured.to_owned())
        }
        _ => configured.to_owned(),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// fsync a directory, so the renames in it survive a crash.
fn sync(dir: &Path) -> Result<(), RestoreError> {
    fs_err::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Extract `archive` beside `live` and mark it complete.
pub(super) fn stage(
    component: ComponentKind,
    archive: &Path,
    live: &Path,
    size: u64,
    limits: crate::archive::Limits,
    stamp: &str,
    progress: &dyn Progress,
) -> Result<StagedDir, RestoreError> {
    let live = resolve_live(live);
    let parent = parent_of(&live);
    fs_err::create_dir_all(parent).map_err(io_err(parent))?;
    let extract = sibling(&live, DIR_EXTRACT_INFIX, stamp);
    if fs_err::symlink_metadata(&extract).is_ok() {
        fs_err::remove_dir_all(&extract).map_err(io_err(&extract))?;
    }
    let task = component.as_str();
    progress.begin(task, Some(size));
    let cancel = AtomicBool::new(false);
    let advance = |n| progress.advance(task, n);
    let opts = ExtractOptions { preserve_owner: true, cancel: &cancel, progress: &advance, limits };
    let summary = match archive::extract_tar(archive, &extract, &opts) {
        Ok(summary) => summary,
        Err(source) => {
            if fs_err::symlink_metadata(&extract).is_ok() {
                let _ = fs_err::remove_dir_all(&extract);
            }
            return Err(RestoreError::Extract { component, source });
        }
    };
    let staged = free_sibling(&live, DIR_RESTORE_INFIX, stamp);
    fs_err::rename(&extract, &staged).map_err(io_err(&extract))?;
    sync(parent)?;
    progress.end(task, &format!("{} entries extracted", summary.entries));
    Ok(StagedDir { component, live, staged })
}

/// Remove a staged directory that will not be switched in.
pub(super) fn discard(dir: &StagedDir) {
    if let Err(error) = fs_err::remove_dir_all(&dir.staged) {
        tracing::warn!(%error, "cannot remove a staged directory; `rollback prune` removes it");
    }
}

/// Rename the live directory aside and the staged one in.
pub(super) fn switch(staged: &StagedDir, stamp: &str) -> Result<DirOutcome, RestoreError> {
    let live = &staged.live;
    let parent = parent_of(live);
    if fs_err::symlink_metadata(live).is_err() {
        fs_err::rename(&staged.staged, live).map_err(io_err(&staged.staged))?;
        sync(parent)?;
        return Ok(DirOutcome { component: staged.component, live: live.clone(), kept: None });
    }
    let kept = free_sibling(live, DIR_PRE_INFIX, stamp);
    fs_err::rename(live, &kept).map_err(io_err(live))?;
    if let Err(error) = fs_err::rename(&staged.staged, live) {
        // Put the old one back before saying anything.
        if let Err(back) = fs_err::rename(&kept, live) {
            tracing::error!(error = %back, kept = %kept.display(), live = %live.display(), "cannot put the directory back");
        }
        return Err(RestoreError::Io { path: staged.staged.clone(), source: error });
    }
    sync(parent)?;
    tracing::info!(live = %live.display(), kept = %kept.display(), "directory switched");
    Ok(DirOutcome { component: staged.component, live: live.clone(), kept: Some(kept) })
}

/// Put a kept directory back in place of the restored one, which is removed.
pub(super) fn undo(outcome: &DirOutcome, stamp: &str) -> Result<(), RestoreError> {
    let live = &outcome.live;
    let parent = parent_of(live);
    let failed = free_sibling(live, DIR_FAILED_INFIX, stamp);
    if fs_err::symlink_metadata(live).is_ok() {
        fs_err::rename(live, &failed).map_err(io_err(live))?;
    }
    if let Some(kept) = &outcome.kept {
        fs_err::rename(kept, live).map_err(io_err(kept))?;
    }
    sync(parent)?;
    if fs_err::symlink_metadata(&failed).is_ok() {
        fs_err::remove_dir_all(&failed).map_err(io_err(&failed))?;
    }
    tracing::info!(live = %live.display(), "directory put back");
    Ok(())
}

/// Siblings of `configured` made by restores: `(infix, stamp, path)`, oldest stamp first.
fn siblings(configured: &Path) -> Vec<(&'static str, String, PathBuf)> {
    let live = resolve_live(configured);
    let Some(name) = live.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let Ok(entries) = fs_err::read_dir(parent_of(&live)) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&name) else { continue };
        for infix in [DIR_EXTRACT_INFIX, DIR_RESTORE_INFIX, DIR_PRE_INFIX, DIR_FAILED_INFIX] {
            if let Some(stamp) = rest.strip_prefix(infix) {
                out.push((infix, stamp.to_owned(), entry.path()));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Directories restores left beside `configured`.
pub(super) fn leftovers(configured: &Path) -> Vec<Leftover> {
    siblings(configured)
        .into_iter()
        .map(|(infix, stamp, path)| {
            let name = path.display().to_string();
            if infix == DIR_PRE_INFIX {
                Leftover { kind: LeftoverKind::KeptDirectory, name, stamp: Some(stamp) }
            } else {
                Leftover { kind: LeftoverKind::Unfinished, name, stamp: None }
            }
        })
        .collect()
}

/// See [`super::repair`].
pub(super) fn repair(configured: &Path) -> Result<Vec<String>, RestoreError> {
    let live = resolve_live(configured);
    let parent = parent_of(&live);
    let mut actions = Vec::new();
    let found = siblings(configured);
    let newest =
        |infix: &str| found.iter().rev().find(|(i, _, _)| *i == infix).map(|(_, _, p)| p.clone());
    if fs_err::symlink_metadata(&live).is_err() {
        // An undo cut between its renames has a failed copy aside: it was putting the kept one back.
        // A switch cut between its renames has a complete restored copy waiting.
        let undoing = newest(DIR_FAILED_INFIX).is_some();
        let candidate = if undoing { newest(DIR_PRE_INFIX) } else { newest(DIR_RESTORE_INFIX) };
        if let Some(candidate) = candidate {
            fs_err::rename(&candidate, &live).map_err(io_err(&candidate))?;
            sync(parent)?;
            actions.push(format!(
                "finished a cut {}: renamed {} to {}",
                if undoing { "undo" } else { "switch" },
                candidate.display(),
                live.display()
            ));
        }
    }
    for (infix, _, path) in siblings(configured) {
        if [DIR_EXTRACT_INFIX, DIR_RESTORE_INFIX, DIR_FAILED_INFIX].contains(&infix) {
            fs_err::remove_dir_all(&path).map_err(io_err(&path))?;
            actions
                .push(format!("removed {}, left by a restore that did not finish", path.display()));
        }
    }
    Ok(actions)
}

/// The schema version and SDL a set recorded, if any.
pub(super) fn read_schema(set: &BackupSet) -> io::Result<Option<SchemaSnapshot>> {
    let Some(manifest) = set.manifest() else { return Ok(None) };
    let (Some(version), Some(component)) =
        (&manifest.schema_version, manifest.component(ComponentKind::Schema))
    else {
        return Ok(None);
    };
    let path = set.path.join(&component.file);
    if fs_err::metadata(&path)?.len() > MAX_SCHEMA {
        return Err(io::Error::other("the schema file is larger than 64 MiB"));
    }
    let sdl = fs_err::read_to_string(&path)?;
    Ok(Some(SchemaSnapshot { version: version.clone(), sdl }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::NoProgress;

    #[test]
    fn stage_switch_undo_and_repair() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("static");
        fs_err::create_dir_all(&live).unwrap();
        fs_err::write(live.join("a.css"), "new").unwrap();
        let archive_path = tmp.path().join("static.tar.gz");
        let cancel = AtomicBool::new(false);
        archive::write_tar(
            &live,
            &archive_path,
            archive::Codec::Gzip,
            &archive::WriteOptions { level: 6, cancel: &cancel, progress: &|_| {} },
        )
        .unwrap();
        fs_err::write(live.join("a.css"), "old").unwrap();
        fs_err::write(live.join("extra.css"), "old").unwrap();

        let staged = stage(
            ComponentKind::Static,
            &archive_path,
            &live,
            0,
            crate::archive::Limits::default(),
            "20260101000000",
            &NoProgress,
        )
        .unwrap();
        assert_eq!(fs_err::read_to_string(live.join("a.css")).unwrap(), "old");
        let done = switch(&staged, "20260101000000").unwrap();
        assert_eq!(fs_err::read_to_string(live.join("a.css")).unwrap(), "new");
        assert!(!live.join("extra.css").exists());
        let kept = done.kept.clone().unwrap();
        assert_eq!(kept, tmp.path().join("static.rail-pre-20260101000000"));
        assert_eq!(leftovers(&live)[0].kind, LeftoverKind::KeptDirectory);

        undo(&done, "20260101000000").unwrap();
        assert_eq!(fs_err::read_to_string(live.join("extra.css")).unwrap(), "old");
        assert!(leftovers(&live).is_empty());

        // A switch cut between its two renames: the live directory is missing, the restored one waits.
        let staged = stage(
            ComponentKind::Static,
            &archive_path,
            &live,
            0,
            crate::archive::Limits::default(),
            "20260101000001",
            &NoProgress,
        )
        .unwrap();
        fs_err::rename(&live, tmp.path().join("static.rail-pre-20260101000001")).unwrap();
        let actions = repair(&live).unwrap();
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert!(!staged.staged.exists());
        assert_eq!(fs_err::read_to_string(live.join("a.css")).unwrap(), "new");

        // An extraction cut short is removed, the live directory untouched.
        fs_err::create_dir(tmp.path().join("static.rail-extract-20260101000002")).unwrap();
        let actions = repair(&live).unwrap();
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(fs_err::read_to_string(live.join("a.css")).unwrap(), "new");
    }
}
