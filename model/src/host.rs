//! What every tandem daemon does around its event loop, written once: its
//! control socket bound before it reports ready (a second daemon with the
//! same `socket_dir` is refused, a stale socket replaced) and removed on
//! the way out; SIGTERM, SIGINT and SIGHUP forwarded into the loop's
//! channel; systemd told when it is ready and when it stops
//! (`Type=notify`); and the control routes' ask-and-wait to the loop.

use std::io;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::control::{bind, error_response};

/// What a signal asks of a daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop (vrrpd hands its VIPs over first).
    Terminate,
    /// SIGHUP: reload the configuration.
    Reload,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("control socket {}: {cause}", path.display())]
    Socket { path: PathBuf, cause: io::Error },
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
}

/// A daemon's control API, served on its socket while the loop runs.
pub struct Host {
    socket: PathBuf,
    stop_api: oneshot::Sender<()>,
    api: JoinHandle<io::Result<()>>,
}

impl Host {
    /// Binds `socket` and serves `router` on it, within
    /// [`Limits::CONTROL`](crate::serve::Limits).
    pub async fn serve(socket: &Path, router: Router) -> Result<Host, HostError> {
        let listener = bind(socket).await.map_err(|cause| HostError::Socket {
            path: socket.to_path_buf(),
            cause,
        })?;
        let (stop_api, stopped) = oneshot::channel::<()>();
        let api = tokio::spawn(async move {
            crate::serve::serve(
                listener,
                router,
                crate::serve::Limits::CONTROL,
                Default::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
        });
        Ok(Host {
            socket: socket.to_path_buf(),
            stop_api,
            api,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Tells systemd the daemon is ready: its socket answers and its loop
    /// is about to run.
    pub fn ready(&self) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }

    /// The loop has ended: stop serving and remove the socket.
    pub async fn stop(self) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = self.stop_api.send(());
        let _ = self.api.await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Forwards SIGTERM and SIGINT (stop) and SIGHUP (reload) into the loop's
/// channel, each wrapped by `wrap`, for as long as the loop listens.
pub fn forward_signals<I: Send + 'static>(
    tx: mpsc::Sender<I>,
    wrap: fn(Signal) -> I,
) -> Result<(), HostError> {
    let listen = |k| signal(k).map_err(HostError::Signals);
    let mut term = listen(SignalKind::terminate())?;
    let mut int = listen(SignalKind::interrupt())?;
    let mut hup = listen(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Terminate,
                _ = hup.recv() => Signal::Reload,
            };
            if tx.send(wrap(sig)).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// The control routes' way to the loop: send a request carrying a reply
/// channel, wait for the answer.
pub struct Loop<I> {
    tx: mpsc::Sender<I>,
    daemon: &'static str,
}

impl<I> Clone for Loop<I> {
    fn clone(&self) -> Self {
        Loop {
            tx: self.tx.clone(),
            daemon: self.daemon,
        }
    }
}

impl<I> Loop<I> {
    pub fn new(tx: mpsc::Sender<I>, daemon: &'static str) -> Self {
        Loop { tx, daemon }
    }

    /// Sends what `make` builds around a reply channel and waits for the
    /// reply; a loop that has ended answers 503.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> I) -> Result<T, Response> {
        let (tx, rx) = oneshot::channel();
        let gone = || {
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} is shutting down", self.daemon),
            )
        };
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}
