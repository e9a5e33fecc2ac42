//! Decoder of BIRD's control-socket replies (the birdc line protocol).
//!
//! Owns: splitting the byte stream from BIRD's control socket into lines and
//! lines into replies. Must not touch: sockets, or what a reply means; the
//! client (`control`) and the readers of `show` output (`show`) do that.
//!
//! # The protocol, as BIRD documents it
//!
//! A request is one line of text. A reply is a sequence of lines, each
//! starting with a four-digit code followed by `-` when more lines of the
//! reply follow, or by a space on the reply's last line. A line that
//! continues the previous line's code may replace the whole prefix with a
//! single space. A line starting with `+` is a spontaneous printout (log
//! echo) and belongs to no reply. Code classes (BIRD's `doc/reply_codes`):
//! `0xxx` action completed, `1xxx` table entry, `2xxx` table heading,
//! `8xxx` run-time error, `9xxx` parse-time error.
//!
//! ```text
//! 0001 BIRD 2.0.12 ready.                      welcome: a one-line reply
//! 2002-Name       Proto      Table ...          heading, more follows
//! 1002-device1    Device     ---   ...          table entry
//!  herald4    Static     master4 ...            continuation of 1002
//! 0000                                          last line: the reply ends
//! ```
//!
//! The decoder never panics, whatever the bytes (a fuzz target,
//! `fuzz/fuzz_targets/bird_reply.rs`, and a unit test over random input
//! hold it to that). Text that is not UTF-8 is decoded lossily. A line
//! longer than [`MAX_LINE`] or a reply larger than [`MAX_REPLY`] is an error
//! rather than unbounded memory; after any error the stream is out of step
//! and the connection must be dropped.

use std::fmt;

/// The longest line accepted. BIRD's own lines are at most 512 bytes
/// (`CLI_LINE_SIZE`); the margin covers other versions.
pub const MAX_LINE: usize = 64 * 1024;
/// The largest reply accepted, in bytes of text.
pub const MAX_REPLY: usize = 32 * 1024 * 1024;

/// Reply code classes (BIRD's `doc/reply_codes`).
pub mod code {
    /// `0000 OK`.
    pub const OK: u16 = 0;
    /// `0001` the greeting: `BIRD 2.0.12 ready.`
    pub const WELCOME: u16 = 1;
    /// `0002` Reading configuration.
    pub const READING_CONFIGURATION: u16 = 2;
    /// `0003` Reconfigured.
    pub const RECONFIGURED: u16 = 3;
    /// `0004` Reconfiguration in progress.
    pub const RECONFIGURATION_IN_PROGRESS: u16 = 4;
    /// `0005` Reconfiguration already in progress, queueing.
    pub const RECONFIGURATION_QUEUED: u16 = 5;
    /// `0006` Reconfiguration ignored, shutting down.
    pub const RECONFIGURATION_IGNORED: u16 = 6;
    /// `0017` Reconfiguration already in progress, removing queued config.
    pub const RECONFIGURATION_REPLACED: u16 = 17;
    /// `0020` Configuration OK (`configure check`).
    pub const CONFIGURATION_OK: u16 = 20;
    /// `1002` Protocol list (`show protocols`).
    pub const PROTOCOL_LIST: u16 = 1002;
    /// `1006` Protocol details (`show protocols all`).
    pub const PROTOCOL_DETAILS: u16 = 1006;
    /// `1020` Show BFD sessions.
    pub const BFD_SESSIONS: u16 = 1020;
    /// `8002` Configuration file error.
    pub const CONFIGURATION_FILE_ERROR: u16 = 8002;
    /// The first run-time error code; 8xxx and 9xxx are errors.
    pub const FIRST_ERROR: u16 = 8000;
}

/// One line of a reply: its code (inherited by continuation lines) and its
/// text after the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyLine {
    pub code: u16,
    pub text: String,
}

/// One complete reply: every line, the last one included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// The code of the last line: what the reply as a whole says.
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(code::OK, |line| line.code)
    }

    /// Whether the reply ends in a run-time (8xxx) or parse (9xxx) error.
    pub fn is_error(&self) -> bool {
        self.code() >= code::FIRST_ERROR
    }

    /// The text of the last line (the error message of an error reply).
    pub fn message(&self) -> &str {
        self.lines.last().map_or("", |line| line.text.as_str())
    }

    /// The whole reply as text, one line per line, without codes.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }
}

/// Why the byte stream is not a BIRD reply stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line {line:?} does not start with a four-digit code and '-' or ' '")]
    Prefix { line: String },
    #[error("reply line {line:?} continues a reply that has no code yet")]
    OrphanContinuation { line: String },
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply larger than {MAX_REPLY} bytes")]
    ReplyTooLarge,
}

