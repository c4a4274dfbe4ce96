//! Pages that need a logged-in (approved, admin) user. The server enforces all of this; these only
//! send the browser somewhere sensible instead of showing a page of errors.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_location;

use crate::components::async_view::Loading;
use crate::session::use_session;

fn login_redirect() -> String {
    let location = use_location();
    let here = format!(
        "{}{}",
        location.pathname.get_untracked(),
        location.search.get_untracked()
    );
    let here: String = here
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/login?next={here}")
}

#[component]
pub fn RequireUser(children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    let target = login_redirect();
    move || {
        if !session.loaded.get() {
            view! { <Loading what="your account" /> }.into_any()
        } else if session.me.with(Option::is_none) {
            view! { <Redirect path=target.clone() /> }.into_any()
        } else {
            children().into_any()
        }
    }
}

#[component]
pub fn RequireApproved(children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    let children = StoredValue::new(children);
    view! {
        <RequireUser>
            {move || if session.is_approved() {
                children.with_value(|c| c()).into_any()
            } else {
                view! { <Redirect path="/waitlist" /> }.into_any()
            }}
        </RequireUser>
    }
}

#[component]
pub fn RequireAdmin(children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    let children = StoredValue::new(children);
    view! {
        <RequireUser>
            {move || if session.is_admin() {
                children.with_value(|c| c()).into_any()
            } else {
                view! { <p class="error-notice" role="alert">"This page is for site admins."</p> }.into_any()
            }}
        </RequireUser>
    }
}
