//! Gzip- or zstd-compressed tar archives of directory trees: written in one streaming pass that hashes what it
//! writes, read back entry by entry to check their structure, and extracted safely.
//!
//! Memory stays constant whatever the tree holds: files are copied through fixed buffers, and the
//! archive's SHA-256 and size are computed by the writer as the bytes go to disk, so a backup never
//! reads its own output a second time.
//!
//! Extraction treats every archive as hostile, because a backup directory may be writable by more
//! people than the app's directories: absolute paths, `..`, paths through a symbolic link made by an
//! earlier entry, links that point out of the target, and device or FIFO entries are refused, and
//! nothing is written outside the target directory. Our own archives never hold such entries: a
//! symbolic link whose target lies outside the tree is stored as the file it points to.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use fs_err::os::unix::fs::OpenOptionsExt;
use sha2::{Digest, Sha256};

/// Size of the buffers between the file system, the compressor and the archive.
const BUF_SIZE: usize = 256 * 1024;

/// Errors of writing, checking and extracting archives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    #[error("{} holds more {what} than its manifest announced ({found} found so far, {announced} announced): refused before it could fill the disk", archive.display())]
    OverLimit { archive: PathBuf, what: &'static str, announced: u64, found: u64 },
    #[error("extracting into {} would leave less than {min_free} bytes free (an entry of {needed} bytes, {free} free)", path.display())]
    NoSpace { path: PathBuf, needed: u64, free: u64, min_free: u64 },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    #[error("archive {} is damaged", archive.display())]
    Damaged {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive {} holds an unsafe entry `{entry}`: {reason}", archive.display())]
    Unsafe { archive: PathBuf, entry: String, reason: &'static str },
    #[error("archiving {} was cancelled", path.display())]
    Cancelled { path: PathBuf },
}

/// Size and SHA-256 of bytes written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest256 {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// A writer that hashes and counts everything written through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), size: 0 }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The inner writer and the digest of what went through.
    pub fn finish(self) -> (W, Digest256) {
        let digest = Digest256 { size: self.size, sha256: hex::encode(self.hasher.finalize()) };
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), size: 0 }
    }

    /// Read what is left to the end, then return the digest of everything.
    pub fn finish(mut self) -> io::Result<Digest256> {
        let mut buf = vec![0u8; BUF_SIZE];
        while self.read(&mut buf)? > 0 {}
        Ok(Digest256 { size: self.size, sha256: hex::encode(self.hasher.finalize()) })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// SHA-256 and size of a file, read through a fixed buffer.
pub fn hash_file(path: &Path) -> Result<Digest256, ArchiveError> {
    let file = fs_err::File::open(path)
        .map_err(|source| ArchiveError::Read { path: path.to_owned(), source })?;
    HashingReader::new(file)
        .finish()
        .map_err(|source| ArchiveError::Read { path: path.to_owned(), source })
}

/// Replace `path` with `bytes` atomically: written 0600 into `<path>.rail-tmp`, fsynced, renamed over it.
/// A reader sees the old content or the new, never half of it.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".rail-tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs_err::rename(&tmp, path)
}

/// Create `path` for writing, 0600, failing if it exists.
pub fn create_private_file(path: &Path) -> Result<fs_err::File, ArchiveError> {
    fs_err::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
        |source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                ArchiveError::Exists { path: path.to_owned() }
            } else {
                ArchiveError::Write { path: path.to_owned(), source }
            }
        },
    )
}

/// The compression of an archive. Reading needs no telling: [`check_tar`] and [`extract_tar`]
/// recognise either by its magic bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codec {
    /// gzip (zlib-rs), at [`WriteOptions::level`].
    #[default]
    Gzip,
    /// zstd at level 3 on two threads: several times faster than gzip at about the same size.
    Zstd,
}

