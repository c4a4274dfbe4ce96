//! Scopehub's single-page app. `api.rs` is the only module that talks HTTP.

mod api;
mod components;
mod pages;

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use components::layout::Layout;
use pages::{home::Home, not_found::NotFound, status::Status};

fn main() {
    install_panic_reporting();
    leptos::mount::mount_to_body(App);
}

/// Panics show in the console (readable stack) and are reported to the server log.
fn install_panic_reporting() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        api::report_client_error(&info.to_string());
    }));
}

#[component]
fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Scopehub" />
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=Home />
                    <Route path=path!("/status") view=Status />
                </Routes>
            </Layout>
        </Router>
    }
}