/// Turns bytes read from the control socket into replies. Feed it with
/// [`ReplyDecoder::push`], take replies with [`ReplyDecoder::next_reply`].
#[derive(Default)]
pub struct ReplyDecoder {
    /// Bytes of a line not yet terminated by `\n`.
    partial: Vec<u8>,
    /// Complete lines not yet consumed.
    pending: std::collections::VecDeque<Vec<u8>>,
    /// Lines of the reply being assembled.
    current: Vec<ReplyLine>,
    current_bytes: usize,
    /// The code a ` ` continuation line inherits.
    last_code: Option<u16>,
    /// Lines starting with `+` skipped so far.
    spontaneous: u64,
}

impl fmt::Debug for ReplyDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyDecoder")
            .field("partial_bytes", &self.partial.len())
            .field("pending_lines", &self.pending.len())
            .field("current_lines", &self.current.len())
            .finish()
    }
}

impl ReplyDecoder {
    pub fn new() -> Self {
        ReplyDecoder::default()
    }

    /// Adds bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ReplyError> {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            self.partial.extend_from_slice(chunk);
            if self.partial.last() == Some(&b'\n') {
                self.partial.pop();
                if self.partial.last() == Some(&b'\r') {
                    self.partial.pop();
                }
                self.pending.push_back(std::mem::take(&mut self.partial));
            } else if self.partial.len() > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
        }
        Ok(())
    }

    /// The next complete reply, or `None` until more bytes arrive.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        while let Some(raw) = self.pending.pop_front() {
            if raw.len() > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            let line = String::from_utf8_lossy(&raw);
            let (code, text, last) = match parse_prefix(&line) {
                Prefix::Spontaneous => {
                    self.spontaneous += 1;
                    continue;
                }
                Prefix::Coded { code, last, text } => (code, text, last),
                Prefix::Continuation { text } => match self.last_code {
                    Some(code) => (code, text, false),
                    None => {
                        return Err(ReplyError::OrphanContinuation {
                            line: truncated(&line),
                        });
                    }
                },
                Prefix::Invalid => {
                    return Err(ReplyError::Prefix {
                        line: truncated(&line),
                    });
                }
            };
            self.current_bytes += text.len() + 1;
            if self.current_bytes > MAX_REPLY {
                return Err(ReplyError::ReplyTooLarge);
            }
            self.current.push(ReplyLine {
                code,
                text: text.to_string(),
            });
            if last {
                self.last_code = None;
                self.current_bytes = 0;
                return Ok(Some(Reply {
                    lines: std::mem::take(&mut self.current),
                }));
            }
            self.last_code = Some(code);
        }
        Ok(None)
    }

    /// How many spontaneous (`+`) lines were skipped.
    pub fn spontaneous_lines(&self) -> u64 {
        self.spontaneous
    }
}

enum Prefix<'a> {
    Coded {
        code: u16,
        last: bool,
        text: &'a str,
    },
    Continuation {
        text: &'a str,
    },
    Spontaneous,
    Invalid,
}

fn parse_prefix(line: &str) -> Prefix<'_> {
    let bytes = line.as_bytes();
    match bytes.first() {
        Some(b'+') => return Prefix::Spontaneous,
        Some(b' ') => return Prefix::Continuation { text: &line[1..] },
        _ => {}
    }
    if bytes.len() < 4 || !bytes[..4].iter().all(u8::is_ascii_digit) {
        return Prefix::Invalid;
    }
    let code = bytes[..4]
        .iter()
        .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
    match bytes.get(4) {
        // BIRD always writes the separator; a bare code is read as a last
        // line with no text.
        None => Prefix::Coded {
            code,
            last: true,
            text: "",
        },
        Some(b' ') => Prefix::Coded {
            code,
            last: true,
            text: &line[5..],
        },
        Some(b'-') => Prefix::Coded {
            code,
            last: false,
            text: &line[5..],
        },
        Some(_) => Prefix::Invalid,
    }
}

