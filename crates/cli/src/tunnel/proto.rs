//! The tunnel protocol: the first bytes of a tunnel stream.
//!
//! The opener writes a [`Request`] and, without waiting, the connection's first bytes
//! (optimistic data: on a mixnet a round trip costs about a second). The service answers
//! with a [`Response`] before any bytes of the target; after it, raw bytes flow both ways.
//!
//! ```text
//! request:  version u8 (1) | kind u8 (1 = connect) | port u16 | ext_len u16 | ext (ignored)
//! response: version u8 (1) | status u8            | reason_len u16 | reason (UTF-8)
//! ```
//!
//! Integers are big-endian. `ext` is room for future fields; a service skips what it does
//! not know. Statuses: 0 accepted, 1 port not mapped, 2 target refused or unreachable,
//! 3 limit reached, 4 malformed request. A refusal is followed by the end of the stream.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol version written by this build.
pub const VERSION: u8 = 1;
const KIND_CONNECT: u8 = 1;
/// Longest extension block or reason accepted (bounds what a peer can make us read).
pub const MAX_FIELD: usize = 1024;

/// What a tunnel stream's opener asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The service's virtual port (what `serve --map PORT=…` maps).
    pub port: u16,
}

/// Why a service refused a tunnel, or that it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Connected to the target: bytes follow.
    Accepted,
    /// No target is mapped for the port (the map is the access list).
    NotMapped,
    /// The target refused the connection or could not be reached.
    TargetFailed,
    /// A connection limit (per peer or in total) was reached.
    Limit,
    /// The request could not be read.
    Malformed,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Accepted => 0,
            Status::NotMapped => 1,
            Status::TargetFailed => 2,
            Status::Limit => 3,
            Status::Malformed => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Status::Accepted,
            1 => Status::NotMapped,
            2 => Status::TargetFailed,
            3 => Status::Limit,
            4 => Status::Malformed,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Accepted => "accepted",
            Status::NotMapped => "port not mapped",
            Status::TargetFailed => "target refused or unreachable",
            Status::Limit => "connection limit reached",
            Status::Malformed => "malformed tunnel request",
        })
    }
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Accepted or why not.
    pub status: Status,
    /// Details for a refusal (for logs), possibly empty.
    pub reason: String,
}

/// A tunnel header that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The stream failed or ended before the header was complete.
    #[error("the stream ended or failed before the tunnel header was complete: {0}")]
    Io(#[from] std::io::Error),
    /// Version, kind or status unknown, or a field too long.
    #[error("malformed tunnel header: {0}")]
    Malformed(&'static str),
}

impl Request {
    /// The encoded request (6 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, KIND_CONNECT];
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out
    }

    /// Reads a request from the start of a stream.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Request, ProtoError> {
        let mut head = [0u8; 6];
        r.read_exact(&mut head).await?;
        if head[0] != VERSION {
            return Err(ProtoError::Malformed("unsupported tunnel version"));
        }
        if head[1] != KIND_CONNECT {
            return Err(ProtoError::Malformed("unknown request kind"));
        }
        let port = u16::from_be_bytes([head[2], head[3]]);
        let ext = usize::from(u16::from_be_bytes([head[4], head[5]]));
        if ext > MAX_FIELD {
            return Err(ProtoError::Malformed("extension block too long"));
        }
        let mut skip = vec![0u8; ext];
        r.read_exact(&mut skip).await?;
        Ok(Request { port })
    }
}

impl Response {
    /// An acceptance.
    pub fn accepted() -> Self {
        Response {
            status: Status::Accepted,
            reason: String::new(),
        }
    }

    /// A refusal with details.
    pub fn refused(status: Status, reason: impl Into<String>) -> Self {
        Response {
            status,
            reason: reason.into(),
        }
    }

    /// The encoded response.
    pub fn encode(&self) -> Vec<u8> {
        let reason = self.reason.as_bytes();
        let reason = &reason[..reason.len().min(MAX_FIELD)];
        let mut out = vec![VERSION, self.status.code()];
        out.extend_from_slice(&(reason.len() as u16).to_be_bytes());
        out.extend_from_slice(reason);
        out
    }

    /// Writes the response.
    pub async fn write<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.encode()).await
    }

    /// Reads a response from the start of a stream.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Response, ProtoError> {
        let mut head = [0u8; 4];
        r.read_exact(&mut head).await?;
        if head[0] != VERSION {
            return Err(ProtoError::Malformed("unsupported tunnel version"));
        }
        let status = Status::from_code(head[1]).ok_or(ProtoError::Malformed("unknown status"))?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len > MAX_FIELD {
            return Err(ProtoError::Malformed("reason too long"));
        }
        let mut reason = vec![0u8; len];
        r.read_exact(&mut reason).await?;
        Ok(Response {
            status,
            reason: String::from_utf8_lossy(&reason).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn headers_round_trip_and_garbage_is_an_error() {
        let req = Request { port: 8080 };
        let bytes = req.encode();
        assert_eq!(bytes.len(), 6);
        assert_eq!(Request::read(&mut &bytes[..]).await.unwrap(), req);
        for status in [
            Status::Accepted,
            Status::NotMapped,
            Status::TargetFailed,
            Status::Limit,
            Status::Malformed,
        ] {
            let r = Response::refused(status, "why");
            assert_eq!(Response::read(&mut &r.encode()[..]).await.unwrap(), r);
        }
        assert!(Request::read(&mut &[2u8, 1, 0, 80, 0, 0][..])
            .await
            .is_err());
        assert!(Request::read(&mut &[1u8, 9, 0, 80, 0, 0][..])
            .await
            .is_err());
        assert!(Request::read(&mut &[1u8, 1, 0, 80, 0xff, 0xff][..])
            .await
            .is_err());
        assert!(Request::read(&mut &[1u8, 1][..]).await.is_err());
        assert!(Response::read(&mut &[1u8, 77, 0, 0][..]).await.is_err());
        // An extension block is skipped.
        let with_ext = [1u8, 1, 0, 22, 0, 3, 9, 9, 9, b'x'];
        let mut r = &with_ext[..];
        assert_eq!(Request::read(&mut r).await.unwrap(), Request { port: 22 });
        assert_eq!(r, b"x");
    }
}