/// zstd's level: its default, the speed/size balance `zstd -3` has.
const ZSTD_LEVEL: i32 = 3;
/// Compression threads of zstd (besides the one reading the files).
const ZSTD_WORKERS: u32 = 2;
/// Bytes of input per zstd job (zstd's own minimum is 512 KiB; its default at level 3 is 8 MiB).
const ZSTD_JOB_SIZE: u32 = 1024 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream as rail writes every one (archives and the database dump): level 3 on two worker
/// threads, with a checksum per frame so that a check finds a flipped bit as gzip's CRC does.
pub fn zstd_encoder<W: Write>(inner: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
    encoder.multithread(ZSTD_WORKERS)?;
    // Each worker holds a job of input and its output: small jobs keep three concurrent streams (the
    // dump and both archives) within the memory budget, at the same speed on a few cores.
    encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    encoder.include_checksum(true)?;
    Ok(encoder)
}

/// Whether the file `path` starts as a zstd stream does (its first frame's magic number).
pub fn is_zstd_file(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 4];
    let mut file = fs_err::File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled == head.len() && head == ZSTD_MAGIC)
}

/// A gzip or zstd stream being written.
enum Encoder<W: Write> {
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(inner: W, codec: Codec, gzip_level: u32) -> io::Result<Self> {
        Ok(match codec {
            Codec::Gzip => {
                Self::Gzip(GzEncoder::new(inner, flate2::Compression::new(gzip_level.clamp(1, 9))))
            }
            Codec::Zstd => Self::Zstd(zstd_encoder(inner)?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Self::Gzip(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(e) => e.write(buf),
            Self::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(e) => e.flush(),
            Self::Zstd(e) => e.flush(),
        }
    }
}

/// The decompressing reader for whatever `input` starts with: gzip (every member) or zstd (every frame).
/// Anything else is damage.
fn decoder<'a, R: BufRead + 'a>(mut input: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = input.fill_buf()?;
    if head.starts_with(&ZSTD_MAGIC) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(input)?))
    } else if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(MultiGzDecoder::new(input)))
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, "neither a gzip nor a zstd stream"))
    }
}

/// How to write an archive.
pub struct WriteOptions<'a> {
    /// Gzip level, 1 (fastest) to 9 (smallest).
    pub level: u32,
    /// Set by the caller to stop early; the partial archive is left for the caller to remove.
    pub cancel: &'a AtomicBool,
    /// Called with the number of file bytes read since the last call.
    pub progress: &'a (dyn Fn(u64) + Sync),
}

/// What [`write_tar`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Size and SHA-256 of the archive file.
    pub digest: Digest256,
    /// Entries in the archive, the root directory included.
    pub entries: u64,
    /// Bytes of file content archived.
    pub content_bytes: u64,
    /// Things left out, each with the reason (a socket, a link to nowhere).
    pub skipped: Vec<String>,
}

