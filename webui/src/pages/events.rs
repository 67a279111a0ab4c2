//! The events page: both daemons' recent events, filtered.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};

use crate::chrome::Chrome;
use crate::eventlog::{EVENT_KINDS, EventFilter, describe, filtered_events, kind_name};
use crate::extract::Viewer;
use crate::format::{ago, utc};
use crate::state::AppState;

pub struct EventRow {
    pub time: String,
    pub ago: String,
    pub daemon: String,
    pub node: String,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
struct EventsPage {
    chrome: Chrome,
    filter: EventFilter,
    kinds: &'static [&'static str],
    rows: Vec<EventRow>,
    down: Vec<String>,
}

pub async fn events(
    State(app): State<AppState>,
    Viewer(caller, _): Viewer,
    Query(f): Query<EventFilter>,
) -> Response {
    let (events, down) = filtered_events(&app, &f).await;
    let now = app.now();
    EventsPage {
        chrome: Chrome::new(&app, &caller, "events"),
        kinds: &EVENT_KINDS,
        rows: events
            .iter()
            .map(|e| EventRow {
                time: utc(e.at),
                ago: ago(now, e.at),
                daemon: e.daemon.clone(),
                node: e.node.clone(),
                kind: kind_name(&e.kind),
                text: describe(&e.kind),
            })
            .collect(),
        down,
        filter: f,
    }
    .into_response()
}
