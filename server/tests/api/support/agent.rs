//! A browser-like API client: keeps the session cookie, sends the CSRF token and an Origin header
//! as the web app does, and reads mail from the outbox.

use reqwest::Method;
use serde_json::{Value, json};

use super::TestApp;

#[derive(Clone)]
pub struct Agent {
    pub base: String,
    pub client: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
    pub origin: Option<String>,
}

impl Agent {
    pub fn new(app: &TestApp) -> Agent {
        Agent::for_url(&app.url)
    }

    /// An agent for a server at `base` (e.g. a `scopehub serve` process).
    pub fn for_url(base: &str) -> Agent {
        Agent {
            base: base.to_owned(),
            client: reqwest::Client::new(),
            cookie: None,
            csrf: None,
            bearer: None,
            origin: Some(base.to_owned()),
        }
    }

    /// An API client authenticated only by a bearer token (no browser, no Origin).
    pub fn with_token(app: &TestApp, token: &str) -> Agent {
        Agent {
            bearer: Some(token.to_owned()),
            origin: None,
            ..Agent::new(app)
        }
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.send_full(method, path, body).await;
        (status, body)
    }

    pub async fn send_full(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("scopehub_session={cookie}"));
        }
        if let Some(csrf) = &self.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(origin) = &self.origin {
            request = request.header("origin", origin);
        }
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let value = value.to_str().unwrap();
            if let Some(rest) = value.strip_prefix("scopehub_session=") {
                let token = rest.split(';').next().unwrap_or("");
                self.cookie = (!token.is_empty()).then(|| token.to_owned());
            }
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, body)
    }

    pub async fn get(&mut self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&mut self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&mut self, path: &str) -> (u16, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// Logs in with a password; on success keeps the cookie and CSRF token.
    pub async fn login(&mut self, email: &str, password: &str) -> (u16, Value) {
        let (status, body) = self
            .post(
                "/api/users/login",
                json!({"email": email, "password": password}),
            )
            .await;
        if status == 200 {
            self.csrf = body["csrf_token"].as_str().map(str::to_owned);
        }
        (status, body)
    }

    /// Waits (up to 30 s) until the instance `id` is in `state`; returns its details.
    pub async fn wait_for_instance(&mut self, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, details) = self.get(&format!("/api/instances/{id}")).await;
            if details["instance"]["state"] == state {
                return details;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance {id} never {state}: {details}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Makes instance `name` in `org` and waits until it is ready; returns its id and probe token.
    pub async fn create_ready_instance(&mut self, org: &str, name: &str) -> (String, String) {
        let (status, created) = self
            .post("/api/instances", json!({"org_id": org, "name": name}))
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["instance"]["id"].as_str().unwrap().to_owned();
        let token = created["probe_token"].as_str().unwrap().to_owned();
        self.wait_for_instance(&id, "ready").await;
        (id, token)
    }

    /// Follows an emailed login link.
    pub async fn login_with_link(&mut self, token: &str) -> (u16, Value) {
        let (status, body) = self
            .post("/api/users/login-link/consume", json!({"token": token}))
            .await;
        if status == 200 {
            self.csrf = body["csrf_token"].as_str().map(str::to_owned);
        }
        (status, body)
    }
}

/// The newest message in the outbox to `to`, as (subject, body).
pub async fn last_mail(app: &TestApp, to: &str) -> (String, String) {
    let rows = app.store.outbox(500).await.expect("outbox");
    let row = rows
        .into_iter()
        .find(|m| m.to_email == to)
        .unwrap_or_else(|| panic!("no mail to {to}"));
    (row.subject, row.body)
}

/// The token of the link in the newest message to `to`.
pub async fn last_link_token(app: &TestApp, to: &str) -> String {
    let (_, body) = last_mail(app, to).await;
    link_token(&body).unwrap_or_else(|| panic!("no link in the mail to {to}: {body}"))
}

pub fn link_token(body: &str) -> Option<String> {
    let at = body.find("token=")?;
    Some(
        body[at + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect(),
    )
}

pub const PASSWORD: &str = "correct horse battery";
pub const ADMIN: &str = "admin@example.com";

/// Signs up the first account (the site admin in Airplane Mode) and returns it logged in.
pub async fn site_admin(app: &TestApp) -> Agent {
    first_admin_at(&app.url).await.0
}

/// Signs up the first account of the server at `base` (a site admin where the first signup is
/// one) and returns it logged in, with its `Me`.
pub async fn first_admin_at(base: &str) -> (Agent, Value) {
    let mut admin = Agent::for_url(base);
    let (status, _) = admin
        .post(
            "/api/users/signup",
            json!({"email": ADMIN, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, me) = admin.login(ADMIN, PASSWORD).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["is_admin"], true);
    (admin, me)
}

/// Signs up and confirms `email`; the account is then on the waitlist. Returns its id.
pub async fn verified_user(app: &TestApp, email: &str) -> String {
    let mut agent = Agent::new(app);
    let (status, _) = agent
        .post(
            "/api/users/signup",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    let token = last_link_token(app, email).await;
    let (status, body) = agent
        .post("/api/users/verify", json!({"token": token}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.store
        .user_by_email(email)
        .await
        .unwrap()
        .expect("user")
        .id
}

/// A user approved by `admin`, logged in; returns the agent and the id of their personal org.
pub async fn approved_user(app: &TestApp, admin: &mut Agent, email: &str) -> (Agent, String) {
    let id = verified_user(app, email).await;
    let (status, body) = admin
        .post(&format!("/api/admin/users/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut agent = Agent::new(app);
    let (status, me) = agent.login(email, PASSWORD).await;
    assert_eq!(status, 200, "{me}");
    let org = me["orgs"][0]["id"]
        .as_str()
        .expect("personal org")
        .to_owned();
    (agent, org)
}

/// A new account that joins `org` with `role` through an invite from `owner`.
pub async fn join_org(
    app: &TestApp,
    owner: &mut Agent,
    org: &str,
    email: &str,
    role: &str,
) -> Agent {
    let (_, invite) = owner
        .post(
            &format!("/api/orgs/{org}/invites"),
            json!({"email": email, "role": role}),
        )
        .await;
    assert!(invite["link"].is_string(), "{invite}");
    // A new account: from the link mailed to the address (the inviter's cannot create one).
    let token = last_link_token(app, email).await;
    let mut agent = Agent::new(app);
    let (status, _) = agent
        .post(
            "/api/invites/accept",
            json!({"token": token, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 200);
    // The new session's CSRF token comes with `Me`, as the web app fetches it.
    let (_, me) = agent.get("/api/users/me").await;
    agent.csrf = me["csrf_token"].as_str().map(str::to_owned);
    agent
}
