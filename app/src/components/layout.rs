use leptos::prelude::*;
use leptos_router::components::A;

/// Header with navigation around every page.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    view! {
        <header class="site-header">
            <a class="brand" href="/">"Scopehub"</a>
            <nav aria-label="Main">
                <A href="/" exact=true>"Home"</A>
                <A href="/status">"Status"</A>
            </nav>
        </header>
        <main class="content">{children()}</main>
        <footer class="site-footer">"Scopehub — hosted Weave Scope"</footer>
    }
}
