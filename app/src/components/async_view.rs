use leptos::prelude::*;
use shared::ApiError;

/// Loading indicator shown while a fetch is in flight.
#[component]
pub fn Loading(#[prop(into)] what: String) -> impl IntoView {
    view! { <p class="loading" role="status" aria-live="polite">{format!("Loading {what}…")}</p> }
}

/// An API error as the user sees it: the server's message, and its code for support.
#[component]
pub fn ErrorNotice(error: ApiError) -> impl IntoView {
    view! {
        <div class="error-notice" role="alert">
            <strong>"Something went wrong. "</strong>
            <span class="error-message">{error.message.clone()}</span>
            <span class="error-code">{format!(" ({})", error.code)}</span>
        </div>
    }
}
