//! Encryption of the files a set sends to the remote: age, to X25519 recipients or a passphrase.
//!
//! Each file is one age stream (`<file>.age`), encrypted as it is read and decrypted as it is
//! downloaded, 64 KiB at a time, so memory stays flat whatever the size. age authenticates every
//! chunk: a flipped byte fails decryption at that chunk, and a truncated object fails at its end.
//! Which set a file belongs to is not age's business: the authenticated manifest lists the SHA-256 of
//! every plaintext file, and a download is checked against it.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::SecretString;

use crate::config::RemoteConfig;

/// Suffix of an encrypted object.
pub const SUFFIX: &str = ".age";

/// Errors of the encryption settings and of decrypting an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    #[error(
        "backup.remote.encrypt is on but nothing to encrypt to is configured: set backup.remote.recipients, backup.remote.identity_file (from `rollback keygen --age`) or backup.remote.passphrase_env"
    )]
    NoRecipients,
    #[error("backup.remote.recipients: `{value}` is not an age recipient (expected `age1…`)")]
    BadRecipient { value: String },
    #[error("backup.remote.identity_file {}: {reason}", path.display())]
    Identity { path: PathBuf, reason: String },
    #[error("backup.remote.passphrase_env names {var}, which is not set or empty")]
    PassphraseUnset { var: String },
    #[error(
        "cannot decrypt: no age identity is configured (backup.remote.identity_file or backup.remote.passphrase_env)"
    )]
    NoIdentity,
    #[error("{path} exists; pass --force to replace it (files encrypted to it then cannot be decrypted)")]
    Exists { path: String },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// How files are encrypted and decrypted.
pub struct Crypt {
    recipients: Vec<Box<dyn age::Recipient + Send + Sync>>,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    passphrase: Option<SecretString>,
    /// A description for plans and reports, without key material.
    pub description: String,
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypt").field("description", &self.description).finish_non_exhaustive()
    }
}

impl Crypt {
    /// No encryption: files leave the host as they are.
    pub fn plain() -> Self {
        Self {
            recipients: Vec::new(),
            identities: Vec::new(),
            passphrase: None,
            description: "none".into(),
        }
    }

    /// The encryption `cfg` asks for. A passphrase wins over recipients and identities.
    pub fn from_config(cfg: &RemoteConfig) -> Result<Self, CryptError> {
        if !cfg.encrypt {
            return Ok(Self::plain());
        }
        if !cfg.passphrase_env.is_empty() {
            let var = cfg.passphrase_env.clone();
            let value = std::env::var(&var).unwrap_or_default();
            if value.is_empty() {
                return Err(CryptError::PassphraseUnset { var });
            }
            return Ok(Self {
                recipients: Vec::new(),
                identities: Vec::new(),
                passphrase: Some(SecretString::from(value)),
                description: format!("age, passphrase from {var}"),
            });
        }
        let mut recipients: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        for value in &cfg.recipients {
            let recipient = age::x25519::Recipient::from_str(value.trim())
                .map_err(|_| CryptError::BadRecipient { value: value.clone() })?;
            recipients.push(Box::new(recipient));
        }
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        if !cfg.identity_file.as_os_str().is_empty() {
            for identity in read_identities(&cfg.identity_file)? {
                recipients.push(Box::new(identity.to_public()));
                identities.push(Box::new(identity));
            }
        }
        if recipients.is_empty() {
            return Err(CryptError::NoRecipients);
        }
        let description = format!(
            "age, {} recipient{}{}",
            recipients.len(),
            if recipients.len() == 1 { "" } else { "s" },
            if identities.is_empty() { ", no identity (upload only)" } else { "" }
        );
        Ok(Self { recipients, identities, passphrase: None, description })
    }

    /// Whether files are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.passphrase.is_some() || !self.recipients.is_empty()
    }

    /// Wrap `out` so that what is written to it is encrypted; `finish` the writer at the end.
    pub fn encrypt<W: Write + Send + 'static>(
        &self,
        out: W,
    ) -> io::Result<Box<dyn FinishWrite<W> + Send>> {
        let encryptor = if let Some(passphrase) = &self.passphrase {
            age::Encryptor::with_user_passphrase(passphrase.clone())
        } else if self.recipients.is_empty() {
            return Ok(Box::new(PlainWriter(out)));
        } else {
            age::Encryptor::with_recipients(
                self.recipients.iter().map(|r| &**r as &dyn age::Recipient),
            )
            .map_err(io::Error::other)?
        };
        Ok(Box::new(AgeWriter(encryptor.wrap_output(out)?)))
    }

    /// A reader of the plaintext of the age stream `input`.
    pub fn decrypt<R: Read + Send + 'static>(
        &self,
        input: R,
    ) -> Result<Box<dyn Read + Send>, DecryptFailure> {
        let decryptor =
            age::Decryptor::new_buffered(io::BufReader::with_capacity(64 * 1024, input))
                .map_err(|e| DecryptFailure(e.to_string()))?;
        let reader = if let Some(passphrase) = &self.passphrase {
            let identity = age::scrypt::Identity::new(passphrase.clone());
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        } else if self.identities.is_empty() {
            return Err(DecryptFailure(CryptError::NoIdentity.to_string()));
        } else {
            decryptor.decrypt(self.identities.iter().map(|i| &**i as &dyn age::Identity))
        }
        .map_err(|e| DecryptFailure(e.to_string()))?;
        Ok(Box::new(reader))
    }

    /// Whether this host can decrypt.
    pub fn can_decrypt(&self) -> bool {
        self.passphrase.is_some() || !self.identities.is_empty()
    }
}

