//! The loop's one timer: a timerfd set to the state machines' next
//! deadline. tokio's timer wheel wakes the thread at every wheel level on
//! the way to a deadline (three wakeups per 100 ms advert, measured with
//! strace); a timerfd wakes it once.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

pub struct Deadline {
    fd: AsyncFd<Tfd>,
}

/// tokio's AsyncFd wants AsRawFd; nix's TimerFd offers AsFd.
struct Tfd(TimerFd);

impl AsRawFd for Tfd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Deadline {
    pub fn new() -> io::Result<Deadline> {
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        // SAFETY: the TimerFd owns its fd for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(Tfd(t), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Deadline { fd })
    }

    /// Arms the timer for `at` (now, if it has passed).
    pub fn set(&self, at: Instant) -> io::Result<()> {
        // A zero expiration disarms a timerfd: fire after 1 ns instead.
        let after = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        self.fd
            .get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(after)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(io::Error::from)
    }

    /// Completes when the timer fires.
    pub async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live 8-byte buffer.
            let n =
                unsafe { libc::read(self.fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            if n == 8 {
                // A one-shot timerfd cannot fire again before it is re-armed:
                // forget the readiness now rather than learn it from an
                // EAGAIN read next time.
                guard.clear_ready();
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(e);
        }
    }
}
