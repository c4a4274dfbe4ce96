//! The split deployment as real processes on loopback: the edge (`scopehub frontend`) in front of
//! users, provisioning, ui and two collector shards, all on one database. Every role listens on a
//! port chosen up front, so a role can be restarted (or replaced) at the same address.

use std::time::Duration;

use axum::http::Method;
use scopehub::clock::Clock;
use scopehub::internal_client::InternalClient;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::agent::{Agent, PASSWORD, link_token};
use super::process::{ServerProcess, binary, free_port};

pub const SECRET: &str = "split-deployment-test-secret-0123456789abcdef";
pub const SHARDS: [&str; 2] = ["shard-a", "shard-b"];

/// One role's process and the address it keeps across restarts.
pub struct Role {
    pub name: &'static str,
    pub listen: String,
    /// This process's own operational listener (`--ops-listen`).
    pub ops: String,
    pub args: Vec<String>,
    pub process: Option<ServerProcess>,
}

fn loopback() -> String {
    format!("127.0.0.1:{}", free_port())
}

impl Role {
    fn new(name: &'static str, args: Vec<String>) -> Role {
        Role {
            name,
            listen: loopback(),
            ops: loopback(),
            args,
            process: None,
        }
    }

    /// Another replica of `role`: the same flags, its own address.
    pub fn new_like(role: &Role) -> Role {
        Role::new(role.name, role.args.clone())
    }

    /// The process that replaces `role` in a rolling update: the same flags and address (shared
    /// with `--reuse-port` while both run), its own operational listener.
    pub fn replacement(role: &Role) -> Role {
        Role {
            listen: role.listen.clone(),
            ..Role::new(role.name, role.args.clone())
        }
    }

    /// Waits until this very process says it is ready (on its own operational listener).
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.ops);
        super::eventually(Duration::from_secs(30), "the role to be ready", || {
            let url = url.clone();
            async move { (reqwest::get(url).await.ok()?.status() == 200).then_some(()) }
        })
        .await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts the role (again) at its address.
    pub fn start(&mut self) {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["--ops-listen", &self.ops]);
        self.process = Some(ServerProcess::start_on(self.name, &self.listen, &args));
    }

    /// This process's `/metrics`, from its operational listener (where alone it is served).
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("http://{}/metrics", self.ops))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{} /metrics", self.name);
        response.text().await.unwrap()
    }

    pub fn process(&self) -> &ServerProcess {
        self.process.as_ref().expect("role running")
    }
}

/// What differs between split deployments under test.
#[derive(Default)]
pub struct Options {
    /// Flags for every role.
    pub every_role: Vec<String>,
    /// Flags for the users role only (e.g. `--smtp-url`).
    pub users: Vec<String>,
    /// The web app the ui role serves; a fake one if `None`.
    pub dist_dir: Option<std::path::PathBuf>,
}

pub struct Split {
    pub database_url: String,
    pub users: Role,
    pub provisioning: Role,
    pub ui: Role,
    /// The collector shards, in the order of [`SHARDS`].
    pub shards: Vec<Role>,
    pub frontend: Role,
    _dist: TempDir,
}

impl Split {
    /// Starts every role on `database_url` and waits until each is ready.
    pub async fn start(database_url: &str) -> Split {
        Split::start_with(database_url, &[]).await
    }

    /// As [`Split::start`], with extra flags for every role.
    pub async fn start_with(database_url: &str, every_role: &[&str]) -> Split {
        let options = Options {
            every_role: every_role.iter().map(|a| (*a).to_owned()).collect(),
            ..Options::default()
        };
        Split::start_opts(database_url, options).await
    }

    pub async fn start_opts(database_url: &str, options: Options) -> Split {
        let dist = tempfile::tempdir().unwrap();
        super::write_fake_dist(dist.path());
        let dist_dir = options
            .dist_dir
            .clone()
            .unwrap_or_else(|| dist.path().join("dist"));
        let every_role = options.every_role.clone();
        let common = |extra: &[String]| -> Vec<String> {
            let mut args = vec!["--internal-secret".to_owned(), SECRET.to_owned()];
            args.extend_from_slice(extra);
            args.extend_from_slice(&every_role);
            args
        };
        let db = vec!["--database-url".to_owned(), database_url.to_owned()];
        let mut users_args = db.clone();
        users_args.extend(options.users.iter().cloned());
        let mut users = Role::new("users", common(&users_args));
        let provisioning_listen = format!("127.0.0.1:{}", free_port());
        let mut shards: Vec<Role> = SHARDS
            .iter()
            .map(|name| {
                Role::new(
                    "collector",
                    common(&[
                        "--shard".to_owned(),
                        (*name).to_owned(),
                        "--users-url".to_owned(),
                        users.url(),
                        "--provisioning-url".to_owned(),
                        format!("http://{provisioning_listen}"),
                    ]),
                )
            })
            .collect();
        let shard_flags: Vec<String> = SHARDS
            .iter()
            .zip(&shards)
            .flat_map(|(name, role)| {
                [
                    "--collector-shard".to_owned(),
                    format!("{name}={}", role.url()),
                ]
            })
            .collect();
        let mut provisioning_args = db.clone();
        provisioning_args.extend(["--users-url".to_owned(), users.url()]);
        provisioning_args.extend(shard_flags.iter().cloned());
        let mut provisioning = Role::new("provisioning", common(&provisioning_args));
        provisioning.listen = provisioning_listen;
        let mut ui_args = vec!["--dist-dir".to_owned(), dist_dir.display().to_string()];
        ui_args.extend_from_slice(&every_role);
        let mut ui = Role::new("ui", ui_args);
        let mut frontend_flags = vec![
            "--users-url".to_owned(),
            users.url(),
            "--provisioning-url".to_owned(),
            provisioning.url(),
            "--ui-url".to_owned(),
            ui.url(),
        ];
        frontend_flags.extend(shard_flags);
        let mut frontend = Role::new("frontend", common(&frontend_flags));
        let public = ["--public-url".to_owned(), frontend.url()];
        users.args.extend(public.iter().cloned());
        frontend.args.extend(public.iter().cloned());

        users.start();
        users.wait_ready().await;
        for shard in &mut shards {
            shard.start();
        }
        provisioning.start();
        ui.start();
        frontend.start();
        for role in shards.iter().chain([&provisioning, &ui, &frontend]) {
            role.wait_ready().await;
        }
        Split {
            database_url: database_url.to_owned(),
            users,
            provisioning,
            ui,
            shards,
            frontend,
            _dist: dist,
        }
    }

