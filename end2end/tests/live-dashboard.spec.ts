import { expect, test, APIRequestContext, Page } from "@playwright/test";
import { ChildProcess, spawn, execFile } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { CLIENT_PASSWORD, open, unique } from "./support";

/**
 * The live dashboard against a server of its own, on RabbitMQ: a peak published by the
 * simulator reaches its owner's open page as a toast and a badge without a reload, survives a
 * server restart, and reaches no one else.
 */

const SERVER = process.env.E2E_SERVER_BIN ?? "../target/release/server";
const SIMULATOR = process.env.E2E_SIMULATOR_BIN ?? "../target/release/simulator";
const SITE_ROOT = process.env.E2E_SITE_ROOT ?? "../target/site";
const AMQP_URL = process.env.E2E_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";
const ADMIN = "live-admin";
const ADMIN_PASSWORD = "live-admin-password";
const MINUTE = 60_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject()));
    });
  });
}

/** A server process of this spec's own: its own SQLite file, queue names and port. */
class LiveServer {
  process?: ChildProcess;
  constructor(readonly port: number, readonly env: Record<string, string>) {}

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const output: string[] = [];
    this.process = spawn(SERVER, [], {
      env: { ...process.env, ...this.env, LEPTOS_SITE_ADDR: `127.0.0.1:${this.port}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process.stdout?.on("data", (d) => output.push(String(d)));
    this.process.stderr?.on("data", (d) => output.push(String(d)));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`the live server did not become healthy: ${output.join("")}`);
  }

  async stop() {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

/** Publishes `timestamp,value` readings of one meter through the simulator. */
function simulate(env: Record<string, string>, device: string, readings: [number, number][]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "energy-e2e-"));
  const csv = join(dir, "meter.csv");
  writeFileSync(csv, readings.map(([t, v]) => `${t},${v}`).join("\n") + "\n");
  return new Promise((resolve, reject) => {
    execFile(
      SIMULATOR,
      ["publish", "--device", device, "--csv", csv, "--burst", "--quiet"],
      { env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        rmSync(dir, { recursive: true, force: true });
        if (error) reject(new Error(`simulator failed: ${error.message}\n${stdout}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

async function call(api: APIRequestContext, base: string, name: string, form: Record<string, string>) {
  const response = await api.post(`${base}/api/${name}`, { form, headers: { origin: base } });
  expect(response.ok(), `${name}: ${response.status()} ${await response.text()}`).toBeTruthy();
  return response.json().catch(() => null);
}

async function signIn(page: Page, base: string, username: string) {
  await open(page, `${base}/login`);
  await page.fill("#login-username", username);
  await page.fill("#login-password", CLIENT_PASSWORD);
  await page.click("button[type=submit]");
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.locator("body[data-hydrated]")).toBeAttached();
  await expect(page.getByTestId("connection")).toHaveText("Live");
}

test("a peak reaches its owner's open dashboard at once, across a restart, and no one else", async ({ browser, playwright }) => {
  test.setTimeout(180_000);
  const prefix = `e2e-${randomUUID()}`;
  const queues = {
    AMQP_URL,
    AMQP_EXCHANGE: `${prefix}.readings`,
    AMQP_QUEUE: `${prefix}.readings`,
    AMQP_DEAD_LETTER_EXCHANGE: `${prefix}.dead-letter`,
    AMQP_DEAD_LETTER_QUEUE: `${prefix}.dead-letter`,
  };
  const db = mkdtempSync(join(tmpdir(), "energy-live-"));
  const server = new LiveServer(await freePort(), {
    ...queues,
    AMQP_EVENTS_EXCHANGE: `${prefix}.events`,
    DATABASE_URL: `sqlite://${join(db, "energy.db")}?mode=rwc`,
    LEPTOS_SITE_ROOT: SITE_ROOT,
    ADMIN_USERNAME: ADMIN,
    ADMIN_PASSWORD,
    RUST_LOG: "warn",
  });
  await server.start();
  try {
    const base = server.url;
    const api = await playwright.request.newContext();
    await call(api, base, "login", { username: ADMIN, password: ADMIN_PASSWORD });
    const owner = unique("live-owner");
    const other = unique("live-other");
    const ownerId = (await call(api, base, "create_account", {
      username: owner, display_name: "Livia Live", password: CLIENT_PASSWORD,
    })).id;
    const otherId = (await call(api, base, "create_account", {
      username: other, display_name: "Otto Other", password: CLIENT_PASSWORD,
    })).id;
    const device = (await call(api, base, "create_device", {
      description: "Heat pump", address: "Str. Observatorului 34", max_power_kw: "4.5", owner_id: ownerId,
    })).id;
    await call(api, base, "create_device", {
      description: "Otto's boiler", address: "Str. Memorandumului 1", max_power_kw: "3", owner_id: otherId,
    });

    const ownerPage = await (await browser.newContext()).newPage();
    const otherPage = await (await browser.newContext()).newPage();
    await signIn(ownerPage, base, owner);
    await signIn(otherPage, base, other);
    const badge = ownerPage.getByTestId("unread-count");
    await expect(badge).toHaveText("");
    const card = ownerPage.getByTestId("device-card");
    await expect(card.getByTestId("last-reading")).toHaveText("No reading yet");

    // One-minute readings: 0.02 kWh (1.2 kW), then 0.2 kWh in a minute: 12 kW over 4.5 kW.
    const t0 = Math.floor(Date.now() / 1000) * 1000 - 4 * MINUTE;
    await simulate(queues, device, [[t0, 10.0], [t0 + MINUTE, 10.02], [t0 + 2 * MINUTE, 10.22]]);
    const toast = ownerPage.getByTestId("toast");
    await expect(toast).toBeVisible({ timeout: 2_000 });
    await expect(toast).toContainText("Heat pump");
    await expect(toast).toContainText("12 kW");
    await expect(toast).toContainText("limit 4.5 kW");
    await expect(badge).toHaveText("1");
    await expect(card.getByTestId("last-reading")).toContainText("Register 10.22 kWh");
    await expect(card.getByTestId("power")).toHaveText("12 kW");
    await expect(card.getByTestId("device-state")).toHaveText("Peak");

    // The server restarts; a peak arrives while it is down and is raised as it comes back.
    await server.stop();
    await expect(ownerPage.getByTestId("connection")).toHaveText("Reconnecting…");
    await simulate(queues, device, [[t0 + 3 * MINUTE, 10.24], [t0 + 4 * MINUTE, 10.54]]);
    await server.start();
    await expect(ownerPage.getByTestId("connection")).toHaveText("Live", { timeout: 45_000 });
    await expect(badge).toHaveText("2", { timeout: 10_000 });
    await expect(card.getByTestId("last-reading")).toContainText("Register 10.54 kWh");
    await ownerPage.getByRole("link", { name: /Alerts/ }).click();
    await expect(ownerPage.getByTestId("alert-row")).toHaveCount(2);
    await expect(ownerPage.getByTestId("alerts-table")).toContainText("18 kW");

    // The other client heard nothing of it.
    await expect(otherPage.getByTestId("unread-count")).toHaveText("");
    await expect(otherPage.getByTestId("toast")).toHaveCount(0);
    await expect(otherPage.locator("body")).not.toContainText("Heat pump");
    await otherPage.reload();
    await expect(otherPage.getByTestId("unread-count")).toHaveText("");
    await api.dispose();
  } finally {
    await server.stop();
    rmSync(db, { recursive: true, force: true });
  }
});
