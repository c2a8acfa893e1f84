import { expect, test } from "./fixtures";
import {
  ADMIN, ADMIN_PASSWORD, CLIENT_PASSWORD, assignTo, createClient, createDevice, login, logout, open,
  unique,
} from "./support";

test("an admin creates a client and a device and assigns it; only that client sees it", async ({ page }) => {
  const owner = unique("owner");
  const other = unique("other");
  const description = unique("Heat pump");

  await login(page, ADMIN, ADMIN_PASSWORD);
  await expect(page).toHaveURL(/\/admin\/accounts$/);
  await createClient(page, owner, "Olivia Owner");
  await createClient(page, other, "Oscar Other");
  const deviceId = await createDevice(page, description);

  await assignTo(page, "Olivia Owner", owner);
  await expect(page.getByTestId("device-notice")).toHaveText(`Assigned to Olivia Owner (${owner}).`);

  // The navigation reaches both admin lists; the list names the client with their username.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Devices" }).click();
  await expect(page).toHaveURL(/\/admin\/devices$/);
  await expect(page.getByTestId("devices-table")).toContainText(description);
  await expect(page.getByTestId("devices-table").getByRole("row", { name: new RegExp(description) }))
    .toContainText(`Olivia Owner (${owner})`);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Accounts" }).click();
  await expect(page.getByRole("heading", { name: "Accounts" })).toBeVisible();
  await expect(page.getByTestId("accounts-table")).toContainText(owner);
  await logout(page);

  await login(page, owner, CLIENT_PASSWORD);
  await expect(page).toHaveURL(/\/dashboard$/);
  const cards = page.getByTestId("my-devices");
  await expect(cards).toContainText(description);
  await expect(cards).toContainText(deviceId);
  await expect(cards).toContainText("4.5 kW");
  await logout(page);

  await login(page, other, CLIENT_PASSWORD);
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("no-devices")).toBeVisible();
  await expect(page.locator("body")).not.toContainText(description);
});

test("signing out ends the session: the back button shows nothing private", async ({ page }) => {
  const username = unique("backbtn");
  const description = unique("Sauna heater");
  await login(page, ADMIN, ADMIN_PASSWORD);
  await createClient(page, username, "Bea Back");
  await createDevice(page, description);
  await assignTo(page, "Bea Back", username);
  await logout(page);

  await login(page, username, CLIENT_PASSWORD);
  await expect(page.getByTestId("my-devices")).toContainText(description);
  await logout(page);

  await page.goBack();
  await expect(page.locator("body")).not.toContainText(description);
  await expect(page).toHaveURL(/\/login/);
  await page.goto("/dashboard");
  await expect(page).toHaveURL(/\/login\?next=\/dashboard$/);
  await expect(page.locator("body")).not.toContainText(description);
});

test("a client is told they are not allowed into the admin area", async ({ page }) => {
  const username = unique("nosy");
  await login(page, ADMIN, ADMIN_PASSWORD);
  await createClient(page, username, "Nora Nosy");
  await logout(page);
  await login(page, username, CLIENT_PASSWORD);
  const response = await page.goto("/admin/accounts");
  expect(response?.status()).toBe(403);
  await expect(page.getByRole("heading", { name: "Not allowed" })).toBeVisible();
});

test("validation errors are shown next to the fields", async ({ page }) => {
  await login(page, ADMIN, ADMIN_PASSWORD);
  await open(page, "/admin/devices/new");
  await page.fill("#description", "   ");
  await page.fill("#address", "Somewhere 1");
  await page.fill("#max_power_kw", "abc");
  await page.getByRole("button", { name: "Create device" }).click();
  await expect(page.locator('#description ~ .field-error[data-field="description"]')).toHaveText(
    "Description is required.",
  );
  await expect(page.locator('#max_power_kw ~ .field-error[data-field="max_power_kw"]')).toHaveText(
    "Maximum power must be a number of kW, for example 7.5 or 7,5.",
  );
  await expect(page.locator('.field-error[data-field="address"]')).toHaveCount(0);
  await expect(page).toHaveURL(/\/admin\/devices\/new$/);
  // The fields named are highlighted, the others not, and the first one has the focus.
  await expect(page.locator("#description")).toHaveAttribute("aria-invalid", "true");
  await expect(page.locator("#max_power_kw")).toHaveAttribute("aria-invalid", "true");
  await expect(page.locator("#address")).not.toHaveAttribute("aria-invalid", "true");
  await expect(page.locator("#description")).toBeFocused();

  await page.fill("#description", "Boiler");
  await page.fill("#max_power_kw", "-3");
  await page.getByRole("button", { name: "Create device" }).click();
  await expect(page.locator('.field-error[data-field="max_power_kw"]')).toHaveText(
    "Maximum power must be from 0.001 to 100 000 kW.",
  );
  await expect(page.locator("#description")).not.toHaveAttribute("aria-invalid", "true");
  await expect(page.locator("#max_power_kw")).toBeFocused();

  const taken = unique("taken");
  await createClient(page, taken, "Tara Taken");
  await open(page, "/admin/accounts/new");
  await page.fill("#username", taken.toUpperCase());
  await page.fill("#display_name", "Someone Else");
  await page.fill("#password", "short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.locator('#password ~ .field-error[data-field="password"]')).toHaveText(
    "Password must be at least 8 characters.",
  );
  await expect(page.locator('.field-error[data-field="username"]')).toHaveCount(0);
  await page.fill("#password", "long-enough-password");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.locator('#username ~ .field-error[data-field="username"]')).toHaveText(
    "This username is already taken.",
  );
  await expect(page.locator('.field-error[data-field="password"]')).toHaveCount(0);
});

test("a failed sign-in says so without telling whether the user exists", async ({ page }) => {
  await open(page, "/login");
  await page.fill("#login-username", unique("ghost"));
  await page.fill("#login-password", "whatever-password");
  await page.click("button[type=submit]");
  await expect(page.getByRole("alert")).toHaveText("Invalid username or password.");
  await expect(page).toHaveURL(/\/login$/);
});

test("the device id can be copied for the meter's sensor_id", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await login(page, ADMIN, ADMIN_PASSWORD);
  const id = await createDevice(page, unique("Copy me"));
  await page.getByRole("button", { name: "Copy" }).click();
  await expect(page.locator(".copy-status")).toHaveText("Copied");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(id);
});

test("a client changes their own password from the account page", async ({ page }) => {
  const client = unique("changer");
  await login(page, ADMIN, ADMIN_PASSWORD);
  await createClient(page, client, "Chris Changer");
  await logout(page);

  await login(page, client, CLIENT_PASSWORD);
  await page.getByRole("link", { name: "Chris Changer" }).click();
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByTestId("my-username")).toHaveText(client);
  const newPassword = "a-brand-new-password";
  await page.fill("#current", "not-my-password");
  await page.fill("#new", newPassword);
  await page.fill("#confirm", newPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.locator('.field-error[data-field="current"]')).toHaveText("This is not your current password.");
  await expect(page.locator("#current")).toBeFocused();

  await page.fill("#current", CLIENT_PASSWORD);
  await page.fill("#new", newPassword);
  await page.fill("#confirm", newPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByText("Password changed.")).toBeVisible();
  await expect(page.locator("#current")).toHaveValue("");

  await logout(page);
  await login(page, client, newPassword);
  await expect(page).toHaveURL(/\/dashboard$/);
});
