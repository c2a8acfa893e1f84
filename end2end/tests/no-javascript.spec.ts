import { expect, test } from "@playwright/test";
import { ADMIN, ADMIN_PASSWORD, CLIENT_PASSWORD, createClient, createDevice, login, unique } from "./support";

test("pages work, and lists are in the server-rendered HTML, with JavaScript disabled", async ({ browser }) => {
  // Set up with JavaScript on.
  const setup = await browser.newPage();
  const username = unique("nojs");
  const description = unique("Water heater");
  await login(setup, ADMIN, ADMIN_PASSWORD);
  await createClient(setup, username, "Nadia NoJS");
  await createDevice(setup, description);
  await setup.selectOption("#client_id", { label: `Nadia NoJS (${username})` });
  await setup.getByRole("button", { name: "Assign" }).click();
  await expect(setup.getByTestId("device-owner")).toContainText("Nadia NoJS");
  await setup.close();

  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  // The login form is a plain HTML form that posts and redirects.
  await page.goto("/login");
  await page.fill("#login-username", username);
  await page.fill("#login-password", CLIENT_PASSWORD);
  await page.click("button[type=submit]");
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("my-devices")).toContainText(description);

  // The same, straight from the server's HTML.
  const html = await (await page.request.get("/dashboard", { headers: { accept: "text/html" } })).text();
  expect(html).toContain(description);
  await context.close();

  const admin = await browser.newContext({ javaScriptEnabled: false });
  const adminPage = await admin.newPage();
  await adminPage.goto("/login");
  await adminPage.fill("#login-username", ADMIN);
  await adminPage.fill("#login-password", ADMIN_PASSWORD);
  await adminPage.click("button[type=submit]");
  await expect(adminPage).toHaveURL(/\/admin\/accounts$/);
  await adminPage.goto("/admin/devices");
  await expect(adminPage.getByTestId("devices-table")).toContainText(description);
  await admin.close();
});
