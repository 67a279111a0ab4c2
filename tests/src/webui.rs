//! The web UI in tests: `tandem-webui` on a free loopback port, and a
//! headless Chromium (Debian's `chromium` and `chromium-driver`) driving
//! it through WebDriver, with screenshots kept under
//! `target/webui-screenshots/`.
//!
//! Browser tests need both packages. Under CI (`CI=true`) a missing one
//! fails the test; elsewhere the test says SKIPPED and returns.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::binary;
use crate::netns::{under_ci, which};

/// `tandem-webui` running on 127.0.0.1 in this namespace.
pub struct WebUi {
    child: Child,
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WebUi {
    /// Starts it on a free port with `config` and the daemons' sockets in
    /// `socket_dir`; returns once it listens.
    pub fn start(config: &Path, socket_dir: &Path) -> WebUi {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("webui.log");
        let mut child = Command::new(binary("tandem-webui"))
            .args(["--config", config.to_str().unwrap()])
            .args(["--socket-dir", socket_dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tandem-webui starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        // Keeps draining its log to a file for the test's messages.
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log_path).unwrap();
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if !sent && let Some(i) = line.find("listening on ") {
                    let url = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(url);
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "tandem-webui did not listen:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        WebUi {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WebUi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cargo target directory this test or bench was built in.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>
    exe.ancestors()
        .nth(3)
        .expect("a target directory")
        .to_path_buf()
}

/// Where screenshots go: `target/webui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("webui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium under chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether browser tests can run here; `None` (after saying SKIPPED) when
/// not, a panic under CI.
pub fn browser_available(test: &str) -> Option<(PathBuf, PathBuf)> {
    let chromium = which("chromium");
    let driver = which("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let why = "chromium and chromedriver are needed (Debian packages chromium, chromium-driver; scripts/deps installs them)";
            if under_ci() {
                panic!("{test}: cannot run a browser test under CI: {why}");
            }
            eprintln!("\n*** SKIPPED {test}: {why}\n");
            None
        }
    }
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium session.
    pub async fn start(test: &str) -> Option<Browser> {
        let (chromium, driver_bin) = browser_available(test)?;
        let port = free_port();
        // Its own process group: a test that panics still takes Chromium
        // down with chromedriver (see Drop).
        let mut driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    let _ = driver.kill();
                    panic!("{test}: no WebDriver session from chromedriver: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Saves a screenshot as `target/webui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    /// The text of the first element matching `css`, waiting up to 10 s
    /// for it (a click's page may still be loading; live refresh may
    /// replace the element under us).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match found {
                Ok(t) => return t,
                Err(e) if Instant::now() > deadline => panic!(
                    "no {css}: {e}\non {}:\n{}",
                    self.client.current_url().await.unwrap(),
                    self.client.source().await.unwrap_or_default()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn body(&self) -> String {
        self.text("body").await
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    /// Sets a textarea's content at once (typing a whole file key by key
    /// is slow and editors' auto-indent would change it).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![serde_json::json!(css), serde_json::json!(value)],
            )
            .await
            .unwrap();
    }

    /// Clicks the first element matching `css`, waiting up to 10 s for it.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.click().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match clicked {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "cannot click {css}: {e}\non {}:\n{}",
                    self.client.current_url().await.unwrap(),
                    self.client.source().await.unwrap_or_default()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Logs in through the form.
    pub async fn login(&self, base: &str, name: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.fill("#name", name).await;
        self.fill("#password", password).await;
        self.click("#login").await;
        // The click returns before the answer (an argon2 check) arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.client.current_url().await.unwrap();
            if !url.path().starts_with("/login") {
                return;
            }
            if Instant::now() > deadline
                || self.client.find(Locator::Css("#login-error")).await.is_ok()
            {
                panic!("still on the login page: {}", self.body().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test started.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
