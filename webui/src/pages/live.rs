//! The live feed that tells an open page to fetch itself again.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::{Stream, StreamExt};

use crate::extract::Viewer;
use crate::state::AppState;

/// Server-sent events to browsers: a note whenever a daemon publishes an
/// event, goes away or comes back; the page then fetches itself again.
pub async fn live(
    State(app): State<AppState>,
    _v: Viewer,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let rx = app.live.subscribe();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|n| async move {
        let n = n.ok()?;
        Some(Ok(sse::Event::default().json_data(&n).unwrap_or_default()))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