fn truncated(line: &str) -> String {
    line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut decoder = ReplyDecoder::new();
        decoder.push(bytes)?;
        let mut out = Vec::new();
        while let Some(reply) = decoder.next_reply()? {
            out.push(reply);
        }
        Ok(out)
    }

    fn line(code: u16, text: &str) -> ReplyLine {
        ReplyLine {
            code,
            text: text.to_string(),
        }
    }

    #[test]
    fn the_greeting_is_a_one_line_reply() {
        let replies = decode_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].code(), code::WELCOME);
        assert_eq!(replies[0].message(), "BIRD 2.0.12 ready.");
        assert!(!replies[0].is_error());
    }

    #[test]
    fn continuation_lines_inherit_the_previous_code() {
        // Captured from BIRD 2.0.12: `show protocols`.
        let bytes = b"2002-Name       Proto      Table      State  Since         Info\n\
1002-device1    Device     ---        up     09:17:40.896  \n \
herald4    Static     master4    up     09:17:40.896  \n\
0000 \n";
        let replies = decode_all(bytes).unwrap();
        assert_eq!(
            replies[0].lines,
            vec![
                line(
                    2002,
                    "Name       Proto      Table      State  Since         Info"
                ),
                line(
                    1002,
                    "device1    Device     ---        up     09:17:40.896  "
                ),
                line(
                    1002,
                    "herald4    Static     master4    up     09:17:40.896  "
                ),
                line(0, ""),
            ]
        );
        assert_eq!(replies[0].code(), code::OK);
    }

    #[test]
    fn a_rejected_configuration_is_an_error_reply_with_the_message() {
        let bytes = b"0002-Reading configuration from /etc/bird/bird.conf\n\
8002 /etc/bird/herald.conf:3:46 syntax error, unexpected CF_SYM_UNDEFINED\n";
        let reply = &decode_all(bytes).unwrap()[0];
        assert!(reply.is_error());
        assert_eq!(reply.code(), code::CONFIGURATION_FILE_ERROR);
        assert!(reply.message().contains("syntax error"), "{reply:?}");
    }

    #[test]
    fn replies_split_at_any_byte_come_out_the_same() {
        let bytes: &[u8] = b"0002-Reading configuration from /a\n0003 Reconfigured\n\
1020-herald_bfd:\n IP address  Interface\n 192.0.2.1  eth1  Up\n0000 \n";
        let whole = decode_all(bytes).unwrap();
        assert_eq!(whole.len(), 2);
        for split in 0..bytes.len() {
            let mut decoder = ReplyDecoder::new();
            let mut out = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                decoder.push(part).unwrap();
                while let Some(reply) = decoder.next_reply().unwrap() {
                    out.push(reply);
                }
            }
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[test]
    fn spontaneous_printouts_belong_to_no_reply() {
        let mut decoder = ReplyDecoder::new();
        decoder
            .push(b"+some log line\n0000 \n+another\n0013 Daemon is up and running\n")
            .unwrap();
        assert_eq!(decoder.next_reply().unwrap().unwrap().code(), 0);
        assert_eq!(decoder.next_reply().unwrap().unwrap().code(), 13);
        assert_eq!(decoder.spontaneous_lines(), 2);
    }

    #[test]
    fn a_line_without_a_code_is_refused() {
        assert!(matches!(
            decode_all(b"hello world\n"),
            Err(ReplyError::Prefix { .. })
        ));
        assert!(matches!(
            decode_all(b"12a4 x\n"),
            Err(ReplyError::Prefix { .. })
        ));
        assert!(matches!(
            decode_all(b"0000x\n"),
            Err(ReplyError::Prefix { .. })
        ));
        assert!(matches!(
            decode_all(b" orphan\n"),
            Err(ReplyError::OrphanContinuation { .. })
        ));
    }

    #[test]
    fn an_endless_line_is_refused_instead_of_buffered() {
        let mut decoder = ReplyDecoder::new();
        let chunk = vec![b'1'; 4096];
        let mut refused = false;
        for _ in 0..(MAX_LINE / 4096 + 2) {
            if decoder.push(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let reply = &decode_all(b"0020 Configuration OK\r\n").unwrap()[0];
        assert_eq!(reply.code(), code::CONFIGURATION_OK);
        assert_eq!(reply.message(), "Configuration OK");
    }

    #[test]
    fn the_decoder_never_panics_on_random_or_truncated_input() {
        // A fixed-seed xorshift keeps the test reproducible without a
        // dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"0123456789 -+\n\r\xff\xc3abc:";
        let valid: &[u8] = b"0002-Reading configuration from /a\n1002-x\n y\n0000 \n";
        for _ in 0..3000 {
            let len = (next() % 200) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next() % 3 == 0 {
                let cut = (next() % valid.len() as u64) as usize;
                bytes = [&valid[..cut], &bytes[..]].concat();
            }
            let mut decoder = ReplyDecoder::new();
            if decoder.push(&bytes).is_ok() {
                while let Ok(Some(reply)) = decoder.next_reply() {
                    let _ = (reply.code(), reply.is_error(), reply.text());
                }
            }
        }
    }
}
