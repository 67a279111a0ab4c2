//! What directors say to each other on the sync channel: one request and
//! one answer per TLS connection, each a 4-byte big-endian length and a
//! JSON document. The channel is mutual TLS (see [`crate::identity`]):
//! these messages are never seen, or changed, by anyone else.

use serde::{Deserialize, Serialize};
use tandem_model::api::{HealthdStatus, VrrpdStatus};
use tandem_model::config::Diagnostic;
use tandem_model::sync::{Action, ConfigVersion, SyncState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A configuration file is kilobytes; a status with many real servers
/// hundreds of them. Anything longer is refused before it is read.
pub const MAX_FRAME: usize = 8 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// What version do you have, and how are your daemons?
    Head,
    /// The text of a version.
    Fetch { id: String },
    /// Check that you can take this version; hold it until told.
    Prepare {
        version: ConfigVersion,
        lineage: Vec<String>,
        text: String,
    },
    /// Write and reload the version you prepared.
    Commit { id: String },
    /// Forget the version you prepared: another director refused it.
    Release { id: String },
    /// A version you took could not be kept everywhere: take this one, on
    /// top of it, with the previous text.
    Restore {
        version: ConfigVersion,
        lineage: Vec<String>,
        text: String,
    },
    /// Do this on your daemons.
    Act { action: Action, author: String },
    /// Your recent events (clusterd, vrrpd, healthd), for the timeline.
    Events,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Head(Box<HeadAnswer>),
    Text {
        version: ConfigVersion,
        text: String,
    },
    Prepared,
    Committed,
    Released,
    Restored,
    /// The request was understood and declined; nothing changed.
    Refused {
        message: String,
        #[serde(default)]
        diagnostics: Vec<Diagnostic>,
    },
    Acted {
        ok: bool,
        message: String,
    },
    Events {
        events: Vec<tandem_model::api::Event>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadAnswer {
    pub node: String,
    pub version: ConfigVersion,
    pub lineage: Vec<String>,
    pub state: SyncState,
    #[serde(default)]
    pub vrrpd: Option<VrrpdStatus>,
    #[serde(default)]
    pub healthd: Option<HealthdStatus>,
    /// Whether this director is coordinating a change at the moment it
    /// answers (`None` from a director that does not say): a hold on
    /// its change elsewhere outlives it only while this is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changing: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a frame of {0} bytes is longer than {MAX_FRAME}")]
    TooLong(usize),
    #[error("not a message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLong(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame's body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

pub async fn write<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?).await?;
    w.flush().await?;
    Ok(())
}

pub async fn read<T: for<'de> Deserialize<'de>>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_survives_the_round_trip() {
        let req = Request::Release { id: "abc".into() };
        let bytes = encode(&req).unwrap();
        let got: Request = read(&mut &bytes[..]).await.unwrap();
        assert_eq!(got, req);
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_before_it_is_read() {
        let bytes = (u32::MAX).to_be_bytes();
        let got = read::<Request>(&mut &bytes[..]).await;
        assert!(matches!(got, Err(FrameError::TooLong(_))));
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert!(decode::<Request>(b"{\"request\":\"format_disk\"}").is_err());
        assert!(decode::<Request>(b"\xff\xfe").is_err());
    }
}
