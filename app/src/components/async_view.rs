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

/// What a reloading resource last answered, kept on screen while the next answer loads, and its
/// last error (cleared by the next success): for pages that refresh by themselves.
pub fn last_answer<T: Clone + Send + Sync + 'static>(
    resource: LocalResource<Result<T, ApiError>>,
) -> (RwSignal<Option<T>>, RwSignal<Option<ApiError>>) {
    let answer = RwSignal::new(None::<T>);
    let error = RwSignal::new(None::<ApiError>);
    Effect::new(move |_| match resource.get() {
        Some(Ok(value)) => {
            answer.set(Some(value));
            error.set(None);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    (answer, error)
}
