//! A value to copy (a token, a command, a link) with a Copy button. Long values (commands) are
//! shown whole, wrapped, in a read-only text area.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

/// What the last press of Copy did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Copied {
    Not,
    Yes,
    /// The browser refused (no clipboard access): the text is selected for Ctrl+C.
    Selected,
}

/// Copies `text`: the Clipboard API where the page may use it, else the selection of `field` and
/// the browser's copy command.
async fn copy(text: String, field: &str) -> Copied {
    if let Some(clipboard) = web_sys::window().map(|w| w.navigator().clipboard()) {
        let written = wasm_bindgen_futures::JsFuture::from(clipboard.write_text(&text)).await;
        if written.is_ok() {
            return Copied::Yes;
        }
    }
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return Copied::Not;
    };
    let Some(element) = document.get_element_by_id(field) else {
        return Copied::Not;
    };
    if let Some(input) = element.dyn_ref::<web_sys::HtmlInputElement>() {
        input.select();
    } else if let Some(area) = element.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        area.select();
    }
    let copied = document
        .dyn_ref::<web_sys::HtmlDocument>()
        .and_then(|d| d.exec_command("copy").ok())
        .unwrap_or(false);
    if copied {
        Copied::Yes
    } else {
        Copied::Selected
    }
}

/// A read-only field holding `value`, with a Copy button; `id` is the field's. `wide` values are
/// shown whole in a wrapping text area.
#[component]
pub fn CopyField(
    #[prop(into)] id: String,
    #[prop(into)] value: String,
    #[prop(optional)] wide: bool,
    /// What the value is, for the button's accessible name ("Copy the probe token").
    #[prop(into)]
    what: String,
) -> impl IntoView {
    let copied = RwSignal::new(Copied::Not);
    let (text, field) = (value.clone(), id.clone());
    let press = move |_| {
        let (text, field) = (text.clone(), field.clone());
        spawn_local(async move { copied.set(copy(text, &field).await) });
    };
    let rows = (value.len() / 60 + 1).clamp(1, 6).to_string();
    view! {
        <div class="copy-field">
            {if wide {
                view! { <textarea readonly class="copy" id=id.clone() rows=rows spellcheck="false" prop:value=value.clone()></textarea> }.into_any()
            } else {
                view! { <input type="text" readonly class="copy" id=id.clone() prop:value=value.clone() /> }.into_any()
            }}
            <button type="button" class="secondary copy-button" data-copies=id.clone()
                aria-label=format!("Copy {what}") on:click=press>"Copy"</button>
            <span class="copied" role="status" data-copied=id>
                {move || match copied.get() {
                    Copied::Not => "",
                    Copied::Yes => "Copied",
                    Copied::Selected => "Selected: press Ctrl+C",
                }}
            </span>
        </div>
    }
}
