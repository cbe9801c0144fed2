//! Moving bytes between a TCP connection and a stream, with TCP's semantics carried
//! through: a half-close becomes a shutdown and an EOF a `shutdown(Write)`, both ways; a
//! reset or failed stream resets the TCP connection (RST) and a reset TCP connection
//! resets the stream. Buffers are bounded (one 16 KiB buffer per direction), so a slow
//! reader on either side slows the writer on the other.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nym_stream::mixnet::{OwnedReadHalf, OwnedWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf as TcpRead, OwnedWriteHalf as TcpWrite};

use super::proto::{Response, Status};
use super::Counters;

/// Reset code a tunnel sends when its TCP side was reset or failed.
pub const RESET_TCP_ABORTED: u32 = 0x200;

/// How one direction ended.
enum End {
    /// EOF, passed on as a half-close.
    Eof,
    /// The source failed or was reset.
    Failed(io::Error),
}

async fn pump<R, W>(r: &mut R, w: &mut W, count: &std::sync::atomic::AtomicU64) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return End::Eof,
            Ok(n) => n,
            Err(e) => return End::Failed(e),
        };
        if let Err(e) = w.write_all(&buf[..n]).await {
            return End::Failed(e);
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Resets a TCP connection: SO_LINGER 0, so closing sends RST instead of FIN.
pub fn reset_tcp(w: &TcpWrite) {
    // tokio deprecates SO_LINGER because a non-zero linger blocks the thread in close();
    // a zero linger never blocks: the kernel discards the send buffer and sends RST.
    #[allow(deprecated)]
    let _ = w.as_ref().set_linger(Some(Duration::ZERO));
}

/// Relays until both directions ended (or one failed, which aborts both). `up` counts
/// TCP→stream bytes, `down` stream→TCP. With `response_first` (the opener's side), the
/// stream's first bytes are the service's [`Response`]: TCP bytes flow up at once
/// (optimistic data) while it is awaited, and a refusal resets the TCP connection.
pub async fn relay(
    (mut tcp_rd, mut tcp_wr): (TcpRead, TcpWrite),
    (mut s_rd, mut s_wr): (OwnedReadHalf, OwnedWriteHalf),
    counters: &Counters,
    response_first: bool,
) -> io::Result<()> {
    let up = async {
        match pump(&mut tcp_rd, &mut s_wr, &counters.bytes_up).await {
            End::Eof => s_wr.shutdown().await,
            End::Failed(e) => Err(e),
        }
    };
    let down = async {
        if response_first {
            match Response::read(&mut s_rd).await {
                Ok(r) if r.status == Status::Accepted => {}
                Ok(r) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("the service refused: {} ({})", r.status, r.reason),
                    ))
                }
                Err(e) => return Err(io::Error::other(format!("no answer from the service: {e}"))),
            }
        }
        match pump(&mut s_rd, &mut tcp_wr, &counters.bytes_down).await {
            End::Eof => tcp_wr.shutdown().await,
            End::Failed(e) => Err(e),
        }
    };
    // Both directions run until each ended; the first failure ends the other too.
    match tokio::try_join!(up, down) {
        Ok(_) => {
            // Every byte we wrote is acknowledged before the stream is dropped (a drop
            // before that would abort what is still in flight). Bounded: a peer that
            // vanished must not keep the connection's task forever.
            let _ = tokio::time::timeout(Duration::from_secs(60), s_wr.closed()).await;
            Ok(())
        }
        Err(e) => {
            // The stream failed, the service refused, or the TCP side broke: reset both.
            reset_tcp(&tcp_wr);
            s_wr.reset(RESET_TCP_ABORTED);
            Err(e)
        }
    }
}
