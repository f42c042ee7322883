//! A real browser: MQTT.js (the npm package's browser bundle) in headless Chromium, driven by
//! Playwright (`tests/browser/mqttjs.mjs`), publishes and subscribes through shardmq's WebSocket
//! listener, QoS 0 to 2, a 64 KiB payload included, with 1 and 4 shards.
//!
//! Needs Debian's `chromium`, Node.js and `npm ci --prefix tests/browser` (tests/run-all.sh installs
//! them). A missing one fails the test, unless `SHARDMQ_SKIP_INTEROP=1` is set, which skips it loudly.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::broker::TestBroker;
use common::{skip_missing_tool, with_timeout};

fn browser_present(dir: &Path) -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return !skip_missing_tool("chromium", "apt-get install chromium");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return !skip_missing_tool("node", "apt-get install nodejs npm");
    }
    if !dir.join("node_modules/mqtt/dist/mqtt.min.js").exists()
        || !dir.join("node_modules/playwright-core").exists()
    {
        return !skip_missing_tool(
            "MQTT.js and playwright-core",
            "npm ci --prefix tests/browser",
        );
    }
    true
}

#[test]
fn mqtt_js_in_chromium_publishes_and_subscribes_over_websockets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_present(&dir) {
        return;
    }
    with_timeout("MQTT.js in Chromium", Duration::from_secs(120), move || {
        for &shards in common::shard_counts() {
            let broker = TestBroker::start(shards, "protocol websockets\n");
            let out = Command::new("node")
                .arg(dir.join("mqttjs.mjs"))
                .args(["127.0.0.1", &broker.port().to_string()])
                .output()
                .expect("run node");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(": ok"),
                "{shards} shard(s): the browser test failed:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}