/// Archive the tree under `source` into the new file `dest` (tar, compressed with `codec`), fsynced,
/// mode 0600.
///
/// Entries are sorted by name, so the same tree gives the same archive. Regular files, directories and
/// symbolic links pointing inside the tree are stored with their modes, owners and modification times;
/// a symbolic link pointing outside the tree is stored as the regular file it points to (a restore must
/// never create a link out of its target); sockets, FIFOs, devices and links to directories outside
/// the tree or to nothing are skipped and reported.
pub fn write_tar(
    tree: &Path,
    dest: &Path,
    codec: Codec,
    opts: &WriteOptions<'_>,
) -> Result<ArchiveSummary, ArchiveError> {
    let file = create_private_file(dest)?;
    let writer = HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, file));
    let encoder = Encoder::new(writer, codec, opts.level)
        .map_err(|source| ArchiveError::Write { path: dest.to_owned(), source })?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let mut state = WalkState {
        root: tree,
        dest,
        opts,
        entries: 0,
        content_bytes: 0,
        skipped: Vec::new(),
        links: Links::new(),
    };

    let write_err = |source| ArchiveError::Write { path: dest.to_owned(), source };
    let meta = fs_err::symlink_metadata(tree)
        .map_err(|source| ArchiveError::Read { path: tree.to_owned(), source })?;
    if !meta.is_dir() {
        return Err(ArchiveError::Read {
            path: tree.to_owned(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    append_dir(&mut builder, Path::new("."), &meta).map_err(write_err)?;
    state.entries += 1;
    state.walk(&mut builder, Path::new(""))?;

    let encoder = builder.into_inner().map_err(write_err)?;
    let writer = encoder.finish().map_err(write_err)?;
    let (buffered, digest) = writer.finish();
    let file = buffered.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    Ok(ArchiveSummary {
        digest,
        entries: state.entries,
        content_bytes: state.content_bytes,
        skipped: state.skipped,
    })
}

struct WalkState<'a> {
    root: &'a Path,
    dest: &'a Path,
    opts: &'a WriteOptions<'a>,
    entries: u64,
    content_bytes: u64,
    skipped: Vec<String>,
    /// The links written so far, resolved as the reader will resolve them.
    links: Links,
}

type Builder = tar::Builder<Encoder<HashingWriter<BufWriter<fs_err::File>>>>;

impl WalkState<'_> {
    fn walk(&mut self, builder: &mut Builder, rel_dir: &Path) -> Result<(), ArchiveError> {
        let dir = self.root.join(rel_dir);
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ArchiveError::Read { path, source }
        };
        let mut names = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(read_err(&dir))? {
            names.push(entry.map_err(read_err(&dir))?.file_name());
        }
        names.sort();
        for name in names {
            if self.opts.cancel.load(Ordering::Relaxed) {
                return Err(ArchiveError::Cancelled { path: self.dest.to_owned() });
            }
            let rel = rel_dir.join(&name);
            let path = self.root.join(&rel);
            let meta = fs_err::symlink_metadata(&path).map_err(read_err(&path))?;
            let file_type = meta.file_type();
            if file_type.is_dir() {
                append_dir(builder, &rel, &meta).map_err(|e| self.write_err(e))?;
                self.entries += 1;
                self.walk(builder, &rel)?;
            } else if file_type.is_file() {
                self.append_file(builder, &rel, &path, &meta)?;
            } else if file_type.is_symlink() {
                self.append_symlink(builder, &rel, &path, &meta)?;
            } else {
                tracing::warn!(path = %path.display(), "not archived: not a file, directory or link");
                self.skipped.push(format!("{}: not a file, directory or link", rel.display()));
            }
        }
        Ok(())
    }

    fn write_err(&self, source: io::Error) -> ArchiveError {
        if source.kind() == io::ErrorKind::Interrupted && self.opts.cancel.load(Ordering::Relaxed) {
            ArchiveError::Cancelled { path: self.dest.to_owned() }
        } else {
            ArchiveError::Write { path: self.dest.to_owned(), source }
        }
    }

    fn append_file(
        &mut self,
        builder: &mut Builder,
        rel: &Path,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let file = fs_err::File::open(path)
            .map_err(|source| ArchiveError::Read { path: path.to_owned(), source })?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let mut reader = ExactReader {
            inner: file,
            remaining: meta.len(),
            padding: false,
            cancel: self.opts.cancel,
            progress: self.opts.progress,
        };
        builder.append_data(&mut header, rel, &mut reader).map_err(|e| self.write_err(e))?;
        if reader.padding {
            tracing::warn!(path = %path.display(), "the file shrank while it was archived; its end is zeros");
        }
        self.entries += 1;
        self.content_bytes += meta.len();
        Ok(())
    }

    fn append_symlink(
        &mut self,
        builder: &mut Builder,
        rel: &Path,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let target = fs_err::read_link(path)
            .map_err(|source| ArchiveError::Read { path: path.to_owned(), source })?;
        if resolve_link(&self.links, rel.parent().unwrap_or(Path::new("")), &target).is_some() {
            self.links.insert(rel.to_owned(), target.clone());
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, rel, &target).map_err(|e| self.write_err(e))?;
            self.entries += 1;
            return Ok(());
        }
        // Outside the tree: keep what it points to, as a regular file.
        match fs_err::metadata(path) {
            Ok(followed) if followed.is_file() => self.append_file(builder, rel, path, &followed),
            Ok(_) => {
                tracing::warn!(path = %path.display(), target = %target.display(), "not archived: a link to a directory outside the tree");
                self.skipped
                    .push(format!("{}: link to a directory outside the tree", rel.display()));
                Ok(())
            }
            Err(_) => {
                tracing::warn!(path = %path.display(), target = %target.display(), "not archived: a link to nothing outside the tree");
                self.skipped.push(format!("{}: dangling link outside the tree", rel.display()));
                Ok(())
            }
        }
    }
}

