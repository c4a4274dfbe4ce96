//! Who is logged in, shared by every page through context.

use leptos::prelude::*;
use shared::users::{AccountStatus, Me};

use crate::api;

#[derive(Clone, Copy)]
pub struct Session {
    /// `None` while loading or when logged out; see `loaded`.
    pub me: RwSignal<Option<Me>>,
    pub loaded: RwSignal<bool>,
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
        leptos::task::spawn_local(async move {
            if let Ok(me) = api::me().await {
                self.me.set(me);
            }
            self.loaded.set(true);
        });
    }

    pub fn set(self, me: Me) {
        self.me.set(Some(me));
        self.loaded.set(true);
    }

    pub fn clear(self) {
        api::forget_session();
        self.me.set(None);
    }
}

pub fn provide_session() -> Session {
    let session = Session {
        me: RwSignal::new(None),
        loaded: RwSignal::new(false),
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
