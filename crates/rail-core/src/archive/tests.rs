use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::*;

static NO_CANCEL: AtomicBool = AtomicBool::new(false);

fn write_opts() -> WriteOptions<'static> {
    WriteOptions { level: 6, cancel: &NO_CANCEL, progress: &|_| {} }
}

fn extract_opts() -> ExtractOptions<'static> {
    ExtractOptions {
        preserve_owner: true,
        cancel: &NO_CANCEL,
        progress: &|_| {},
        limits: super::Limits::default(),
    }
}

/// Every path under `root` with its type, mode, content (or link target) and modification time.
fn snapshot(root: &Path) -> BTreeMap<String, (String, u32, Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.file_type().is_symlink() {
                ("link", fs_err::read_link(&path).unwrap().into_os_string().into_encoded_bytes())
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else {
                ("file", fs_err::read(&path).unwrap())
            };
            let mtime = if kind == "dir" { 0 } else { meta.mtime() };
            out.insert(rel, (kind.to_owned(), meta.mode() & 0o7777, content, mtime));
        }
    }
    out
}

fn sample_tree(root: &Path, outside: &Path) {
    fs_err::create_dir_all(root.join("css/nested/deeper")).unwrap();
    fs_err::create_dir_all(root.join("empty")).unwrap();
    fs_err::write(root.join("css/site.css"), "body { color: red }\n").unwrap();
    fs_err::write(
        root.join("css/nested/deeper/a.bin"),
        (0..=255u8).cycle().take(300_000).collect::<Vec<_>>(),
    )
    .unwrap();
    fs_err::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs_err::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    fs_err::write(root.join("secret.txt"), "only me").unwrap();
    fs_err::set_permissions(root.join("secret.txt"), std::fs::Permissions::from_mode(0o600))
        .unwrap();
    fs_err::write(root.join("zero"), "").unwrap();
    let long = "l".repeat(120);
    fs_err::create_dir_all(root.join(&long)).unwrap();
    fs_err::write(root.join(&long).join(format!("{long}.txt")), "long name").unwrap();
    fs_err::write(root.join(OsStr::from_bytes(b"caf\xe9.txt")), "latin-1 name").unwrap();
    fs_err::os::unix::fs::symlink("site.css", root.join("css/alias.css")).unwrap();
    fs_err::os::unix::fs::symlink("../run.sh", root.join("css/nested/run-link")).unwrap();
    fs_err::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A link out of the tree (collectstatic --link makes these): archived as the file it points to.
    fs_err::write(outside.join("shared.js"), "console.log(1)").unwrap();
    fs_err::os::unix::fs::symlink(outside.join("shared.js"), root.join("shared.js")).unwrap();
}

#[test]
fn round_trip_keeps_paths_contents_modes_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, outside) = (tmp.path().join("static"), tmp.path().join("outside"));
    fs_err::create_dir_all(&tree).unwrap();
    fs_err::create_dir_all(&outside).unwrap();
    sample_tree(&tree, &outside);
    let archive = tmp.path().join("static.tar.gz");

    let summary = write_tar(&tree, &archive, Codec::Gzip, &write_opts()).unwrap();
    assert_eq!(fs_err::metadata(&archive).unwrap().mode() & 0o777, 0o600);
    assert_eq!(summary.digest, hash_file(&archive).unwrap());
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);

    let checked = check_tar(&archive).unwrap();
    assert_eq!(checked.digest, summary.digest);
    assert_eq!(checked.entries, summary.entries);
    assert_eq!(checked.content_bytes, summary.content_bytes);

    let restored = tmp.path().join("restored");
    let extracted = extract_tar(&archive, &restored, &extract_opts()).unwrap();
    assert_eq!(extracted.entries, summary.entries);

    let mut expected = snapshot(&tree);
    let pointed = fs_err::metadata(outside.join("shared.js")).unwrap();
    expected.insert(
        "shared.js".into(),
        ("file".into(), pointed.mode() & 0o7777, b"console.log(1)".to_vec(), pointed.mtime()),
    );
    let got = snapshot(&restored);
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (path, want) in &expected {
        assert_eq!(&got[path], want, "{path}");
    }
    assert_eq!(
        fs_err::metadata(&restored).unwrap().mode() & 0o7777,
        fs_err::metadata(&tree).unwrap().mode() & 0o7777
    );
}

#[test]
fn the_same_tree_gives_the_same_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, outside) = (tmp.path().join("t"), tmp.path().join("o"));
    fs_err::create_dir_all(&tree).unwrap();
    fs_err::create_dir_all(&outside).unwrap();
    sample_tree(&tree, &outside);
    let a = write_tar(&tree, &tmp.path().join("a.tar.gz"), Codec::Gzip, &write_opts()).unwrap();
    let b = write_tar(&tree, &tmp.path().join("b.tar.gz"), Codec::Gzip, &write_opts()).unwrap();
    assert_eq!(a.digest, b.digest);
    assert!(matches!(
        write_tar(&tree, &tmp.path().join("a.tar.gz"), Codec::Gzip, &write_opts()),
        Err(ArchiveError::Exists { .. })
    ));
}

