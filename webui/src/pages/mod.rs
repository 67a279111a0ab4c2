//! The HTML pages: thin handlers that ask the daemons (or the file), turn
//! the answers into view values, and render a template. One module a page;
//! the frame they share is [`crate::chrome`].

mod actions;
mod assets;
mod cluster;
mod config;
mod doctor;
mod events;
mod live;
mod login;
mod overview;
mod virtual_servers;

pub use actions::{confirm_drain, confirm_maintenance, drain, maintenance};
pub use assets::static_file;
pub use cluster::{
    api_cluster, api_maintenance, api_resolve, cluster, maintenance as cluster_maintenance, resolve,
};
pub use config::{backup, config, config_apply, config_preview, config_rollback};
pub use doctor::doctor;
pub use events::events;
pub use live::live;
pub use login::{login, login_form, logout};
pub use overview::overview;
pub use virtual_servers::{PER_PAGE, VsFilter, virtual_servers};
