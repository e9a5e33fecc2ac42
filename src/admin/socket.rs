//! The admin Unix socket: created so that only herald's own user (and root)
//! can ever connect, and so that nothing another user put in the file system
//! can redirect it.
//!
//! Owns: creating the socket file (and its directory when missing),
//! replacing a stale one, removing it at shutdown, and the peer-credential
//! check on every accepted connection. Must not touch: routes or what they
//! answer (`admin` does that).
//!
//! Why each step:
//! - The directory, when herald creates it, is mode 0700. An existing one
//!   must be a real directory (not a symbolic link), owned by herald's user
//!   or root, and not writable by other users unless sticky: otherwise
//!   another user could rename herald's socket away and put their own in its
//!   place, and `herald drain` would talk to them.
//! - The socket is bound inside a fresh 0700 directory, set to 0600 there,
//!   then renamed onto the final path: no other user can connect during the
//!   moment between `bind` and `chmod`, whatever the umask, and `rename`
//!   replaces a stale socket without following a link put there.
//! - An existing socket that still answers belongs to a running agent: herald
//!   refuses to start rather than cut it off. A symbolic link or a file that
//!   is not a socket is refused, never followed or deleted.
//! - Every accepted connection's peer credentials (SO_PEERCRED) are checked:
//!   a process of another user is refused even if the file's mode was
//!   loosened by hand.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why the admin socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("admin socket {path}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("admin socket {path}: {context}: {source}")]
    Io {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The socket file herald created: its identity, so shutdown removes only
/// this one and never a file someone else put at the path since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the socket file if it is still the one herald created.
    pub fn remove(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// herald's effective user id.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// May a process of `uid` use the admin socket? Only herald's own user and
/// root (who can do anything on the node anyway).
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0 || uid == effective_uid()
}

/// Creates the admin socket at `path` (see the module documentation for
/// every check) and returns the listener with the file's identity.
pub fn bind(path: &Path) -> Result<(std::os::unix::net::UnixListener, SocketFile), SocketError> {
    let refused = |reason: String| SocketError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let io_error = |context: &'static str| {
        move |source| SocketError::Io {
            path: path.to_path_buf(),
            context,
            source,
        }
    };
    if path.file_name().is_none() {
        return Err(refused("not a file path".to_string()));
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    prepare_directory(&parent).map_err(refused)?;
    check_existing(path).map_err(refused)?;

    // Bind in a private directory, tighten, then move into place.
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let private = parent.join(format!(".herald-admin-{}-{nonce}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io_error("cannot create a private directory beside it"))?;
    let staged = private.join("admin.sock");
    let result = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)
            .map_err(io_error("cannot bind the socket"))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("cannot set its mode to 0600"))?;
        // The check again, just before replacing: a file that appeared
        // meanwhile is not replaced blindly.
        check_existing(path).map_err(refused)?;
        std::fs::rename(&staged, path).map_err(io_error("cannot move it into place"))?;
        let meta = std::fs::symlink_metadata(path).map_err(io_error("cannot read it back"))?;
        Ok((
            listener,
            SocketFile {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
            },
        ))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Creates `dir` (mode 0700) when missing; checks an existing one.
fn prepare_directory(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
        }
        Err(error) => return Err(format!("cannot read {}: {error}", dir.display())),
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "its directory {} is a symbolic link; herald does not follow links here",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let uid = effective_uid();
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "its directory {} belongs to uid {}, not to herald's user ({uid}) or root: \
             that user could replace the socket",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "its directory {} is writable by other users (mode {:04o}) and not sticky: \
             another user could replace the socket",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// What is at `path` now may be replaced: nothing, or a stale socket.
fn check_existing(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(format!("cannot read it: {error}")),
        Ok(meta) => meta,
    };
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link; herald does not follow or replace it".to_string());
    }
    if !meta.file_type().is_socket() {
        return Err("it exists and is not a socket; herald does not replace it".to_string());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(
            "another process answers on it (is a second herald running on this node?)".to_string(),
        ),
        // Nothing listens: a socket left by a herald that died. Replaced.
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(error) => Err(format!(
            "an existing socket that herald cannot probe ({error}); not replacing it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_missing_directory_is_created_0700_and_the_socket_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/herald/admin.sock");
        let (_listener, file) = bind(&path).unwrap();
        assert_eq!(mode(&dir.path().join("run/herald")), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        // Nothing is left behind beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("run/herald"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("admin.sock")]);
        file.remove();
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let (listener, _file) = bind(&path).unwrap();
        let error = bind(&path).unwrap_err().to_string();
        assert!(error.contains("another process answers on it"), "{error}");
        drop(listener);
        // The file stays behind, as after a crash; nothing listens.
        assert!(path.exists());
        let (_listener, _file) = bind(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symbolic_link_at_the_path_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "important").unwrap();
        let path = dir.path().join("admin.sock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let error = bind(&path).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "important");
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_regular_file_at_the_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        std::fs::write(&path, "x").unwrap();
        let error = bind(&path).unwrap_err().to_string();
        assert!(error.contains("is not a socket"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
    }

    #[test]
    fn a_linked_or_world_writable_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let error = bind(&link.join("admin.sock")).unwrap_err().to_string();
        assert!(error.contains("is a symbolic link"), "{error}");

        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = bind(&real.join("admin.sock")).unwrap_err().to_string();
        assert!(
            error.contains("writable by other users (mode 0777)"),
            "{error}"
        );
        // Sticky, like /tmp: others cannot rename herald's file away.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o1777)).unwrap();
        bind(&real.join("admin.sock")).unwrap();
    }

    #[test]
    fn removal_spares_a_file_that_replaced_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let (listener, file) = bind(&path).unwrap();
        drop(listener);
        // A second herald took over the path.
        let (_listener, _second) = bind(&path).unwrap();
        file.remove();
        assert!(path.exists(), "the newer socket was removed");
    }
}
