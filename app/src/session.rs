//! Who is logged in, shared by every page through context.

use leptos::prelude::*;
use shared::users::{AccountStatus, Me};

use crate::api;

#[derive(Clone, Copy)]
pub struct Session {
    /// `None` while loading or when logged out; see `loaded`.
    pub me: RwSignal<Option<Me>>,
    pub loaded: RwSignal<bool>,
    /// The org the pages last shown belong to (an org's page, an instance's): the header's org
    /// switcher shows it.
    pub current_org: RwSignal<Option<String>>,
    /// Bumped by every local change, so that a slower `/me` answer sent before a login or logout
    /// cannot overwrite what that login or logout set.
    generation: RwSignal<u64>,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.me.with(|m| {
            m.as_ref()
                .is_some_and(|m| m.user.is_admin && m.user.status == AccountStatus::Approved)
        })
    }

    pub fn is_approved(&self) -> bool {
        self.me.with(|m| {
            m.as_ref()
                .is_some_and(|m| m.user.status == AccountStatus::Approved)
        })
    }

    /// Reloads `Me` from the server (after login, joining an org, renaming one…).
    pub fn refresh(self) {
        let generation = self.generation.get_untracked();
        leptos::task::spawn_local(async move {
            let result = api::me().await;
            if self.generation.get_untracked() == generation {
                if let Ok(me) = result {
                    self.me.set(me);
                }
                self.loaded.set(true);
            }
        });
    }

    /// Reloads `Me` and waits for it: for changes (like joining an org) that the next page needs.
    pub async fn reload(self) {
        if let Ok(me) = api::me().await {
            self.generation.update(|g| *g += 1);
            self.me.set(me);
            self.loaded.set(true);
        }
    }

    pub fn set(self, me: Me) {
        self.generation.update(|g| *g += 1);
        self.me.set(Some(me));
        self.loaded.set(true);
    }

    /// After logging out: a full load of the login page, so no state of the old session survives
    /// (and no guarded page reacts to the session ending).
    pub fn leave(self) {
        api::forget_session();
        if let Some(window) = web_sys::window() {
            let _ = window.location().set_href("/login");
        }
    }
}

pub fn provide_session() -> Session {
    let session = Session {
        me: RwSignal::new(None),
        loaded: RwSignal::new(false),
        current_org: RwSignal::new(None),
        generation: RwSignal::new(0),
    };
    provide_context(session);
    session.refresh();
    session
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Where a freshly logged-in user belongs.
pub fn home_of(me: &Me) -> String {
    match me.user.status {
        AccountStatus::Approved => match me.orgs.first() {
            Some(org) => format!("/orgs/{}", org.id),
            None => "/orgs".to_owned(),
        },
        _ => "/waitlist".to_owned(),
    }
}
