//! TCP MD5 (RFC 2385) keys read from a peer's `password_file`.
//!
//! The file holds the key as written, usually with a trailing newline from the
//! editor or `echo`; one trailing `\n` (or `\r\n`) is not part of the key.

use std::path::Path;

use super::{ConfigError, PeerConfig};

/// The longest key the kernel accepts: `TCP_MD5SIG_MAXKEYLEN` in
/// `include/uapi/linux/tcp.h` is 80 bytes (RFC 2385 itself sets no limit).
pub const MAX_KEY_LEN: usize = 80;

impl PeerConfig {
    /// Reads this peer's TCP MD5 key: `Ok(None)` without a `password_file`,
    /// else the file's bytes without one trailing newline. A file that cannot
    /// be read, is empty, or holds more than 80 bytes is an error naming the
    /// file; the agent does not start a peer whose key it cannot read.
    pub fn read_password(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        match &self.password_file {
            None => Ok(None),
            Some(path) => read_key_file(path).map(Some),
        }
    }
}

/// Reads and checks one key file.
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::PasswordRead {
        path: path.to_path_buf(),
        source,
    })?;
    let key = trim_one_newline(&bytes);
    if key.is_empty() {
        return Err(ConfigError::PasswordEmpty {
            path: path.to_path_buf(),
        });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ConfigError::PasswordTooLong {
            path: path.to_path_buf(),
            len: key.len(),
        });
    }
    Ok(key.to_vec())
}

fn trim_one_newline(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn peer_with_key_file(path: &Path) -> PeerConfig {
        let yaml = format!(
            "asn: 64601\npeers:\n  - name: r1\n    address: 192.0.2.1\n    asn: 64512\n    password_file: {}\n",
            path.display()
        );
        Config::from_yaml(&yaml).unwrap().peers.remove(0)
    }

    #[test]
    fn a_key_file_loses_exactly_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (content, key) in [
            (&b"secret\n"[..], &b"secret"[..]),
            (b"secret\r\n", b"secret"),
            (b"secret", b"secret"),
            (b"secret\n\n", b"secret\n"),
            (b" spaced key \n", b" spaced key "),
        ] {
            let path = dir.path().join("key");
            std::fs::write(&path, content).unwrap();
            let peer = peer_with_key_file(&path);
            assert_eq!(peer.read_password().unwrap().unwrap(), key);
        }
    }

    #[test]
    fn a_peer_without_password_file_has_no_key() {
        let peer = Config::from_yaml("asn: 1\npeers: [{name: r1, address: 192.0.2.1, asn: 2}]")
            .unwrap()
            .peers
            .remove(0);
        assert_eq!(peer.read_password().unwrap(), None);
    }

    #[test]
    fn keys_of_80_bytes_pass_and_81_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, [b'k'; 80]).unwrap();
        assert_eq!(read_key_file(&path).unwrap().len(), 80);
        std::fs::write(&path, [b'k'; 81]).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("81 bytes") && err.contains("at most 80"),
            "{err}"
        );
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn missing_and_empty_key_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.key");
        let err = read_key_file(&missing).unwrap_err().to_string();
        assert!(err.contains("absent.key"), "{err}");
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, b"\n").unwrap();
        let err = read_key_file(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.key") && err.contains("empty"), "{err}");
    }
}
