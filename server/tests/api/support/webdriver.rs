//! A small W3C WebDriver client over HTTP, enough to drive headless Chromium through chromedriver.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Whether Chromium and chromedriver are installed.
    pub fn available() -> bool {
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists()
    }

    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        super::eventually(Duration::from_secs(30), "chromedriver to listen", || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                http.get(url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-quic", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {response}"))
            .to_owned();
        Browser {
            http,
            base,
            session,
            driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let value: Value = request
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("webdriver json");
        value["value"].clone()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Grants the page a permission (`clipboard-read`, `clipboard-write`…): WebDriver's permissions
    /// extension, which ChromeDriver implements.
    pub async fn grant(&self, permission: &str) {
        self.call(
            reqwest::Method::POST,
            "/permissions",
            Some(json!({"descriptor": {"name": permission}, "state": "granted"})),
        )
        .await;
    }

    /// Sets the window's size in CSS pixels (headless: the page's viewport).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("base64");
        std::fs::write(path, png).expect("write the screenshot");
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .map(|id| Element(id.to_owned()))
    }

    pub async fn text(&self, element: &Element) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/text", element.0),
                None,
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    pub async fn click(&self, element: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// Waits until the element matching `css` exists and its text satisfies `accept`; returns the text.
    pub async fn wait_for_text(&self, css: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            if let Some(element) = self.find(css).await {
                last = self.text(&element).await;
                if let Some(text) = last.as_ref().filter(|t| accept(t)) {
                    return text.clone();
                }
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.current_url().await;
                let main = match self.find("main").await {
                    Some(main) => self.text(&main).await.unwrap_or_default(),
                    None => String::new(),
                };
                let logs = self
                    .call(
                        reqwest::Method::POST,
                        "/se/log",
                        Some(json!({"type": "browser"})),
                    )
                    .await;
                let cookies = self.call(reqwest::Method::GET, "/cookie", None).await;
                panic!(
                    "timed out waiting for `{css}` with the expected text; it had {last:?}; at {url} showing: {main}\ncookies: {cookies}\nconsole: {logs}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the element matching `css` (waiting for it to exist).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clicks the element matching `css` (waiting for it to exist).
    pub async fn click_css(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.click(&element).await;
    }

    pub async fn wait_for(&self, css: &str) -> Element {
        super::eventually(
            Duration::from_secs(30),
            &format!("`{css}` to appear"),
            move || async move { self.find(css).await },
        )
        .await
    }

    /// The `value` property of a form field.
    pub async fn value(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/property/value", element.0),
                None,
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the current URL's path satisfies `accept`; returns the URL.
    pub async fn wait_for_url(&self, accept: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.current_url().await;
            if accept(&url) {
                return url;
            }
            if tokio::time::Instant::now() > deadline {
                let text = match self.find("main").await {
                    Some(main) => self.text(&main).await.unwrap_or_default(),
                    None => String::new(),
                };
                let logs = self
                    .call(
                        reqwest::Method::POST,
                        "/se/log",
                        Some(json!({"type": "browser"})),
                    )
                    .await;
                panic!(
                    "timed out waiting for another page; still at {url}, showing: {text}\nconsole: {logs}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Accepts the `confirm()` dialog that is (or is about to be) open.
    pub async fn accept_alert(&self) {
        super::eventually(
            Duration::from_secs(30),
            "a confirmation dialog",
            move || async move {
                let url = format!("{}/session/{}/alert/accept", self.base, self.session);
                let response = self.http.post(url).json(&json!({})).send().await.ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await;
    }

    pub async fn page_source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
