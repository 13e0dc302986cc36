//! A lean Redis connection for the counter hot path: RESP2 encoding and
//! parsing for the few replies we need, one socket owned by one task.
//!
//! redis-rs's multiplexed connection hands every pipeline through a channel
//! to a driver task and back; for a batch of decisions that is pure overhead.
//! Here the batching task writes the whole batch, reads the replies and
//! answers the waiting decisions itself. Cluster, Sentinel and TLS keep using
//! redis-rs.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// One reply we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The socket failed.
    #[error("redis connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not RESP.
    #[error("redis protocol: {0}")]
    Protocol(String),
    /// The server answered an error to a command that must succeed.
    #[error("redis: {0}")]
    Server(String),
    /// Connecting took too long.
    #[error("redis connect timed out")]
    ConnectTimeout,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open connection with its buffers.
pub struct Connection {
    stream: Box<dyn Stream>,
    read: Vec<u8>,
    start: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("resp::Connection")
    }
}

/// Appends one command, `name` and its `args`, in RESP array form.
pub fn encode(out: &mut Vec<u8>, name: &str, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice((args.len() + 1).to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in std::iter::once(&name.as_bytes()).chain(args) {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the reply and the bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..line_end].split_first() else {
        return Err(RespError::Protocol("empty reply line".into()));
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || -> Result<i64, RespError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                RespError::Protocol(format!("bad number {:?}", String::from_utf8_lossy(line)))
            })
    };
    let after = line_end + 2;
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Integer(number()?), after))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Reply::Nil, after)));
            }
            let len =
                usize::try_from(len).map_err(|_| RespError::Protocol("bulk length".into()))?;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            Ok(Some((
                Reply::Bulk(buf[after..after + len].to_vec()),
                after + len + 2,
            )))
        }
        b'*' => {
            let count = number()?;
            if count < 0 {
                return Ok(Some((Reply::Nil, after)));
            }
            let mut items = Vec::new();
            let mut used = after;
            for _ in 0..count {
                match parse(&buf[used..])? {
                    Some((item, n)) => {
                        items.push(item);
                        used += n;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), used)))
        }
        other => Err(RespError::Protocol(format!(
            "unknown reply type {:?}",
            other as char
        ))),
    }
}

impl Connection {
    /// Connects and, with credentials, authenticates (`AUTH [user] password`).
    pub async fn connect(
        address: &Address,
        auth: &str,
        timeout: Duration,
    ) -> Result<Self, RespError> {
        let connecting = async {
            let stream: Box<dyn Stream> = match address {
                Address::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
                Address::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            };
            let mut conn = Self {
                stream,
                read: Vec::with_capacity(16 * 1024),
                start: 0,
            };
            if !auth.is_empty() {
                let mut out = Vec::new();
                match auth.split_once(':') {
                    Some((user, pass)) => {
                        encode(&mut out, "AUTH", &[user.as_bytes(), pass.as_bytes()])
                    }
                    None => encode(&mut out, "AUTH", &[auth.as_bytes()]),
                }
                match conn.round_trip(&out, 1).await?.pop() {
                    Some(Reply::Simple(_)) => {}
                    // The server's words, which never contain the password.
                    Some(Reply::Error(e)) => return Err(RespError::Server(e)),
                    other => {
                        return Err(RespError::Protocol(format!(
                            "unexpected AUTH reply {other:?}"
                        )));
                    }
                }
            }
            Ok(conn)
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| RespError::ConnectTimeout)?
    }

    /// Writes `commands` (already encoded) and reads `replies` replies.
    pub async fn round_trip(
        &mut self,
        commands: &[u8],
        replies: usize,
    ) -> Result<Vec<Reply>, RespError> {
        self.stream.write_all(commands).await?;
        let mut out = Vec::with_capacity(replies);
        while out.len() < replies {
            match parse(&self.read[self.start..])? {
                Some((reply, used)) => {
                    self.start += used;
                    out.push(reply);
                }
                None => {
                    // Keep the unparsed tail at the front, then read more.
                    self.read.drain(..self.start);
                    self.start = 0;
                    let have = self.read.len();
                    self.read.resize(have + 16 * 1024, 0);
                    let n = self.stream.read(&mut self.read[have..]).await?;
                    self.read.truncate(have + n);
                    if n == 0 {
                        return Err(RespError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_resp_arrays() {
        let mut out = Vec::new();
        encode(&mut out, "INCRBY", &[b"k", b"1"]);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n1\r\n");
    }

    #[test]
    fn replies_parse_whole_or_ask_for_more() {
        assert_eq!(parse(b":42\r\n").unwrap(), Some((Reply::Integer(42), 5)));
        assert_eq!(
            parse(b"+OK\r\n").unwrap(),
            Some((Reply::Simple("OK".into()), 5))
        );
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Reply::Error("ERR no".into()), 9))
        );
        assert_eq!(
            parse(b"$3\r\nabc\r\n").unwrap(),
            Some((Reply::Bulk(b"abc".to_vec()), 9))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Reply::Nil, 5)));
        assert_eq!(parse(b"$3\r\nab").unwrap(), None);
        assert_eq!(parse(b":4").unwrap(), None);
        let array = parse(b"*2\r\n:1\r\n$-1\r\n").unwrap().unwrap();
        assert_eq!(
            array,
            (Reply::Array(vec![Reply::Integer(1), Reply::Nil]), 13)
        );
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = parse(&bytes);
            }

            #[test]
            fn integers_round_trip(n in any::<i64>()) {
                let text = format!(":{n}\r\n");
                prop_assert_eq!(parse(text.as_bytes()).unwrap(), Some((Reply::Integer(n), text.len())));
            }
        }
    }
}
