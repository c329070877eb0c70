//! The dashboard in a real browser: headless Chromium driven over WebDriver (ChromeDriver,
//! through fantoccini) against a real server with real data, on both backends. Each test signs
//! in (or finds the server open), walks every page the way a person would (links, forms, the
//! keyboard), checks what each shows, saves a screenshot of each page under
//! `target/ui-screenshots/<backend>/`, and fails on any error in the browser's console.
//!
//! The browser comes from Debian's `chromium` and `chromium-driver`, which `scripts/browser`
//! (run by `scripts/test`) installs and names in `RECO_CHROMIUM` and `RECO_CHROMEDRIVER`.
//! Where neither those variables nor `/usr/bin/chromium` and `/usr/bin/chromedriver` exist, the
//! tests say so and skip; a browser that exists but fails fails the tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::shop;
use crate::helpers::{ADMIN, Backend, TestApp, fresh_database};

/// How long a page may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(15);

/// Console messages the page causes on purpose: answers it asks for and handles. Finding out
/// whether the server runs open asks for the tenants without a key (401 when it does not), and
/// telling an admin key from a tenant key asks for a tenant no key's list holds (404 for the
/// admin, 403 for a tenant key). Chromium logs every such answer as a failed resource.
const EXPECTED: [(&str, &str); 3] = [
    ("/v1/tenants ", "status of 401"),
    (
        "/v1/tenants/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ",
        "status of 40",
    ),
    ("/model/evaluation ", "status of 404"),
];

/// Chromium and ChromeDriver, when this machine has them.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map(PathBuf::from)
            .or_else(|| Path::new(default).exists().then(|| PathBuf::from(default)))
    };
    Some((
        find("RECO_CHROMIUM", "/usr/bin/chromium")?,
        find("RECO_CHROMEDRIVER", "/usr/bin/chromedriver")?,
    ))
}

/// A headless Chromium of its own (its own ChromeDriver, profile and port), and where its
/// screenshots go.
struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    session: String,
    base: String,
    shots: PathBuf,
    http: reqwest::Client,
    /// Chromium's profile, made for this browser and removed with it.
    profile: PathBuf,
}

