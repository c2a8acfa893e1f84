import { expect, Page } from "@playwright/test";

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
