//! Where a socket's writes wait for their flush (steps 04 to 06).
//!
//! tungstenite formats each frame into a write buffer of its own, and that
//! buffer only ever grows: after one burst of 200 items, every socket kept
//! about 13 KiB it would never need again (5,000 idle sockets went from
//! 3.7 KiB to 17.0 KiB each, for good, in the bench's `capacity`). So the steps ask tungstenite to hand every frame on
//! at once (a write buffer of 0: its buffer then holds one frame at a time),
//! and put an [`Outbox`] under it, between tungstenite and the connection.
//!
//! The outbox gathers what is written until the next flush, and sends it
//! then, in as few `write` calls as the kernel takes: a burst of items
//! leaves as one write instead of one per item, as before. Once it is all
//! out, the outbox lets go of its buffer: an idle socket holds none, and
//! since sockets take turns, the next one that flushes gets the same memory
//! from the allocator.
//!
//! A client that does not read makes the kernel refuse more; the outbox
//! then holds at most [`GATHER`] bytes (and the frame being written) and
//! makes the writer wait, and the step's write deadline decides when the
//! client has had enough time.

use std::io;
use std::pin::Pin;
use std::task::Context;
use std::task::Poll;
use std::task::ready;

use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;

/// How much an outbox gathers before it writes without waiting for a
/// flush: a burst larger than this leaves in writes of about this size.
pub const GATHER: usize = 64 * 1024;

/// A connection whose writes wait for a flush (see the module's text).
/// Reads go straight through.
#[derive(Debug)]
pub struct Outbox<T> {
    io: T,
    /// What was written since the last flush; `written` bytes of it are out.
    waiting: Vec<u8>,
    written: usize,
}

impl<T> Outbox<T> {
    pub fn new(io: T) -> Outbox<T> {
        Outbox {
            io,
            waiting: Vec::new(),
            written: 0,
        }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// How many bytes wait for the next flush.
    pub fn waiting(&self) -> usize {
        self.waiting.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> Outbox<T> {
    /// Writes out everything waiting, then lets go of the buffer.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.waiting.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.waiting[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.waiting = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Outbox<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.waiting() >= GATHER {
            ready!(self.poll_send(cx))?;
        }
        self.waiting.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Outbox<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn writes_wait_for_the_flush_and_leave_together() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut outbox = Outbox::new(near);
        outbox.write_all(b"one ").await.unwrap();
        outbox.write_all(b"two").await.unwrap();
        assert_eq!(outbox.waiting(), 7);
        let mut got = [0; 7];
        // Nothing is out before the flush.
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            far.read_exact(&mut got),
        )
        .await;
        assert!(early.is_err(), "bytes left before the flush");
        outbox.flush().await.unwrap();
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
        assert_eq!(outbox.waiting(), 0);
        assert_eq!(outbox.waiting.capacity(), 0, "the buffer is let go");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_holds_a_bounded_outbox() {
        // The far end takes 1 KiB and reads nothing.
        let (near, _far) = tokio::io::duplex(1024);
        let mut outbox = Outbox::new(near);
        let frame = [b'x'; 1000];
        let mut accepted = 0;
        for _ in 0..1000 {
            let write = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                outbox.write_all(&frame),
            );
            match write.await {
                Ok(result) => result.unwrap(),
                Err(_) => break,
            }
            accepted += frame.len();
        }
        assert!(
            accepted < 1000 * frame.len(),
            "the writer was never held back"
        );
        assert!(outbox.waiting() <= GATHER + frame.len());
    }

    #[tokio::test]
    async fn reads_go_straight_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut outbox = Outbox::new(near);
        far.write_all(b"hello").await.unwrap();
        let mut got = [0; 5];
        outbox.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
