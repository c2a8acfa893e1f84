import { expect, test } from "./fixtures";
import {
  ADMIN, ADMIN_PASSWORD, CLIENT_PASSWORD, assignTo, createClient, createDevice, login, loginWithoutScript,
  unique,
} from "./support";

test("pages work, and lists are in the server-rendered HTML, with JavaScript disabled", async ({ browser }) => {
  // Set up with JavaScript on.
  const setup = await browser.newPage();
  const username = unique("nojs");
  const description = unique("Water heater");
  await login(setup, ADMIN, ADMIN_PASSWORD);
  await createClient(setup, username, "Nadia NoJS");
  await createDevice(setup, description);
  await assignTo(setup, "Nadia NoJS", username);
  await setup.close();

  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  // The login form is a plain HTML form that posts and redirects.
  await loginWithoutScript(page, username, CLIENT_PASSWORD);
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("my-devices")).toContainText(description);

  // The same, straight from the server's HTML.
  const html = await (await page.request.get("/dashboard", { headers: { accept: "text/html" } })).text();
  expect(html).toContain(description);
  await context.close();

  const admin = await browser.newContext({ javaScriptEnabled: false });
  const adminPage = await admin.newPage();
  await loginWithoutScript(adminPage, ADMIN, ADMIN_PASSWORD);
  await expect(adminPage).toHaveURL(/\/admin\/accounts$/);
  await adminPage.goto("/admin/devices");
  await expect(adminPage.getByTestId("devices-table")).toContainText(description);
  await admin.close();
});
