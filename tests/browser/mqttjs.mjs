// MQTT.js (its browser bundle) in headless Chromium, driven by Playwright: a page connects to
// ws://HOST:PORT/mqtt, subscribes, publishes at QoS 0, 1 and 2 (one payload of 64 KiB), and receives
// each message back. Prints the outcome; exits 0 only if every message arrived intact.
// Usage: node tests/browser/mqttjs.mjs HOST PORT   (CHROMIUM: the browser, default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { fileURLToPath } from "node:url";
import path from "node:path";

const [host, port] = process.argv.slice(2);
if (!host || !port) {
  console.error("usage: mqttjs.mjs HOST PORT");
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = path.join(here, "node_modules/mqtt/dist/mqtt.min.js");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As root in a container, without a GPU, and without reaching out to Google's hosts.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page: ${m.text()}`));
  await page.addScriptTag({ path: bundle });
  const result = await page.evaluate(
    async ({ url }) => {
      const client = mqtt.connect(url, {
        clientId: "browser-" + Math.random().toString(16).slice(2, 10),
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 10000,
      });
      const ready = new Promise((resolve, reject) => {
        client.on("connect", resolve);
        client.on("error", (e) => reject(new Error("connect: " + e.message)));
      });
      await ready;
      const topic = "browser/" + Math.random().toString(16).slice(2, 10);
      const received = [];
      const done = new Promise((resolve) => {
        client.on("message", (t, payload, packet) => {
          received.push({ topic: t, length: payload.length, first: payload[0], last: payload[payload.length - 1], qos: packet.qos });
          if (received.length === 3) resolve();
        });
      });
      await client.subscribeAsync(topic + "/#", { qos: 2 });
      const big = new Uint8Array(65536).map((_, i) => i % 251);
      await client.publishAsync(topic + "/0", "zero", { qos: 0 });
      await client.publishAsync(topic + "/1", "one", { qos: 1 });
      await client.publishAsync(topic + "/2", big, { qos: 2 });
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timed out waiting for messages: got " + JSON.stringify(received))), 10000));
      await Promise.race([done, timeout]);
      await client.endAsync();
      return { topic, received };
    },
    { url: `ws://${host}:${port}/mqtt` }
  );
  const want = [
    { topic: result.topic + "/0", length: 4, qos: 0 },
    { topic: result.topic + "/1", length: 3, qos: 1 },
    { topic: result.topic + "/2", length: 65536, qos: 2, first: 0, last: 65535 % 251 },
  ];
  for (const [i, w] of want.entries()) {
    const got = result.received[i];
    for (const key of Object.keys(w)) {
      if (!got || got[key] !== w[key]) {
        console.error(`message ${i}: ${key} is ${got && got[key]}, want ${w[key]} (${JSON.stringify(got)})`);
        failed = true;
      }
    }
  }
  if (!failed) console.log("mqttjs.mjs: 3 messages through shardmq from the browser: ok");
} catch (e) {
  console.error("mqttjs.mjs: " + e.message);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
