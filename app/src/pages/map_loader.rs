//! The app comes in two bundles (docs/map.md): the first visit loads the small one (`index.html`,
//! built without the `map` feature), and the UI role serves the full one (`map.html`) for the map's
//! routes (`ui::FULL_APP_ROUTES` on the server). When the small bundle's router reaches a map route
//! (a link followed on the instance page), it asks the server for the page again, which answers
//! with the full bundle; from then on every route is client-side again.
//!
//! A mark in `sessionStorage` stops a loop should the server answer the small bundle once more (a
//! `dist/` built without `map.html`): the second time the page says what is wrong instead.

#[cfg(not(feature = "map"))]
use leptos::prelude::*;

const ATTEMPT: &str = "scopehub.full-app-load";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

/// Called by the full bundle when it starts: the load it was asked for has happened.
#[cfg(feature = "map")]
pub fn full_app_loaded() {
    if let Some(storage) = session_storage() {
        let _ = storage.remove_item(ATTEMPT);
    }
}

/// A map route in the small bundle: loads this URL from the server, which answers the full app.
#[cfg(not(feature = "map"))]
#[component]
pub fn LoadFullApp() -> impl IntoView {
    // The router's location: the browser's may still show the page the link was followed from.
    let route = leptos_router::hooks::use_location();
    let (path, search) = (route.pathname.get_untracked(), route.search.get_untracked());
    let here = if search.is_empty() {
        path
    } else {
        format!("{path}?{search}")
    };
    let storage = session_storage();
    let tried = storage
        .as_ref()
        .and_then(|s| s.get_item(ATTEMPT).ok().flatten())
        .is_some_and(|url| url == here);
    if tried {
        if let Some(s) = &storage {
            let _ = s.remove_item(ATTEMPT);
        }
        return view! {
            <div class="error-notice" role="alert" id="map-unavailable">
                <strong>"The map could not be loaded. "</strong>
                "This server does not have the map's part of the web app (map.html). Reload the page to try again."
            </div>
        }
        .into_any();
    }
    if let Some(s) = &storage {
        let _ = s.set_item(ATTEMPT, &here);
    }
    let _ = window().location().replace(&here);
    view! { <p class="loading" role="status" aria-live="polite">"Loading the map…"</p> }.into_any()
}