#[test]
fn cancelling_stops_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    fs_err::write(tmp.path().join("f"), "x").unwrap();
    let cancel = AtomicBool::new(true);
    let opts = WriteOptions { level: 6, cancel: &cancel, progress: &|_| {} };
    let err =
        write_tar(tmp.path(), &tmp.path().join("out.tar.gz"), Codec::Gzip, &opts).unwrap_err();
    assert!(matches!(err, ArchiveError::Cancelled { .. }), "{err}");
}

/// A gzip-compressed tar with raw headers, so that names `tar::Builder` would refuse can be written.
/// Name, type, link target, content.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

fn hostile(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        raw.extend_from_slice(header.as_bytes());
        raw.extend_from_slice(data);
        raw.resize(raw.len().div_ceil(512) * 512, 0);
    }
    raw.resize(raw.len() + 1024, 0);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

#[test]
fn hostile_archives_are_refused_without_writing_outside() {
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<RawEntry<'_>>)> = vec![
        ("dot-dot", vec![(b"../x", Regular, b"", b"pwned")]),
        ("nested dot-dot", vec![(b"a/../../x", Regular, b"", b"pwned")]),
        ("absolute", vec![(b"/etc/x", Regular, b"", b"pwned")]),
        ("link to root", vec![(b"root", Symlink, b"/", b"")]),
        ("link escaping", vec![(b"a/up", Symlink, b"../../x", b"")]),
        // Each link alone stays inside; through the first, the second climbs out.
        ("chained links", vec![(b"s", Symlink, b".", b""), (b"x", Symlink, b"s/..", b"")]),
        (
            "chained links deeper",
            vec![
                (b"d", Directory, b"", b""),
                (b"d/s", Symlink, b"..", b""),
                (b"d/x", Symlink, b"s/../..", b""),
            ],
        ),
        (
            "link replaced",
            vec![
                (b"d", Directory, b"", b""),
                (b"d/e", Directory, b"", b""),
                (b"l", Symlink, b"d/e", b""),
                (b"m", Symlink, b"l/../..", b""),
                (b"l", Symlink, b".", b""),
            ],
        ),
        (
            "file through link",
            vec![
                (b"d", Directory, b"", b""),
                (b"d/l", Symlink, b".", b""),
                (b"d/l/../../x", Regular, b"", b"pwned"),
            ],
        ),
        ("hard link out", vec![(b"h", Link, b"../x", b"")]),
        ("hard link absolute", vec![(b"h", Link, b"/etc/passwd", b"")]),
        ("char device", vec![(b"dev", Char, b"", b"")]),
        ("block device", vec![(b"blk", Block, b"", b"")]),
        ("fifo", vec![(b"pipe", Fifo, b"", b"")]),
    ];
    for (label, entries) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("evil.tar.gz");
        fs_err::write(&archive, hostile(&entries)).unwrap();
        let target = tmp.path().join("work/target");
        fs_err::create_dir_all(target.parent().unwrap()).unwrap();

        let checked = check_tar(&archive);
        assert!(
            matches!(checked, Err(ArchiveError::Unsafe { .. })),
            "{label}: check gave {checked:?}"
        );
        let err = extract_tar(&archive, &target, &extract_opts()).unwrap_err();
        assert!(matches!(err, ArchiveError::Unsafe { .. }), "{label}: {err}");
        assert!(!err.to_string().is_empty());
        let mut outside: Vec<_> =
            fs_err::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        outside.sort();
        assert_eq!(outside, ["evil.tar.gz", "work"], "{label}");
        let work: Vec<_> = fs_err::read_dir(tmp.path().join("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(work, ["target"], "{label}");
    }
}

