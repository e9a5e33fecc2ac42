//! A client of BIRD's control socket: what `birdc` does, spoken from Rust.
//!
//! Owns: one Unix stream connection to BIRD, the greeting, sending one
//! command line and reading its reply (with the decoder in `reply`), with a
//! time limit on every step. Must not touch: what the commands mean; the
//! speaker decides what to ask.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::BirdError;
use super::reply::{Reply, ReplyDecoder, code};

/// How long a connect, the greeting or one reply may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open, greeted connection to BIRD's control socket.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    stream: UnixStream,
    decoder: ReplyDecoder,
    timeout: Duration,
    /// The greeting's text: `BIRD 2.0.12 ready.`
    greeting: String,
}

impl ControlSocket {
    /// Connects to the socket at `path` and reads BIRD's greeting.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<ControlSocket, BirdError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| BirdError::Timeout {
                path: path.to_path_buf(),
                what: "connect".to_string(),
            })?
            .map_err(|source| BirdError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let mut socket = ControlSocket {
            path: path.to_path_buf(),
            stream,
            decoder: ReplyDecoder::new(),
            timeout,
            greeting: String::new(),
        };
        let hello = socket.read_reply("the greeting").await?;
        if hello.code() != code::WELCOME {
            return Err(BirdError::Unexpected {
                path: path.to_path_buf(),
                command: "the greeting".to_string(),
                reply: hello.text(),
            });
        }
        socket.greeting = hello.message().to_string();
        Ok(socket)
    }

    /// BIRD's greeting (`BIRD 2.0.12 ready.`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Sends one command and returns its reply, error replies included
    /// (check [`Reply::is_error`]).
    pub async fn command(&mut self, command: &str) -> Result<Reply, BirdError> {
        if command.contains(['\n', '\r']) {
            return Err(BirdError::Unexpected {
                path: self.path.clone(),
                command: command.escape_debug().to_string(),
                reply: "a command is one line".to_string(),
            });
        }
        let line = format!("{command}\n");
        tokio::time::timeout(self.timeout, self.stream.write_all(line.as_bytes()))
            .await
            .map_err(|_| BirdError::Timeout {
                path: self.path.clone(),
                what: format!("sending {command:?}"),
            })?
            .map_err(|source| BirdError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.read_reply(command).await
    }

    /// Sends `command` and fails unless the reply is a success.
    pub async fn command_ok(&mut self, command: &str) -> Result<Reply, BirdError> {
        let reply = self.command(command).await?;
        if reply.is_error() {
            return Err(BirdError::Refused {
                command: command.to_string(),
                code: reply.code(),
                message: reply.message().to_string(),
            });
        }
        Ok(reply)
    }

    async fn read_reply(&mut self, what: &str) -> Result<Reply, BirdError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(reply) =
                self.decoder
                    .next_reply()
                    .map_err(|source| BirdError::Protocol {
                        path: self.path.clone(),
                        source,
                    })?
            {
                return Ok(reply);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer))
                .await
                .map_err(|_| BirdError::Timeout {
                    path: self.path.clone(),
                    what: format!("the reply to {what:?}"),
                })?
                .map_err(|source| BirdError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if read == 0 {
                return Err(BirdError::Closed {
                    path: self.path.clone(),
                });
            }
            self.decoder
                .push(&buffer[..read])
                .map_err(|source| BirdError::Protocol {
                    path: self.path.clone(),
                    source,
                })?;
        }
    }
}
