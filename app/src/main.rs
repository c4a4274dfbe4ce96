//! Scopehub's single-page app. `api.rs` is the only module that talks HTTP.

mod api;
mod components;
mod pages;
mod session;

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use components::guard::{RequireAdmin, RequireApproved, RequireUser};
use components::layout::Layout;
use pages::account::Account;
use pages::admin::Admin;
use pages::auth::{ForgotPassword, Login, LoginLink, ResetPassword, Signup, Verify, Waitlist};
use pages::instances::{Instance, provide_fresh_token};
use pages::orgs::{Invite, Org, OrgAudit, Orgs};
use pages::tokens::Tokens;
use pages::{home::Home, not_found::NotFound, status::Status};

fn main() {
    install_panic_reporting();
    #[cfg(feature = "map")]
    pages::map_loader::full_app_loaded();
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
    session::provide_session();
    provide_fresh_token();
    view! {
        <Title text="Scopehub" />
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=Home />
                    <Route path=path!("/status") view=Status />
                    <Route path=path!("/bench/layout") view=LayoutBenchRoute />
                    <Route path=path!("/signup") view=Signup />
                    <Route path=path!("/verify") view=Verify />
                    <Route path=path!("/login") view=Login />
                    <Route path=path!("/login-link") view=LoginLink />
                    <Route path=path!("/forgot-password") view=ForgotPassword />
                    <Route path=path!("/reset-password") view=ResetPassword />
                    <Route path=path!("/invite") view=Invite />
                    <Route path=path!("/waitlist") view=|| view! { <RequireUser><Waitlist /></RequireUser> } />
                    <Route path=path!("/account") view=|| view! { <RequireUser><Account /></RequireUser> } />
                    <Route path=path!("/orgs") view=|| view! { <RequireApproved><Orgs /></RequireApproved> } />
                    <Route path=path!("/orgs/:id") view=|| view! { <RequireApproved><Org /></RequireApproved> } />
                    <Route path=path!("/orgs/:id/audit") view=|| view! { <RequireApproved><OrgAudit /></RequireApproved> } />
                    <Route path=path!("/instances/:id") view=|| view! { <RequireApproved><Instance /></RequireApproved> } />
                    <Route path=path!("/instances/:id/map") view=MapRoute />
                    <Route path=path!("/tokens") view=|| view! { <RequireApproved><Tokens /></RequireApproved> } />
                    <Route path=path!("/admin") view=|| view! { <RequireAdmin><Admin /></RequireAdmin> } />
                </Routes>
            </Layout>
        </Router>
    }
}

// The map's routes: the full bundle renders them; the first-visit bundle loads the full one
// (`pages::map_loader`). The server's `ui::FULL_APP_ROUTES` must list the same paths.

#[cfg(feature = "map")]
#[component]
fn MapRoute() -> impl IntoView {
    view! { <RequireApproved><pages::topology::TopologyMap /></RequireApproved> }
}

#[cfg(feature = "map")]
#[component]
fn LayoutBenchRoute() -> impl IntoView {
    view! { <pages::bench::LayoutBench /> }
}

#[cfg(not(feature = "map"))]
use pages::map_loader::{LoadFullApp as MapRoute, LoadFullApp as LayoutBenchRoute};