impl Browser {
    /// Starts a browser on `app`, or `None` (said on standard error) where there is none.
    async fn start(app: &TestApp, backend: Backend) -> Option<Self> {
        let Some((chromium, chromedriver)) = browser_tools() else {
            eprintln!(
                "SKIPPED: the dashboard's browser tests need Chromium and ChromeDriver \
                 (Debian: apt-get install chromium chromium-driver; scripts/test installs them)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http
            .get(format!("{driver_url}/status"))
            .send()
            .await
            .is_err()
        {
            assert!(started.elapsed() < PATIENCE, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("reco-chromium-{port}"));
        std::fs::create_dir_all(&profile).unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                // Headless, as root in CI (no sandbox), and quiet: this machine's network is
                // closed, and Chromium's own background connections would fill the log.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--window-size=1366,900", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("a Chromium session starts");
        let session = client.session_id().await.unwrap().expect("a session id");
        let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/ui-screenshots")
            .join(match backend {
                Backend::Postgres => "postgres",
                Backend::Sqlite => "sqlite",
            });
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            client,
            driver,
            driver_url,
            session,
            base: app.base.clone(),
            shots,
            http,
            profile,
        })
    }

    /// Opens the dashboard at `hash` (`/tenants`, say).
    async fn open(&self, hash: &str) {
        self.client
            .goto(&format!("{}/ui#{hash}", self.base))
            .await
            .unwrap();
    }

    /// The first element `css` finds, once there is one.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    /// Every element `css` finds, once there are at least `least`.
    async fn find_all(&self, css: &str, least: usize) -> Vec<fantoccini::elements::Element> {
        let started = Instant::now();
        loop {
            let found = self.client.find_all(Locator::Css(css)).await.unwrap();
            if found.len() >= least {
                return found;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} of `{css}` on the page, not {least}",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of `css`'s element, once it holds `expected`.
    async fn text_holding(&self, css: &str, expected: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.find(css).await.text().await.unwrap_or_default();
            if text.contains(expected) {
                return text;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "`{css}` says {text:?}, without {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The texts of every element `css` finds.
    async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            texts.push(element.text().await.unwrap());
        }
        texts
    }

    /// Types `text` into the form `form`'s field `name` and submits it with Enter.
    async fn fill_and_submit(&self, form: &str, name: &str, text: &str) {
        let field = self.find(&format!("{form} [name=\"{name}\"]")).await;
        field.clear().await.unwrap();
        field.send_keys(&format!("{text}\u{E007}")).await.unwrap();
    }

    /// Presses a key on the page (not in a field).
    async fn press(&self, key: &str) {
        self.client
            .execute(
                "document.activeElement && document.activeElement.blur(); \
                 document.dispatchEvent(new KeyboardEvent('keydown', {key: arguments[0], bubbles: true}));",
                vec![Value::from(key)],
            )
            .await
            .unwrap();
    }

    /// Saves a screenshot of the page as `<name>.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// The console's errors since the last call, but those `EXPECTED`.
    async fn console_errors(&self) -> Vec<String> {
        let log: Value = self
            .http
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log["value"]
            .as_array()
            .expect("the browser's log")
            .iter()
            .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .filter(|message| {
                !EXPECTED
                    .iter()
                    .any(|(url, status)| message.contains(url) && message.contains(status))
            })
            .collect()
    }

    async fn close(mut self) {
        self.client.close().await.unwrap();
        let _ = self.driver.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Every page of the dashboard on a server with `shop`: tenants, entities (a category filter,
/// an entity opened by id, its similar entities in both spaces, `k` changed), a user's history
/// and each strategy's recommendations, trending, the model with an evaluation run from the
/// page, and the service's live charts; no console errors.
async fn tour(browser: &Browser, app: &TestApp) {
    // Tenants.
    browser.find("tr[data-tenant=\"shop\"]").await;
    let row = browser.text_holding("tr[data-tenant=\"shop\"]", "60").await;
    assert!(row.contains("cosine") && row.contains("ready v1"), "{row}");
    browser.shot("tenants").await;

    // Entities: the tenant's page lists them in id order; a category filter keeps its own.
    browser
        .find("tr[data-tenant=\"shop\"] a")
        .await
        .click()
        .await
        .unwrap();
    browser.text_holding("main h1", "Entities").await;
    browser.find_all("main tbody tr", 50).await;
    assert!(
        browser
            .find("#next-page")
            .await
            .text()
            .await
            .unwrap()
            .contains("Next")
    );
    browser
        .fill_and_submit("#filter-category", "category", "music")
        .await;
    browser.text_holding("main tbody", "music").await;
    let started = Instant::now();
    loop {
        let categories = browser.texts("main tbody tr td:nth-child(2)").await;
        if categories.len() == 20 && categories.iter().all(|c| c == "music") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{categories:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.shot("entities").await;

    // An entity, opened by id from the search field (reached with `/`).
    browser.press("/").await;
    browser.fill_and_submit("#find-entity", "id", "e3").await;
    browser.text_holding("main h1", "e3").await;
    browser.text_holding("main", "Item 3").await;
    let content = browser.find_all(".similar.content tbody tr", 10).await;
    let collaborative = browser
        .find_all(".similar.collaborative tbody tr", 10)
        .await;
    assert_eq!(content.len(), 10);
    assert_eq!(collaborative.len(), 10);
    let neighbours = browser
        .texts(".similar.content tbody tr td:nth-child(2)")
        .await;
    assert!(!neighbours.contains(&"e3".to_owned()), "{neighbours:?}");
    browser.shot("entity").await;
    browser.fill_and_submit("#similar-options", "k", "3").await;
    let started = Instant::now();
    while browser
        .client
        .find_all(Locator::Css(".similar.content tbody tr"))
        .await
        .unwrap()
        .len()
        != 3
    {
        assert!(started.elapsed() < PATIENCE, "k=3 never showed 3 results");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A user, reached with the `u` key: their history, and each strategy side by side.
    browser.press("u").await;
    browser.text_holding("main h1", "Users").await;
    browser.fill_and_submit("#find-user", "user", "u1").await;
    browser.find_all("#history tbody tr", 5).await;
    let chose = browser.find("#auto-chose").await.text().await.unwrap();
    assert!(
        ["collaborative", "hybrid"].contains(&chose.as_str()),
        "auto chose {chose}"
    );
    for strategy in ["auto", "collaborative", "content", "trending"] {
        browser
            .find_all(&format!(".strategy.{strategy} tbody tr"), 5)
            .await;
    }
    // Never what the user already touched (all of it fits in the history's ten rows).
    let touched = browser.texts("#history tbody tr td:first-child").await;
    for strategy in ["auto", "collaborative", "content", "trending"] {
        let recommended = browser
            .texts(&format!(".strategy.{strategy} tbody tr td:nth-child(2)"))
            .await;
        assert!(
            recommended.iter().all(|id| !touched.contains(id)),
            "{strategy} recommends {recommended:?} to a user who touched {touched:?}"
        );
    }
    browser.shot("users").await;

    // Trending, from the navigation, with another window chosen.
    browser
        .find("#nav a[href$=\"/trending\"]")
        .await
        .click()
        .await
        .unwrap();
    browser.find_all("#trending tbody tr", 10).await;
    browser
        .find("#trending-options select[name=\"window\"]")
        .await
        .select_by_value("7d")
        .await
        .unwrap();
    browser.text_holding("main", "last 7d").await;
    browser.shot("trending").await;

    // The model, and an evaluation run from the page.
    browser.press("m").await;
    browser.text_holding("#model-state", "ready").await;
    browser.find("#run-evaluation").await.click().await.unwrap();
    let started = Instant::now();
    while browser
        .client
        .find_all(Locator::Css("#evaluation-chart svg rect"))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the evaluation's chart never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let strategies = browser.texts("#evaluation tbody tr td:first-child").await;
    assert!(
        strategies.iter().any(|s| s.starts_with("collaborative")),
        "{strategies:?}"
    );
    browser
        .client
        .execute(
            "document.getElementById('evaluation').scrollIntoView();",
            Vec::new(),
        )
        .await
        .unwrap();
    browser.shot("model").await;

    // The service's charts fill as the page samples the metrics every two seconds, while
    // clients ask for similar entities (a tenth of them for an id that does not exist).
    let traffic = {
        let (client, base) = (app.client.clone(), app.base.clone());
        tokio::spawn(async move {
            for n in 0u64.. {
                let id = if n % 10 == 9 {
                    "missing".to_owned()
                } else {
                    format!("e{}", n % 60)
                };
                let _ = client
                    .get(format!("{base}/v1/tenants/shop/entities/{id}/similar"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    browser.press("s").await;
    browser.find("#readiness").await;
    let started = Instant::now();
    loop {
        let points = browser
            .find("#chart-rps")
            .await
            .attr("data-points")
            .await
            .unwrap()
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(0);
        if points >= 5 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the charts never filled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for chart in ["rps", "p99", "cache", "errors"] {
        browser.find(&format!("#chart-{chart} svg path.line")).await;
    }
    let errors = browser.text_holding("#chart-errors .now", "").await;
    traffic.abort();
    assert!(!errors.starts_with('–'), "{errors}");
    browser.shot("service").await;
}

/// On PostgreSQL with Redis, with an admin key: sign in (a wrong key is refused), the tour,
/// then a tenant key, which sees its own tenant and no admin controls.
#[tokio::test]
async fn the_dashboard_works_in_a_browser_on_postgres() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let Some(browser) = Browser::start(&app, Backend::Postgres).await else {
        return;
    };
    shop(&app).await;
    // Requests the charts can show, a cached one among them.
    for _ in 0..3 {
        app.similar("shop", "e1", "").await;
    }

    browser.open("/tenants").await;
    browser.find("#sign-in").await;
    browser.shot("sign-in").await;
    browser
        .fill_and_submit("#sign-in", "key", "not-a-key")
        .await;
    browser
        .text_holding("#sign-in .error", "opens nothing")
        .await;
    let errors = browser.console_errors().await;
    assert!(errors.iter().all(|e| e.contains("401")), "{errors:?}");
    browser.fill_and_submit("#sign-in", "key", ADMIN).await;
    browser.text_holding("#who", "admin").await;
    assert!(
        browser
            .find("#create-tenant")
            .await
            .is_displayed()
            .await
            .unwrap()
    );

    tour(&browser, &app).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "errors in the console: {errors:#?}");

    // Signed out, then in with a tenant key: its tenant only, and nothing an admin does.
    assert_eq!(app.create_tenant("other", 2, "dot").await.status(), 201);
    let key = app.create_key("shop").await;
    browser.find("#sign-out").await.click().await.unwrap();
    browser.find("#sign-in").await;
    browser.fill_and_submit("#sign-in", "key", &key).await;
    browser.text_holding("#who", "tenant key").await;
    browser.find("tr[data-tenant=\"shop\"]").await;
    assert!(
        browser
            .client
            .find(Locator::Css("tr[data-tenant=\"other\"]"))
            .await
            .is_err()
    );
    assert!(
        browser
            .client
            .find(Locator::Css("#create-tenant"))
            .await
            .is_err()
    );
    assert!(
        browser
            .client
            .find(Locator::Css("tr[data-tenant=\"shop\"] button"))
            .await
            .is_err()
    );
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "errors in the console: {errors:#?}");
    browser.close().await;
}

/// On the embedded database, open (no admin key): no sign-in; a tenant is made and deleted
/// from the page; then the tour.
#[tokio::test]
async fn the_dashboard_works_in_a_browser_on_sqlite_in_open_mode() {
    let mut settings = fresh_database(Backend::Sqlite).await;
    settings.admin_key = None;
    let app = TestApp::start(settings).await;
    let Some(browser) = Browser::start(&app, Backend::Sqlite).await else {
        return;
    };
    shop(&app).await;
    for _ in 0..3 {
        app.similar("shop", "e1", "").await;
    }

    browser.open("/tenants").await;
    browser.text_holding("#who", "open mode").await;
    browser.find("tr[data-tenant=\"shop\"]").await;
    // Made from the form, then deleted after a second, explicit confirmation.
    let form = browser.find("#create-tenant").await;
    let name = form.find(Locator::Css("[name=\"name\"]")).await.unwrap();
    name.send_keys("scratch").await.unwrap();
    form.find(Locator::Css("[name=\"vectors\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    form.find(Locator::Css("button[type=\"submit\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = browser
        .text_holding("tr[data-tenant=\"scratch\"]", "no content vectors")
        .await;
    assert!(row.contains("none yet"), "{row}");
    let made = app.get("/v1/tenants/scratch").await;
    assert_eq!(made.status(), 200);
    assert_eq!(
        made.json::<Value>().await.unwrap()["dimension"],
        Value::Null
    );
    browser
        .find("tr[data-tenant=\"scratch\"] button")
        .await
        .click()
        .await
        .unwrap();
    browser
        .find("tr[data-tenant=\"scratch\"] button.danger")
        .await
        .click()
        .await
        .unwrap();
    let started = Instant::now();
    while app
        .request(Method::GET, "/v1/tenants/scratch", None)
        .send()
        .await
        .unwrap()
        .status()
        != 404
    {
        assert!(started.elapsed() < PATIENCE, "the tenant was never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.find("tr[data-tenant=\"shop\"]").await;

    tour(&browser, &app).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "errors in the console: {errors:#?}");
    browser.close().await;
}