fn append_dir(builder: &mut Builder, rel: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    builder.append_data(&mut header, rel, io::empty())
}

/// Reads exactly `remaining` bytes of a file that may change while it is read: a file that grew is cut at
/// the size in its header, one that shrank is padded with zeros, so the archive stays well-formed.
struct ExactReader<'a> {
    inner: fs_err::File,
    remaining: u64,
    padding: bool,
    cancel: &'a AtomicBool,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = if self.padding {
            0
        } else {
            loop {
                match self.inner.read(&mut buf[..want]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            }
        };
        let n = if n == 0 {
            self.padding = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.remaining -= n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// The symbolic links an archive created so far (path in the tree → target as written), so that a link
/// is resolved the way the file system will resolve it: through the links made before it.
pub type Links = std::collections::HashMap<PathBuf, PathBuf>;

/// How many links a resolution may go through, as the kernel's own limit on link chains.
const MAX_LINK_DEPTH: usize = 40;

/// Resolve the link `target`, found in the directory `rel_dir` of a tree, through the links already
/// in the tree: the path inside the tree it points to, or `None` when it is absolute, climbs out of the
/// tree by any chain (`s -> .` then `x -> s/..`), or loops.
fn resolve_link(links: &Links, rel_dir: &Path, target: &Path) -> Option<PathBuf> {
    let mut start = Vec::new();
    for component in rel_dir.components() {
        match component {
            Component::Normal(name) => start.push(name.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if target.as_os_str().is_empty() {
        return None;
    }
    resolve_from(links, start, target, 0).map(|stack| stack.iter().collect())
}

fn resolve_from(
    links: &Links,
    mut stack: Vec<std::ffi::OsString>,
    target: &Path,
    depth: usize,
) -> Option<Vec<std::ffi::OsString>> {
    if depth > MAX_LINK_DEPTH {
        return None;
    }
    for component in target.components() {
        match component {
            Component::Normal(name) => {
                stack.push(name.to_owned());
                let here: PathBuf = stack.iter().collect();
                if let Some(link) = links.get(&here) {
                    stack.pop();
                    stack = resolve_from(links, stack, link, depth + 1)?;
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                stack.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(stack)
}

/// The relative path of an archive entry made of plain names only, or why it is refused. The root of
/// the archive (`.`, `./`) is the empty path.
fn safe_relative(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.contains(&0) {
        return Err("the path holds a NUL byte");
    }
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute"),
        }
    }
    Ok(out)
}

/// What an entry may be, decided from its header alone (used by both checking and extraction).
enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
    HardLink(PathBuf),
    /// PAX global headers carry no file.
    Ignore,
}

fn classify<R: Read>(
    entry: &tar::Entry<'_, R>,
    rel: &Path,
    links: &mut Links,
) -> Result<Kind, &'static str> {
    use tar::EntryType;
    let kind = entry.header().entry_type();
    // Links other links were checked through must stay as they were.
    if links.contains_key(rel) && kind != EntryType::XGlobalHeader {
        return Err("it would replace a symbolic link made by an earlier entry");
    }
    match kind {
        EntryType::Regular | EntryType::Continuous => Ok(Kind::File),
        EntryType::Directory => Ok(Kind::Dir),
        EntryType::Symlink => {
            let target = entry.link_name_bytes().ok_or("a symbolic link without a target")?;
            let target = PathBuf::from(OsStr::from_bytes(&target));
            if target.is_absolute() {
                return Err("a symbolic link to an absolute path");
            }
            if resolve_link(links, rel.parent().unwrap_or(Path::new("")), &target).is_none() {
                return Err("a symbolic link pointing outside the target (through the links before it, too)");
            }
            links.insert(rel.to_owned(), target.clone());
            Ok(Kind::Symlink(target))
        }
        EntryType::Link => {
            let target = entry.link_name_bytes().ok_or("a hard link without a target")?;
            let target =
                safe_relative(&target).map_err(|_| "a hard link to a path outside the target")?;
            if target.as_os_str().is_empty() {
                return Err("a hard link to the target directory itself");
            }
            Ok(Kind::HardLink(target))
        }
        EntryType::Char | EntryType::Block => Err("a device file"),
        EntryType::Fifo => Err("a FIFO"),
        EntryType::XGlobalHeader => Ok(Kind::Ignore),
        _ => Err("an unsupported entry type"),
    }
}

/// What [`check_tar`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    /// Size and SHA-256 of the archive file, computed during the same read.
    pub digest: Digest256,
    pub entries: u64,
    pub content_bytes: u64,
}

/// Read every entry of the archive `path` (gzip or zstd) to its end, checking gzip CRCs or zstd
/// checksums and that every entry would be extracted safely, and hash the file in the same pass.
pub fn check_tar(path: &Path) -> Result<CheckSummary, ArchiveError> {
    check_tar_within(path, &Limits::default())
}

/// Bounds on what an archive may hold: the entry count and content bytes its manifest announced, and
/// the free space extraction must leave on the target's file system. An archive that goes past any is
/// refused as soon as it does, so a small archive holding gigabytes of zeros costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub entries: Option<u64>,
    pub content_bytes: Option<u64>,
    /// Bytes that must stay free where the archive is extracted.
    pub min_free: u64,
}

impl Limits {
    fn check(&self, archive: &Path, entries: u64, content_bytes: u64) -> Result<(), ArchiveError> {
        let over = |what: &'static str, announced: u64, found: u64| ArchiveError::OverLimit {
            archive: archive.to_owned(),
            what,
            announced,
            found,
        };
        if let Some(max) = self.entries.filter(|max| entries > *max) {
            return Err(over("entries", max, entries));
        }
        if let Some(max) = self.content_bytes.filter(|max| content_bytes > *max) {
            return Err(over("bytes of content", max, content_bytes));
        }
        Ok(())
    }
}

/// [`check_tar`], stopping as soon as the archive goes past `limits`.
pub fn check_tar_within(path: &Path, limits: &Limits) -> Result<CheckSummary, ArchiveError> {
    let file = fs_err::File::open(path)
        .map_err(|source| ArchiveError::Read { path: path.to_owned(), source })?;
    let damaged = |source| ArchiveError::Damaged { archive: path.to_owned(), source };
    let mut hashing = HashingReader::new(file);
    let mut entries = 0;
    let mut content_bytes = 0;
    let mut links = Links::new();
    {
        let decoder = decoder(BufReader::with_capacity(BUF_SIZE, &mut hashing)).map_err(damaged)?;
        let mut archive = tar::Archive::new(decoder);
        let mut buf = vec![0u8; BUF_SIZE];
        for entry in archive.entries().map_err(damaged)? {
            let mut entry = entry.map_err(damaged)?;
            let raw = entry.path_bytes().into_owned();
            let unsafe_entry = |reason| ArchiveError::Unsafe {
                archive: path.to_owned(),
                entry: String::from_utf8_lossy(&raw).into_owned(),
                reason,
            };
            let rel = safe_relative(&raw).map_err(unsafe_entry)?;
            classify(&entry, &rel, &mut links).map_err(unsafe_entry)?;
            entries += 1;
            limits.check(path, entries, content_bytes + entry.header().size().unwrap_or(0))?;
            loop {
                let n = entry.read(&mut buf).map_err(damaged)?;
                if n == 0 {
                    break;
                }
                content_bytes += n as u64;
                limits.check(path, entries, content_bytes)?;
            }
        }
        // The end-of-archive blocks and anything after them must decompress cleanly too: that is where a
        // truncated or appended-to file shows.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(damaged)?;
    }
    let digest =
        hashing.finish().map_err(|source| ArchiveError::Read { path: path.to_owned(), source })?;
    Ok(CheckSummary { digest, entries, content_bytes })
}

/// How to extract an archive.
pub struct ExtractOptions<'a> {
    /// Give entries the owner recorded in the archive (only possible, and only done, when running as root).
    pub preserve_owner: bool,
    pub cancel: &'a AtomicBool,
    /// Called with the number of archive bytes read since the last call.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// What the archive may hold, and the free space to leave.
    pub limits: Limits,
}

/// What [`extract_tar`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractSummary {
    pub entries: u64,
    pub content_bytes: u64,
}

