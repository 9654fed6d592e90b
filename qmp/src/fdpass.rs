//! File descriptors over unix sockets (SCM_RIGHTS) on tokio streams: QMP's `getfd`
//! (the fd rides with the command's bytes, QEMU's `qemu_chr_fe_get_msgfd`) and
//! libvirt's RPC (`virSocketSendFD`/`virSocketRecvFD`: one zero byte per fd after the
//! packet). rustix does the `sendmsg`/`recvmsg` and hands received fds out as
//! `OwnedFd`, so none of this needs `unsafe`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The most fds one message may carry (libvirt's `VIR_NET_MESSAGE_NUM_FDS_MAX`); more
/// are cut off by the kernel (MSG_CTRUNC) and closed.
pub const MAX_FDS: usize = 32;

/// Reads what is available into `buf` (0 at end of stream) with the fds that came
/// with those bytes.
pub async fn recv(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || recv_now(stream, buf)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn recv_now(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    Ok((msg.bytes, fds))
}

/// [`send`] on a blocking socket (a helper process's stdout): one message, `bytes`
/// (not empty) with `fds`.
pub fn send_blocking(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other(format!(
            "cannot pass {} file descriptors at once (at most {MAX_FDS})",
            fds.len()
        )));
    }
    let n = sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if n != bytes.len() {
        return Err(std::io::Error::other(
            "short write passing file descriptors",
        ));
    }
    Ok(())
}

/// Writes all of `bytes`, the fds riding with the first chunk (at least one byte must
/// be sent with them; `bytes` must not be empty when `fds` is not).
pub async fn send(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let mut sent = 0;
    let mut fds_sent = fds.is_empty();
    while sent < bytes.len() {
        stream.writable().await?;
        let rest = &bytes[sent..];
        let r = stream.try_io(Interest::WRITABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds_sent && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(std::io::Error::other(format!(
                    "cannot pass {} file descriptors at once (at most {MAX_FDS})",
                    fds.len()
                )));
            }
            Ok(sendmsg(
                stream,
                &[IoSlice::new(rest)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        });
        match r {
            Ok(n) => {
                sent += n;
                fds_sent = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn an_fd_travels_with_its_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut keep, give) = std::os::unix::net::UnixStream::pair().unwrap();
        send(&a, b"{\"execute\":\"getfd\"}", &[give.as_fd()])
            .await
            .unwrap();
        drop(give);
        let mut buf = [0u8; 64];
        let (n, fds) = recv(&b, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"{\"execute\":\"getfd\"}");
        assert_eq!(fds.len(), 1);
        // The received fd is the other end of `keep`'s pair.
        let mut got = std::os::unix::net::UnixStream::from(fds.into_iter().next().unwrap());
        got.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        keep.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"hi");
    }

    #[tokio::test]
    async fn bytes_without_fds_and_end_of_stream() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, b"plain", &[]).await.unwrap();
        drop(a);
        let mut buf = [0u8; 64];
        let (n, fds) = recv(&b, &mut buf).await.unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"plain"[..], 0));
        let (n, _) = recv(&b, &mut buf).await.unwrap();
        assert_eq!(n, 0);
    }
}
