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
use pages::bench::LayoutBench;
use pages::instances::{Instance, provide_fresh_token};
use pages::orgs::{Invite, Org, OrgAudit, Orgs};
use pages::tokens::Tokens;
use pages::topology::TopologyMap;
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
    session::provide_session();
    provide_fresh_token();
    view! {
        <Title text="Scopehub" />
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=Home />
                    <Route path=path!("/status") view=Status />
                    <Route path=path!("/bench/layout") view=LayoutBench />
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
                    <Route path=path!("/instances/:id/map") view=|| view! { <RequireApproved><TopologyMap /></RequireApproved> } />
                    <Route path=path!("/tokens") view=|| view! { <RequireApproved><Tokens /></RequireApproved> } />
                    <Route path=path!("/admin") view=|| view! { <RequireAdmin><Admin /></RequireAdmin> } />
                </Routes>
            </Layout>
        </Router>
    }
}