#[test]
fn a_link_made_by_an_earlier_entry_cannot_be_written_through() {
    use tar::EntryType::{Regular, Symlink};
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("evil.tar.gz");
    // `l` points inside the target, so it is allowed, but writing through it is not.
    fs_err::write(
        &archive,
        hostile(&[(b"l", Symlink, b".", b""), (b"l/x", Regular, b"", b"data")]),
    )
    .unwrap();
    let err = extract_tar(&archive, &tmp.path().join("t"), &extract_opts()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn safe_foreign_archives_extract() {
    use tar::EntryType::{Link, Regular, Symlink};
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("ok.tar.gz");
    fs_err::write(
        &archive,
        hostile(&[
            (b"./a/b/file", Regular, b"", b"hello"),
            (b"a/hard", Link, b"a/b/file", b""),
            (b"a/sym", Symlink, b"b/file", b""),
        ]),
    )
    .unwrap();
    let target = tmp.path().join("t");
    extract_tar(&archive, &target, &extract_opts()).unwrap();
    assert_eq!(fs_err::read_to_string(target.join("a/hard")).unwrap(), "hello");
    assert_eq!(fs_err::read_to_string(target.join("a/sym")).unwrap(), "hello");
}

/// `len` bytes of xorshift noise: incompressible, the same for the same seed.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn damaged_archives_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("t");
    fs_err::create_dir_all(&tree).unwrap();
    // Incompressible content, so that a flipped bit lands in stored data the CRC has to catch.
    fs_err::write(tree.join("noise"), noise(200_000, 0x1234_5678)).unwrap();
    let archive = tmp.path().join("a.tar.gz");
    write_tar(&tree, &archive, Codec::Gzip, &write_opts()).unwrap();
    let bytes = fs_err::read(&archive).unwrap();

    let truncated = tmp.path().join("truncated.tar.gz");
    fs_err::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(check_tar(&truncated), Err(ArchiveError::Damaged { .. })));
    let err = extract_tar(&truncated, &tmp.path().join("x1"), &extract_opts()).unwrap_err();
    assert!(matches!(err, ArchiveError::Damaged { .. }), "{err}");

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    let flipped_path = tmp.path().join("flipped.tar.gz");
    fs_err::write(&flipped_path, &flipped).unwrap();
    assert!(matches!(check_tar(&flipped_path), Err(ArchiveError::Damaged { .. })));

    let mut tail = bytes.clone();
    tail.extend_from_slice(b"trailing garbage");
    let tail_path = tmp.path().join("tail.tar.gz");
    fs_err::write(&tail_path, &tail).unwrap();
    assert!(matches!(check_tar(&tail_path), Err(ArchiveError::Damaged { .. })));
}

#[test]
fn link_resolution_is_bounded_and_goes_through_earlier_links() {
    let none = Links::new();
    assert_eq!(
        resolve_link(&none, Path::new("a/b"), Path::new("../c")),
        Some(PathBuf::from("a/c"))
    );
    assert_eq!(resolve_link(&none, Path::new("a"), Path::new("../c")), Some(PathBuf::from("c")));
    assert_eq!(resolve_link(&none, Path::new("a"), Path::new("../../c")), None);
    assert_eq!(resolve_link(&none, Path::new(""), Path::new("/etc")), None);
    assert_eq!(resolve_link(&none, Path::new(""), Path::new("")), None);
    let mut links = Links::new();
    links.insert(PathBuf::from("s"), PathBuf::from("."));
    links.insert(PathBuf::from("d/up"), PathBuf::from(".."));
    assert_eq!(resolve_link(&links, Path::new(""), Path::new("s/..")), None);
    assert_eq!(resolve_link(&links, Path::new("d"), Path::new("up/x")), Some(PathBuf::from("x")));
    assert_eq!(resolve_link(&links, Path::new("d"), Path::new("up/..")), None);
    links.insert(PathBuf::from("loop"), PathBuf::from("loop"));
    assert_eq!(resolve_link(&links, Path::new(""), Path::new("loop")), None);
    assert_eq!(safe_relative(b"./a/./b"), Ok(PathBuf::from("a/b")));
    assert_eq!(safe_relative(b"./"), Ok(PathBuf::new()));
    assert!(safe_relative(b"a/../b").is_err());
    assert!(safe_relative(b"/a").is_err());
}

#[test]
fn tree_size_counts_files() {
    let tmp = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(tmp.path().join("a")).unwrap();
    fs_err::write(tmp.path().join("a/x"), "12345").unwrap();
    fs_err::write(tmp.path().join("y"), "123").unwrap();
    assert_eq!(tree_size(tmp.path()), 8);
    assert_eq!(tree_size(&tmp.path().join("missing")), 0);
}

#[test]
fn zstd_archives_round_trip_and_are_recognised_by_their_first_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, outside) = (tmp.path().join("media"), tmp.path().join("outside"));
    fs_err::create_dir_all(&tree).unwrap();
    fs_err::create_dir_all(&outside).unwrap();
    sample_tree(&tree, &outside);
    let zst = tmp.path().join("media.tar.zst");
    let gz = tmp.path().join("media.tar.gz");
    let summary = write_tar(&tree, &zst, Codec::Zstd, &write_opts()).unwrap();
    let gz_summary = write_tar(&tree, &gz, Codec::Gzip, &write_opts()).unwrap();
    assert!(fs_err::read(&zst).unwrap().starts_with(&ZSTD_MAGIC));
    assert!(fs_err::read(&gz).unwrap().starts_with(&GZIP_MAGIC));
    assert_eq!(summary.entries, gz_summary.entries);
    assert_eq!(summary.content_bytes, gz_summary.content_bytes);

    let checked = check_tar(&zst).unwrap();
    assert_eq!(checked.digest, summary.digest);
    assert_eq!(checked.entries, summary.entries);
    let from_zst = tmp.path().join("from-zst");
    let from_gz = tmp.path().join("from-gz");
    extract_tar(&zst, &from_zst, &extract_opts()).unwrap();
    extract_tar(&gz, &from_gz, &extract_opts()).unwrap();
    assert_eq!(snapshot(&from_zst), snapshot(&from_gz), "both codecs restore the same tree");

    // Neither gzip nor zstd: damage, named.
    let other = tmp.path().join("other.tar.zst");
    fs_err::write(&other, b"PK\x03\x04 not an archive of ours").unwrap();
    let err = check_tar(&other).unwrap_err();
    assert!(matches!(err, ArchiveError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("other.tar.zst"), "{err}");
}

