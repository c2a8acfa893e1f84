import { expect, APIRequestContext, Page } from "@playwright/test";
import { ChildProcess, spawn, execFile } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

export const ADMIN = process.env.E2E_ADMIN_USERNAME ?? "admin";
export const ADMIN_PASSWORD = process.env.E2E_ADMIN_PASSWORD ?? "e2e-admin-password";
export const CLIENT_PASSWORD = "client-pass-123";

/** A name no earlier run used. */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
}

/** Loads a page and waits until the wasm bundle has hydrated it. */
export async function open(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator("body[data-hydrated]")).toBeAttached();
}

export async function login(page: Page, username: string, password: string) {
  await open(page, "/login");
  await page.fill("#login-username", username);
  await page.fill("#login-password", password);
  await page.click("button[type=submit]");
  await expect(page).not.toHaveURL(/\/login/);
}

export async function logout(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
}

/** Creates a client account through the admin pages; returns nothing, the username is known. */
export async function createClient(page: Page, username: string, displayName: string) {
  await open(page, "/admin/accounts/new");
  await page.fill("#username", username);
  await page.fill("#display_name", displayName);
  await page.fill("#password", CLIENT_PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/admin\/accounts\/[0-9a-f-]{36}\?created=1$/);
  await expect(page.getByText("Account created.")).toBeVisible();
}

/** Creates a device through the admin pages and returns its id. */
export async function createDevice(page: Page, description: string, maxPower = "4.5"): Promise<string> {
  await open(page, "/admin/devices/new");
  await page.fill("#description", description);
  await page.fill("#address", "Str. Observatorului 34, Cluj-Napoca");
  await page.fill("#max_power_kw", maxPower);
  await page.getByRole("button", { name: "Create device" }).click();
  await expect(page).toHaveURL(/\/admin\/devices\/[0-9a-f-]{36}\?created=1$/);
  const id = (await page.getByTestId("device-id").textContent())?.trim() ?? "";
  expect(id).toMatch(/^[0-9a-f-]{36}$/);
  return id;
}

/** On a device page: assigns the device to the client shown as "displayName (username)". */
export async function assignTo(page: Page, displayName: string, username: string) {
  await page.selectOption("#client_id", { label: `${displayName} (${username})` });
  await page.getByRole("button", { name: "Assign" }).click();
  await expect(page.getByTestId("device-owner")).toContainText(displayName);
}

/** Signs in through the plain HTML form: no script involved, for JavaScript-disabled pages. */
export async function loginWithoutScript(page: Page, username: string, password: string) {
  await page.goto("/login");
  await page.fill("#login-username", username);
  await page.fill("#login-password", password);
  await page.click("button[type=submit]");
}

const SERVER = process.env.E2E_SERVER_BIN ?? "../target/release/server";
const SIMULATOR = process.env.E2E_SIMULATOR_BIN ?? "../target/release/simulator";
export const SITE_ROOT = process.env.E2E_SITE_ROOT ?? "../target/site";
const AMQP_URL = process.env.E2E_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";
const LIVE_ADMIN = "live-admin";
const LIVE_ADMIN_PASSWORD = "live-admin-password";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject()));
    });
  });
}

/**
 * A server process of a spec's own, on RabbitMQ: its own SQLite file, queue names and port, so
 * that the simulator can feed it and the spec can restart it.
 */
export class LiveServer {
  process?: ChildProcess;
  constructor(
    readonly port: number,
    readonly env: Record<string, string>,
    readonly queues: Record<string, string>,
    readonly dir: string,
  ) {}

  static async create(): Promise<LiveServer> {
    const prefix = `e2e-${randomUUID()}`;
    const queues = {
      AMQP_URL,
      AMQP_EXCHANGE: `${prefix}.readings`,
      AMQP_QUEUE: `${prefix}.readings`,
      AMQP_DEAD_LETTER_EXCHANGE: `${prefix}.dead-letter`,
      AMQP_DEAD_LETTER_QUEUE: `${prefix}.dead-letter`,
    };
    const dir = mkdtempSync(join(tmpdir(), "energy-e2e-"));
    const env = {
      ...queues,
      AMQP_EVENTS_EXCHANGE: `${prefix}.events`,
      DATABASE_URL: `sqlite://${join(dir, "energy.db")}?mode=rwc`,
      LEPTOS_SITE_ROOT: SITE_ROOT,
      ADMIN_USERNAME: LIVE_ADMIN,
      ADMIN_PASSWORD: LIVE_ADMIN_PASSWORD,
      RUST_LOG: "warn",
    };
    return new LiveServer(await freePort(), env, queues, dir);
  }

  async signInAdmin(api: APIRequestContext) {
    await call(api, this.url, "login", { username: LIVE_ADMIN, password: LIVE_ADMIN_PASSWORD });
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

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
export function simulate(env: Record<string, string>, device: string, readings: [number, number][]): Promise<string> {
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

export async function call(api: APIRequestContext, base: string, name: string, form: Record<string, string>) {
  const response = await api.post(`${base}/api/${name}`, { form, headers: { origin: base } });
  expect(response.ok(), `${name}: ${response.status()} ${await response.text()}`).toBeTruthy();
  return response.json().catch(() => null);
}

