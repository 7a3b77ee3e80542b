//! Length-prefixed frames on the cluster port: a 4-byte big-endian length, then that many
//! bytes of JSON. A length above the limit ends the connection before anything is allocated.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    if payload.len() > max {
        return Err(FrameError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: payload.len(),
        max,
    })?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(payload).await?;
    writer.flush().await?;
    Ok(())
}

pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello", 16).await.unwrap();
        write_frame(&mut wire, b"", 16).await.unwrap();
        let mut reader = wire.as_slice();
        assert_eq!(read_frame(&mut reader, 16).await.unwrap(), b"hello");
        assert_eq!(read_frame(&mut reader, 16).await.unwrap(), b"");
        assert!(matches!(read_frame(&mut reader, 16).await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn oversize_frame_is_refused_before_reading_it() {
        let wire = u32::MAX.to_be_bytes();
        let mut reader = wire.as_slice();
        assert!(matches!(
            read_frame(&mut reader, 1024).await,
            Err(FrameError::TooLarge { len, max: 1024 }) if len == u32::MAX as usize
        ));
        let mut sink = Vec::new();
        assert!(matches!(
            write_frame(&mut sink, &[0; 20], 16).await,
            Err(FrameError::TooLarge { len: 20, max: 16 })
        ));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let mut wire = 10u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"abc");
        let mut reader = wire.as_slice();
        assert!(matches!(read_frame(&mut reader, 64).await, Err(FrameError::Io(_))));
    }
}