#[test]
fn damaged_zstd_archives_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("t");
    fs_err::create_dir_all(&tree).unwrap();
    fs_err::write(tree.join("noise"), noise(300_000, 0x9e37_79b9)).unwrap();
    fs_err::write(tree.join("text"), "compressible ".repeat(20_000)).unwrap();
    let archive = tmp.path().join("a.tar.zst");
    write_tar(&tree, &archive, Codec::Zstd, &write_opts()).unwrap();
    let bytes = fs_err::read(&archive).unwrap();

    let damaged = |name: &str, content: &[u8]| {
        let path = tmp.path().join(name);
        fs_err::write(&path, content).unwrap();
        let checked = check_tar(&path);
        assert!(matches!(checked, Err(ArchiveError::Damaged { .. })), "{name}: {checked:?}");
        let err = extract_tar(&path, &tmp.path().join(format!("{name}.out")), &extract_opts())
            .unwrap_err();
        assert!(matches!(err, ArchiveError::Damaged { .. }), "{name}: {err}");
    };
    damaged("truncated.tar.zst", &bytes[..bytes.len() / 2]);
    damaged("short-tail.tar.zst", &bytes[..bytes.len() - 3]);
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    damaged("flipped.tar.zst", &flipped);
    let mut tail = bytes.clone();
    tail.extend_from_slice(b"trailing garbage");
    damaged("tail.tar.zst", &tail);
}

/// A tar.gz of one file of `size` zeros, written as a stream (compressed, a hundredth of its size).
fn zeros_archive(size: u64) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut builder = tar::Builder::new(&mut gz);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_cksum();
        builder.append_data(&mut header, "zeros", io::repeat(0).take(size)).unwrap();
        builder.finish().unwrap();
    }
    gz.finish().unwrap()
}

#[test]
fn extraction_stops_at_what_the_manifest_announced_and_at_the_free_space_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bomb.tar.gz");
    let bomb = zeros_archive(256 * 1024 * 1024);
    assert!(bomb.len() < 4 * 1024 * 1024, "{} bytes", bomb.len());
    fs_err::write(&archive, &bomb).unwrap();
    // The manifest of the set it replaced announced 2 entries and 4 KiB.
    let limits = super::Limits { entries: Some(2), content_bytes: Some(4096), min_free: 0 };
    let err = super::check_tar_within(&archive, &limits).unwrap_err();
    assert!(matches!(err, ArchiveError::OverLimit { .. }), "{err}");
    assert!(err.to_string().contains("4096 announced"), "{err}");
    let target = tmp.path().join("out");
    let opts = ExtractOptions { limits, ..extract_opts() };
    let err = extract_tar(&archive, &target, &opts).unwrap_err();
    assert!(matches!(err, ArchiveError::OverLimit { .. }), "{err}");
    let written = fs_err::metadata(target.join("zeros")).map_or(0, |m| m.len());
    assert_eq!(written, 0, "nothing of the bomb was written");

    // Too many entries.
    let many: Vec<RawEntry<'_>> =
        (0..5).map(|_| (&b"f"[..], tar::EntryType::Regular, &b""[..], &b"x"[..])).collect();
    let path = tmp.path().join("many.tar.gz");
    fs_err::write(&path, hostile(&many)).unwrap();
    let err = super::check_tar_within(&path, &limits).unwrap_err();
    assert!(err.to_string().contains("entries"), "{err}");

    // The free-space floor.
    let small = tmp.path().join("small.tar.gz");
    fs_err::write(&small, zeros_archive(1024 * 1024)).unwrap();
    let opts = ExtractOptions {
        limits: super::Limits { min_free: u64::MAX / 2, ..super::Limits::default() },
        ..extract_opts()
    };
    let err = extract_tar(&small, &tmp.path().join("small"), &opts).unwrap_err();
    assert!(matches!(err, ArchiveError::NoSpace { .. }), "{err}");
}
