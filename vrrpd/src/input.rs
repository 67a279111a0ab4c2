//! What the daemon's loop is told: how it was started, and every input
//! that arrives on its one channel (packets, link events, script results,
//! quorum from healthd, control requests, signals).

use std::path::PathBuf;

use tandem_model::api::{ApiError, InstanceStatus, ReloadResult, VrrpdStatus};
use tandem_model::config::ConfigError;
use tandem_model::control::CommandError;
use tokio::sync::oneshot;

use crate::netlink::{LinkEvent, NetlinkError};
use crate::socket::Datagram;
use crate::track::{ScriptResult, TrackValue};

/// How the daemon was started.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    /// Overrides `[node] socket_dir` (tests run several nodes on one host).
    pub socket_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// An `auth_hmac` key file or credential that cannot be used.
    #[error("{0}")]
    Auth(String),
}

/// Requests from the control API.
pub enum Command {
    Status(oneshot::Sender<VrrpdStatus>),
    Reload(oneshot::Sender<Result<ReloadResult, ApiError>>),
    Maintenance {
        instance: String,
        on: bool,
        reply: oneshot::Sender<Result<InstanceStatus, CommandError>>,
    },
}

pub use tandem_model::host::Signal;

/// Everything the loop reacts to.
pub enum Input {
    Packet {
        port: PortKey,
        datagram: Datagram,
    },
    PortError {
        port: PortKey,
        error: std::io::Error,
    },
    Link(LinkEvent),
    Script {
        name: String,
        result: ScriptResult,
    },
    /// Quorum verdicts of tracked virtual servers, from healthd.
    Quorum(crate::healthd::Verdicts),
    File {
        path: PathBuf,
        value: TrackValue,
    },
    Command(Command),
    Signal(Signal),
    /// A reload's parse, done off the loop ([`tandem_model::control::Reloads`]).
    Parsed(Box<Result<tandem_model::config::Config, tandem_model::config::ConfigError>>),
}

impl Input {
    /// What it is, for a log line.
    pub fn what(&self) -> &'static str {
        match self {
            Input::Packet { .. } => "an advert",
            Input::PortError { .. } => "a socket error",
            Input::Link(_) => "a link event",
            Input::Script { .. } => "a track script's result",
            Input::Quorum(_) => "healthd's quorum",
            Input::File { .. } => "a track file",
            Input::Command(Command::Status(_)) => "a status request",
            Input::Command(Command::Reload(_)) => "a reload request",
            Input::Command(Command::Maintenance { .. }) => "a maintenance request",
            Input::Signal(Signal::Reload) => "SIGHUP",
            Input::Signal(Signal::Terminate) => "a stop signal",
            Input::Parsed(_) => "a reload",
        }
    }
}

pub type ReloadReply = oneshot::Sender<Result<ReloadResult, ApiError>>;

/// A VRRP socket is per interface and family.
pub type PortKey = (String, bool);