/// Why an object could not be decrypted (age's own words).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DecryptFailure(pub String);

/// A writer that must be finished to be complete.
pub trait FinishWrite<W>: Write {
    fn finish(self: Box<Self>) -> io::Result<W>;
}

struct PlainWriter<W>(W);

impl<W: Write> Write for PlainWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite<W> for PlainWriter<W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        Ok(self.0)
    }
}

struct AgeWriter<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> Write for AgeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite<W> for AgeWriter<W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        self.0.finish()
    }
}

fn read_identities(path: &Path) -> Result<Vec<age::x25519::Identity>, CryptError> {
    use std::os::unix::fs::PermissionsExt as _;
    let fail = |reason: String| CryptError::Identity { path: path.to_owned(), reason };
    let meta = fs_err::metadata(path).map_err(|e| fail(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!("it is readable by other users (mode {mode:o}); make it 0600")));
    }
    let text = fs_err::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The key itself never goes into the message.
        let identity = age::x25519::Identity::from_str(line).map_err(|_| {
            fail(format!("line {} is not an age identity (`AGE-SECRET-KEY-1…`)", number + 1))
        })?;
        out.push(identity);
    }
    if out.is_empty() {
        return Err(fail("it holds no age identity".into()));
    }
    Ok(out)
}

/// Create an age identity file at `path` (0600, refused when it exists unless `force`); returns the
/// recipient (public key) to put in `backup.remote.recipients` on hosts that only upload.
pub fn generate_identity(path: &Path, force: bool) -> Result<String, CryptError> {
    use age::secrecy::ExposeSecret as _;
    let shown = path.display().to_string();
    if path.exists() && !force {
        return Err(CryptError::Exists { path: shown });
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# rail backup encryption identity, created {}\n# recipient (public key): {recipient}\n# Without this file the encrypted remote backups cannot be read: keep a copy off this host.\n{}\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
        identity.to_string().expose_secret()
    );
    let write = |source| CryptError::Write { path: shown.clone(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent).map_err(write)?;
    }
    let tmp = path.with_extension("rail-tmp");
    let _ = fs_err::remove_file(&tmp);
    {
        let mut file =
            crate::archive::create_private_file(&tmp).map_err(|e| write(io::Error::other(e)))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(write)?;
    }
    fs_err::rename(&tmp, path).map_err(write)?;
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(crypt: &Crypt, data: &[u8]) -> Vec<u8> {
        let mut writer = crypt.encrypt(Vec::new()).unwrap();
        writer.write_all(data).unwrap();
        let encrypted = writer.finish().unwrap();
        assert_ne!(encrypted, data);
        let mut out = Vec::new();
        crypt.decrypt(io::Cursor::new(encrypted)).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn an_identity_file_encrypts_and_decrypts_and_is_refused_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("age.key");
        let recipient = generate_identity(&path, false).unwrap();
        assert!(recipient.starts_with("age1"));
        assert!(matches!(generate_identity(&path, false), Err(CryptError::Exists { .. })));
        let cfg = RemoteConfig { identity_file: path.clone(), ..RemoteConfig::default() };
        let crypt = Crypt::from_config(&cfg).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(roundtrip(&crypt, &data), data);

        // Upload-only: the recipient alone encrypts, and cannot decrypt.
        let upload_only = Crypt::from_config(&RemoteConfig {
            recipients: vec![recipient],
            ..RemoteConfig::default()
        })
        .unwrap();
        let mut writer = upload_only.encrypt(Vec::new()).unwrap();
        writer.write_all(b"x").unwrap();
        let encrypted = writer.finish().unwrap();
        assert!(upload_only.decrypt(io::Cursor::new(encrypted.clone())).is_err());
        let mut out = Vec::new();
        crypt.decrypt(io::Cursor::new(encrypted)).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"x");

        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let err = Crypt::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("readable by other users"), "{err}");
    }

    #[test]
    fn a_flipped_byte_fails_decryption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("age.key");
        generate_identity(&path, false).unwrap();
        let crypt =
            Crypt::from_config(&RemoteConfig { identity_file: path, ..RemoteConfig::default() })
                .unwrap();
        let mut writer = crypt.encrypt(Vec::new()).unwrap();
        writer.write_all(&vec![7u8; 100_000]).unwrap();
        let mut encrypted = writer.finish().unwrap();
        let middle = encrypted.len() / 2;
        encrypted[middle] ^= 1;
        let mut out = Vec::new();
        let result = crypt
            .decrypt(io::Cursor::new(encrypted))
            .map_err(|e| io::Error::other(e.0))
            .and_then(|mut r| r.read_to_end(&mut out));
        assert!(result.is_err());
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let none = RemoteConfig::default();
        assert!(matches!(Crypt::from_config(&none), Err(CryptError::NoRecipients)));
        let bad = RemoteConfig { recipients: vec!["age1nope".into()], ..RemoteConfig::default() };
        assert!(Crypt::from_config(&bad).unwrap_err().to_string().contains("age1nope"));
        let unset = RemoteConfig {
            passphrase_env: "RAIL_TEST_UNSET_PASSPHRASE_VAR".into(),
            ..RemoteConfig::default()
        };
        assert!(Crypt::from_config(&unset)
            .unwrap_err()
            .to_string()
            .contains("RAIL_TEST_UNSET_PASSPHRASE_VAR"));
        let off = RemoteConfig { encrypt: false, ..RemoteConfig::default() };
        assert!(!Crypt::from_config(&off).unwrap().is_encrypted());
    }
}
