use leptos::prelude::*;

use crate::api;
use crate::components::async_view::{ErrorNotice, Loading};

/// Shows what the server says about itself (`GET /api/version`).
#[component]
pub fn Status() -> impl IntoView {
    let version = LocalResource::new(api::version);
    view! {
        <section class="status">
            <h1>"Service status"</h1>
            <Suspense fallback=|| view! { <Loading what="server status" /> }>
                {move || {
                    version.get().map(|result| match result {
                        Ok(info) => view! {
                            <dl class="facts" id="version-info">
                                <dt>"Server version"</dt>
                                <dd id="server-version">{info.version.clone()}</dd>
                                <dt>"Build"</dt>
                                <dd>{info.git_commit.clone().unwrap_or_else(|| "unknown".to_owned())}</dd>
                                <dt>"Database"</dt>
                                <dd id="database-backend">{info.database.label()}</dd>
                                <dt>"Installation"</dt>
                                <dd><code>{info.installation_id.clone()}</code></dd>
                            </dl>
                        }
                        .into_any(),
                        Err(error) => view! { <ErrorNotice error=error /> }.into_any(),
                    })
                }}
            </Suspense>
            <button type="button" on:click=move |_| version.refetch()>"Refresh"</button>
        </section>
    }
}