/// Extract the archive `archive` into the new directory `dest` (which must not exist), refusing unsafe
/// entries, restoring modes (without set-user-id and set-group-id bits), modification times and, as
/// root, owners; the file system is synced at the end. On error, `dest` is left for the caller to
/// remove: it may hold part of the archive, and nothing outside it was touched.
pub fn extract_tar(
    archive: &Path,
    dest: &Path,
    opts: &ExtractOptions<'_>,
) -> Result<ExtractSummary, ArchiveError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Write { path, source }
    };
    create_dir_mode(dest, 0o700).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            ArchiveError::Exists { path: dest.to_owned() }
        } else {
            ArchiveError::Write { path: dest.to_owned(), source }
        }
    })?;
    let file = fs_err::File::open(archive)
        .map_err(|source| ArchiveError::Read { path: archive.to_owned(), source })?;
    let damaged = |source| ArchiveError::Damaged { archive: archive.to_owned(), source };
    let counting = ProgressReader { inner: file, progress: opts.progress };
    let decoder = decoder(BufReader::with_capacity(BUF_SIZE, counting)).map_err(damaged)?;
    let mut tar = tar::Archive::new(decoder);
    let chown = opts.preserve_owner && nix::unistd::geteuid().is_root();
    let mut extractor = Extractor {
        dest,
        archive,
        chown,
        dirs: Vec::new(),
        entries: 0,
        content_bytes: 0,
        links: Links::new(),
        limits: opts.limits,
    };
    let mut buf = vec![0u8; BUF_SIZE];

    for entry in tar.entries().map_err(damaged)? {
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(ArchiveError::Cancelled { path: dest.to_owned() });
        }
        let mut entry = entry.map_err(damaged)?;
        extractor.entry(&mut entry, &mut buf)?;
    }
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(damaged)?;

    // Directory modes and times last, deepest first: files written into a directory change its time, and
    // a read-only directory would refuse them.
    let mut dirs = std::mem::take(&mut extractor.dirs);
    dirs.sort_by_key(|(rel, _, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, mode, mtime) in dirs {
        let path = dest.join(&rel);
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(write_err(&path))?;
        set_mtime(&path, mtime, false).map_err(write_err(&path))?;
    }
    let dir = fs_err::File::open(dest).map_err(write_err(dest))?;
    nix::unistd::syncfs(&dir)
        .map_err(|e| ArchiveError::Write { path: dest.to_owned(), source: e.into() })?;
    Ok(ExtractSummary { entries: extractor.entries, content_bytes: extractor.content_bytes })
}

struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

struct Extractor<'a> {
    dest: &'a Path,
    archive: &'a Path,
    chown: bool,
    /// Directories to give their mode and time once everything is in place.
    dirs: Vec<(PathBuf, u32, SystemTime)>,
    entries: u64,
    content_bytes: u64,
    links: Links,
    limits: Limits,
}

impl Extractor<'_> {
    /// Refuse an entry of `size` bytes that would take the archive past its limits or the file
    /// system below its floor of free space.
    fn room_for(&self, size: u64) -> Result<(), ArchiveError> {
        self.limits.check(self.archive, self.entries + 1, self.content_bytes + size)?;
        if size > 0 {
            let stat = nix::sys::statvfs::statvfs(self.dest).map_err(|e| ArchiveError::Write {
                path: self.dest.to_owned(),
                source: e.into(),
            })?;
            let free = stat.blocks_available() * stat.fragment_size();
            if free < size.saturating_add(self.limits.min_free) {
                return Err(ArchiveError::NoSpace {
                    path: self.dest.to_owned(),
                    needed: size,
                    free,
                    min_free: self.limits.min_free,
                });
            }
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        buf: &mut [u8],
    ) -> Result<(), ArchiveError> {
        let raw = entry.path_bytes().into_owned();
        let unsafe_entry = |reason| ArchiveError::Unsafe {
            archive: self.archive.to_owned(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason,
        };
        let rel = safe_relative(&raw).map_err(unsafe_entry)?;
        let kind = classify(entry, &rel, &mut self.links).map_err(unsafe_entry)?;
        self.room_for(entry.header().size().unwrap_or(0))?;
        let header = entry.header();
        let mode = header.mode().map_err(|source| self.damaged(source))? & 0o1777;
        let mtime = SystemTime::UNIX_EPOCH
            + Duration::from_secs(header.mtime().map_err(|source| self.damaged(source))?);
        let owner = (header.uid().ok(), header.gid().ok());

        if rel.as_os_str().is_empty() {
            // The root: only its mode and time are taken, from a directory entry.
            if !matches!(kind, Kind::Dir | Kind::Ignore) {
                return Err(unsafe_entry("the archive root is not a directory"));
            }
            if matches!(kind, Kind::Dir) {
                self.dirs.push((rel, mode, mtime));
                self.chown(self.dest, owner, false)?;
            }
            self.entries += 1;
            return Ok(());
        }
        self.make_parents(&rel).map_err(unsafe_entry)?;
        let path = self.dest.join(&rel);
        let existing = fs_err::symlink_metadata(&path).ok();
        if let Some(existing) = &existing {
            // A later entry for the same path replaces a file or link, never a directory.
            if existing.is_dir() {
                if !matches!(kind, Kind::Dir | Kind::Ignore) {
                    return Err(unsafe_entry("it would replace a directory"));
                }
            } else if !matches!(kind, Kind::Ignore) {
                fs_err::remove_file(&path).map_err(|source| write_error(&path, source))?;
            }
        }
        match kind {
            Kind::Ignore => return Ok(()),
            Kind::Dir => {
                if existing.is_none() {
                    create_dir_mode(&path, 0o700).map_err(|source| write_error(&path, source))?;
                }
                self.dirs.push((rel, mode, mtime));
                self.chown(&path, owner, false)?;
            }
            Kind::File => {
                let file = fs_err::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|source| write_error(&path, source))?;
                let mut out = BufWriter::with_capacity(BUF_SIZE, file);
                loop {
                    let n = entry.read(buf).map_err(|source| self.damaged(source))?;
                    if n == 0 {
                        break;
                    }
                    // The header's size is not to be trusted either: count what really comes.
                    self.limits.check(
                        self.archive,
                        self.entries + 1,
                        self.content_bytes + n as u64,
                    )?;
                    out.write_all(&buf[..n]).map_err(|source| write_error(&path, source))?;
                    self.content_bytes += n as u64;
                }
                let file = out.into_inner().map_err(|e| write_error(&path, e.into_error()))?;
                self.chown(&path, owner, false)?;
                // After chown, which clears the mode's special bits.
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|source| write_error(&path, source))?;
                file.file().set_modified(mtime).map_err(|source| write_error(&path, source))?;
            }
            Kind::Symlink(target) => {
                fs_err::os::unix::fs::symlink(&target, &path)
                    .map_err(|source| write_error(&path, source))?;
                self.chown(&path, owner, true)?;
                set_mtime(&path, mtime, true).map_err(|source| write_error(&path, source))?;
            }
            Kind::HardLink(target) => {
                self.check_parents(&target).map_err(unsafe_entry)?;
                let target_path = self.dest.join(&target);
                match fs_err::symlink_metadata(&target_path) {
                    Ok(meta) if meta.is_file() => {}
                    _ => {
                        return Err(unsafe_entry(
                            "a hard link to something that is not a file extracted before it",
                        ))
                    }
                }
                fs_err::hard_link(&target_path, &path)
                    .map_err(|source| write_error(&path, source))?;
            }
        }
        self.entries += 1;
        Ok(())
    }

    /// Create the missing parents of `rel` (0755 until an entry says otherwise), refusing to go through
    /// a symbolic link or a file.
    fn make_parents(&mut self, rel: &Path) -> Result<(), &'static str> {
        let mut path = self.dest.to_path_buf();
        let Some(parent) = rel.parent() else { return Ok(()) };
        for component in parent.components() {
            path.push(component);
            match fs_err::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err("its path goes through a symbolic link")
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err("its path goes through a file"),
                Err(_) => {
                    create_dir_mode(&path, 0o755)
                        .map_err(|_| "its parent directory cannot be created")?;
                }
            }
        }
        Ok(())
    }

    /// Refuse a path whose existing parents include a symbolic link.
    fn check_parents(&self, rel: &Path) -> Result<(), &'static str> {
        let mut path = self.dest.to_path_buf();
        let Some(parent) = rel.parent() else { return Ok(()) };
        for component in parent.components() {
            path.push(component);
            match fs_err::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                _ => return Err("its link target goes through something that is not a directory"),
            }
        }
        Ok(())
    }

    fn chown(
        &self,
        path: &Path,
        (uid, gid): (Option<u64>, Option<u64>),
        link: bool,
    ) -> Result<(), ArchiveError> {
        if !self.chown {
            return Ok(());
        }
        let uid = uid.and_then(|u| u32::try_from(u).ok());
        let gid = gid.and_then(|g| u32::try_from(g).ok());
        let result = if link {
            std::os::unix::fs::lchown(path, uid, gid)
        } else {
            std::os::unix::fs::chown(path, uid, gid)
        };
        result.map_err(|source| write_error(path, source))
    }

    fn damaged(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Damaged { archive: self.archive.to_owned(), source }
    }
}

fn write_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Write { path: path.to_owned(), source }
}

/// Create one directory with `mode` (before the umask), so it is never more open than that, even briefly.
pub fn create_dir_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // fs-err has no DirBuilder; the callers name the path in their errors.
    std::fs::DirBuilder::new().mode(mode).create(path)
}

/// Set the modification time (and access time, to the same) of `path`, of the link itself when `link`.
fn set_mtime(path: &Path, mtime: SystemTime, link: bool) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let since = mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let spec = TimeSpec::from_duration(since);
    let flags = if link { UtimensatFlags::NoFollowSymlink } else { UtimensatFlags::FollowSymlink };
    utimensat(nix::fcntl::AT_FDCWD, path, &spec, &spec, flags).map_err(io::Error::from)
}

/// Total size of the regular files under `dir` (links not followed); 0 when it does not exist.
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) if meta.is_file() => total += meta.size(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests;
