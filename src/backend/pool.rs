//! The backend as sessions see it: groups of shared links keyed by
//! (database, protocol), created on first use, and dedicated links on demand.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;

use super::conn::{self, BackendError, ConnSettings, Dedicated};
use super::shared::SharedLink;
use crate::protocol::Proto;

/// Shared and dedicated links to one Redis.
pub struct Backend {
    settings: Arc<ConnSettings>,
    links_per_group: usize,
    groups: DashMap<(u32, Proto), Arc<[SharedLink]>>,
}

impl Backend {
    /// A backend with `links_per_group` shared links in each group.
    pub fn new(settings: ConnSettings, links_per_group: usize) -> Self {
        Backend { settings: Arc::new(settings), links_per_group: links_per_group.max(1), groups: DashMap::new() }
    }

    /// The database sessions start in (from the backend URL).
    pub fn default_db(&self) -> u32 {
        self.settings.url.db
    }

    /// The shared link a session uses in group (db, proto). A session keeps
    /// to one link of its group (chosen by its id) so its commands stay in
    /// order.
    pub fn shared(&self, db: u32, proto: Proto, session_id: u64) -> SharedLink {
        let links = match self.groups.get(&(db, proto)) {
            Some(links) => Arc::clone(&links),
            None => Arc::clone(&self.groups.entry((db, proto)).or_insert_with(|| {
                (0..self.links_per_group)
                    .map(|_| SharedLink::spawn(Arc::clone(&self.settings), db, proto))
                    .collect::<Vec<_>>()
                    .into()
            })),
        };
        links[(session_id % links.len() as u64) as usize].clone()
    }

    /// The AUTH command for the backend credentials, if the URL has any
    /// (used to log a dedicated link back in after RESET).
    pub fn auth_command(&self) -> Option<Bytes> {
        let url = &self.settings.url;
        match (&url.username, &url.password) {
            (Some(u), Some(p)) => Some(crate::protocol::encode::command(&["AUTH", u.as_str(), p.as_str()])),
            (None, Some(p)) => Some(crate::protocol::encode::command(&["AUTH", p.as_str()])),
            _ => None,
        }
    }

    /// Open a dedicated link in the given state.
    pub async fn dedicated(&self, db: u32, proto: Proto, extra: &[Bytes]) -> Result<Dedicated, BackendError> {
        conn::dedicated(&self.settings, db, proto, extra).await
    }
}
