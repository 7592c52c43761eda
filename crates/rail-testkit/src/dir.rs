//! A temporary directory per test, removed when dropped.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use fs_err as fs;

/// A temporary directory of its own for one test (in the system temp dir, so snapshot filters show it
/// as `[TEMP]`), removed with everything in it when dropped.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// Creates the directory.
    pub fn new() -> TestDir {
        TestDir { dir: tempfile::tempdir().expect("creating a temp dir") }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path/relative`.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `contents` to `relative`, creating parent directories; returns the full path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("creating parent directories in a test dir");
        }
        fs::write(&path, contents).expect("writing a file in a test dir");
        path
    }

    /// Reads `relative` as text.
    pub fn read(&self, relative: impl AsRef<Path>) -> String {
        fs::read_to_string(self.join(relative)).expect("reading a file in a test dir")
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.dir.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.dir.path()
    }
}
