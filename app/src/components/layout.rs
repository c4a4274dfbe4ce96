use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api;
use crate::session::use_session;

/// Header with navigation (what it offers depends on who is logged in) around every page.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let session = use_session();
    let logged_in = move || session.me.with(Option::is_some);
    let logout = move |_| {
        spawn_local(async move {
            let _ = api::logout().await;
            session.leave();
        });
    };
    let switch = {
        let navigate = use_navigate();
        move |ev: leptos::ev::Event| {
            let id = event_target_value(&ev);
            if !id.is_empty() {
                navigate(&format!("/orgs/{id}"), Default::default());
            }
        }
    };
    view! {
        <header class="site-header">
            <a class="brand" href="/">"Scopehub"</a>
            <nav aria-label="Main">
                <A href="/" exact=true>"Home"</A>
                <A href="/status">"Status"</A>
                <Show when=move || session.is_approved()>
                    <A href="/orgs" exact=true>"Orgs"</A>
                    <A href="/tokens">"API tokens"</A>
                </Show>
                <Show when=move || session.is_admin()>
                    <A href="/admin">"Admin"</A>
                </Show>
            </nav>
            <div class="session">
                <Show when=move || session.is_approved()>
                    <label class="org-switcher">"Org "
                        <select id="org-switcher" on:change=switch.clone()>
                            {move || {
                                let current = session.current_org.get();
                                let orgs = session.me.with(|m| m.as_ref().map(|m| m.orgs.clone()).unwrap_or_default());
                                let known = current.as_ref().is_some_and(|c| orgs.iter().any(|o| &o.id == c));
                                view! {
                                    {(!known).then(|| view! { <option value="" selected=true>"Switch…"</option> })}
                                    {orgs.into_iter().map(|o| {
                                        let selected = current.as_deref() == Some(o.id.as_str());
                                        view! { <option value=o.id.clone() selected=selected>{o.name.clone()}</option> }
                                    }).collect_view()}
                                }
                            }}
                        </select>
                    </label>
                </Show>
                <Show when=logged_in fallback=|| view! {
                    <A href="/login">"Log in"</A>
                    <A href="/signup">"Sign up"</A>
                }>
                    <A href="/account">
                        <span id="current-user">{move || session.me.with(|m| m.as_ref().map(|m| m.user.email.clone()))}</span>
                    </A>
                    <button type="button" class="link" id="logout" on:click=logout>"Log out"</button>
                </Show>
            </div>
        </header>
        <main class="content">{children()}</main>
        <footer class="site-footer">"Scopehub — hosted Weave Scope"</footer>
    }
}
