//! Form parts: field errors from the API's error body, a general error line, a notice.

use leptos::prelude::*;
use shared::ApiError;

/// The API's message for one field, under that field.
#[component]
pub fn FieldError(error: RwSignal<Option<ApiError>>, #[prop(into)] name: String) -> impl IntoView {
    move || {
        error.with(|e| e.as_ref().and_then(|e| e.field(&name)).map(str::to_owned)).map(|message| {
            view! { <span class="field-error" role="alert">{format!("{} {}", name.replace('_', " "), message)}</span> }
        })
    }
}

/// An error that is not about one field.
#[component]
pub fn FormError(error: RwSignal<Option<ApiError>>) -> impl IntoView {
    move || {
        error.get().filter(|e| e.fields.is_none()).map(|e| {
            view! {
                <p class="error-notice form-error" role="alert">
                    <span class="error-message">{e.message.clone()}</span>
                </p>
            }
        })
    }
}

/// A success message.
#[component]
pub fn Notice(message: RwSignal<Option<String>>) -> impl IntoView {
    move || {
        message
            .get()
            .map(|m| view! { <p class="notice" role="status">{m}</p> })
    }
}

/// Asks the browser to confirm `question` (for what cannot be undone); false when it cannot ask.
pub fn confirmed(question: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(question).ok())
        .unwrap_or(false)
}

/// Local time of a millisecond timestamp, for tables.
pub fn when(ms: i64) -> String {
    let date = js_sys_date(ms);
    date.unwrap_or_else(|| ms.to_string())
}

fn js_sys_date(ms: i64) -> Option<String> {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    date.to_locale_string("en-GB", &wasm_bindgen::JsValue::UNDEFINED)
        .as_string()
}
