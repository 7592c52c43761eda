//! Hostile archives and names are refused without writing outside their place.

use std::io::Write;

use rail_core::backup::{ComponentKind, Manifest, MANIFEST_FILE};

use crate::support::Env;

/// A gzip-compressed tar with one raw entry, so names `tar::Builder` refuses can be written.
fn evil_tar(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(data);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// Replace the static archive of `set` and reseal its manifest, so that only the archive's content
/// can give it away.
fn plant(env: &Env, set: &str, archive: &[u8]) {
    let dir = env.set_dir(set);
    fs_err::write(dir.join("static.tar.gz"), archive).unwrap();
    let mut manifest = Manifest::read(&dir, set, true).unwrap();
    let component =
        manifest.components.iter_mut().find(|c| c.name == ComponentKind::Static).unwrap();
    let digest = rail_core::archive::hash_file(&dir.join("static.tar.gz")).unwrap();
    component.size = digest.size;
    component.sha256 = digest.sha256;
    component.entries = Some(1);
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write(&dir).unwrap();
}

#[test]
fn archives_with_traversal_or_escaping_links_are_refused() {
    use tar::EntryType::{Regular, Symlink};
    let env = Env::new();
    env.backup("b1");
    let cases: [(&str, &[u8], tar::EntryType, &[u8]); 3] = [
        ("dotdot", b"../x", Regular, b""),
        ("absolute", b"/etc/x", Regular, b""),
        ("root-link", b"root", Symlink, b"/"),
    ];
    for (name, path, kind, link) in cases {
        crate::corruption::copy_set(&env, "b1", name);
        plant(&env, name, &evil_tar(path, kind, link, b"pwned"));
        let app_before: Vec<_> = fs_err::read_dir(env.dir.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let static_before = crate::support::tree(&env.static_dir());

        let out = env.rollback(&["verify", name, "--level", "structure"]);
        out.assert_code(3);
        assert!(out.stdout.contains("FAILED  static"), "{name}: {}", out.describe());
        assert!(out.stdout.contains("unsafe entry"), "{name}: {}", out.describe());

        // Even when verification is skipped, extraction refuses, and nothing changes.
        let out = env.rollback(&["rollback", name, "--yes", "--emergency"]);
        out.assert_code(1);
        assert!(out.stderr.contains("unsafe entry"), "{name}: {}", out.describe());
        assert!(!env.dir.join("x").exists() && !env.dir.join("app/x").exists());
        assert!(!std::path::Path::new("/etc/x").exists());
        let app_after: Vec<_> = fs_err::read_dir(env.dir.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(app_after, app_before, "{name}: nothing is left beside the live directories");
        assert_eq!(crate::support::tree(&env.static_dir()), static_before, "{name}");
    }
}

#[test]
fn hostile_backup_names_are_refused() {
    let env = Env::new();
    for name in ["../../etc", "a/b", "", "..", ".partial-x", "x y"] {
        for args in
            [vec!["rollback", name, "--yes"], vec!["verify", name], vec!["backup", "--name", name]]
        {
            let out = env.rollback(&args);
            out.assert_code(2);
            assert!(out.stderr.contains("invalid backup name"), "{args:?}: {}", out.describe());
        }
    }
    assert!(!env.dir.join("etc").exists());
    assert!(
        !env.backups().exists()
            || fs_err::read_dir(env.backups())
                .unwrap()
                .all(|e| e.unwrap().file_name() == "journal")
    );
}