    pub fn url(&self) -> String {
        self.frontend.url()
    }

    /// Every role, the edge last.
    pub fn roles_mut(&mut self) -> Vec<&mut Role> {
        let mut roles = vec![&mut self.users, &mut self.provisioning, &mut self.ui];
        roles.extend(self.shards.iter_mut());
        roles.push(&mut self.frontend);
        roles
    }

    /// A client of a role's internal API, as another role would call it.
    pub fn internal(&self, role: &'static str, url: &str) -> InternalClient {
        internal_client(role, url, SECRET)
    }

    /// The instances a shard holds.
    pub async fn held_by(&self, shard: usize) -> Vec<String> {
        self.internal("collector", &self.shards[shard].url())
            .call(
                Method::GET,
                &["internal", "collector", "instances"],
                None::<&()>,
            )
            .await
            .unwrap()
    }

    /// Makes `email` a site admin with `scopehub admin create` (creating the account if there is
    /// none); returns the one-time login link's token.
    pub fn make_admin(&self, email: &str) -> String {
        let output = binary()
            .args(["admin", "create", "--email", email, "--database-url"])
            .arg(&self.database_url)
            .args(["--public-url", &self.url()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let printed = String::from_utf8_lossy(&output.stdout);
        link_token(&printed).expect("a login link")
    }

    /// A site admin made with `scopehub admin create`, logged in through the edge.
    pub async fn site_admin(&self, email: &str) -> Agent {
        let token = self.make_admin(email);
        let mut admin = Agent::for_url(&self.url());
        let (status, body) = admin.login_with_link(&token).await;
        assert_eq!(status, 200, "{body}");
        admin
    }

    /// The token of the link in the newest mail to `to`, read from the outbox as an admin.
    pub async fn mailed_token(admin: &mut Agent, to: &str) -> String {
        let (status, outbox) = admin.get("/api/admin/outbox").await;
        assert_eq!(status, 200, "{outbox}");
        let mail = outbox
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["to"] == to)
            .unwrap_or_else(|| panic!("no mail to {to}: {outbox}"));
        link_token(mail["body"].as_str().unwrap()).expect("a link")
    }

    /// A customer signed up, confirmed and approved through the edge, logged in; with their org.
    pub async fn customer(&self, admin: &mut Agent, email: &str) -> (Agent, String) {
        let mut agent = Agent::for_url(&self.url());
        let (status, body) = agent
            .post(
                "/api/users/signup",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let token = Split::mailed_token(admin, email).await;
        let (status, body) = agent
            .post("/api/users/verify", json!({"token": token}))
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, waitlist) = admin.get("/api/admin/waitlist").await;
        let id = waitlist
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap_or_else(|| panic!("{email} not on the waitlist: {waitlist}"))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = admin
            .post(&format!("/api/admin/users/{id}/approve"), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, me) = agent.login(email, PASSWORD).await;
        assert_eq!(status, 200, "{me}");
        let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
        (agent, org)
    }

    /// A new instance in `org`, once ready: (id, probe token).
    pub async fn ready_instance(agent: &mut Agent, org: &str, name: &str) -> (String, String) {
        let (status, created) = agent
            .post("/api/instances", json!({"org_id": org, "name": name}))
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["instance"]["id"].as_str().unwrap().to_owned();
        let token = created["probe_token"].as_str().unwrap().to_owned();
        agent.wait_for_instance(&id, "ready").await;
        (id, token)
    }
}

/// A client of a role's internal API at `url`, signing with `secret` as another role would.
pub fn internal_client(role: &'static str, url: &str, secret: &str) -> InternalClient {
    InternalClient::new(
        role,
        "test",
        url.parse().unwrap(),
        secret.parse().unwrap(),
        Clock::system(),
    )
    .unwrap()
}

/// Posts a report through `base` as the Scope probe does.
pub async fn post_report(base: &str, token: &str, probe: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/report"))
        .header("authorization", format!("Scope-Probe token={token}"))
        .header("content-type", "application/msgpack")
        .header("content-encoding", "gzip")
        .header("x-scope-probe-id", probe)
        .header("x-scope-probe-version", "dev")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
