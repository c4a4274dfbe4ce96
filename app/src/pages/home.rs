use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn Home() -> impl IntoView {
    view! {
        <section class="hero">
            <h1>"See your whole system, live."</h1>
            <p class="lead">
                "Scopehub is hosted Weave Scope: run a probe on your hosts and watch a live map of your "
                "processes, containers, hosts and the connections between them."
            </p>
            <p class="actions">
                <A href="/signup" attr:class="button">"Request early access"</A>
                " "
                <A href="/login" attr:class="button secondary">"Log in"</A>
            </p>
        </section>
    }
}
