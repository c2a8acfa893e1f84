import { Page } from "@playwright/test";
import { expect, test } from "./fixtures";
import { CLIENT_PASSWORD, LiveServer, call, open, simulate, unique } from "./support";

const MINUTE = 60_000;

/**
 * The live dashboard against a server of its own, on RabbitMQ: a peak published by the
 * simulator reaches its owner's open page as a toast and a badge without a reload, survives a
 * server restart, and reaches no one else.
 */

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
  const server = await LiveServer.create();
  const queues = server.queues;
  await server.start();
  try {
    const base = server.url;
    const api = await playwright.request.newContext();
    await server.signInAdmin(api);
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
    await expect(badge).toBeHidden();
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
    await expect(otherPage.getByTestId("unread-count")).toBeHidden();
    await expect(otherPage.getByTestId("toast")).toHaveCount(0);
    await expect(otherPage.locator("body")).not.toContainText("Heat pump");
    await otherPage.reload();
    await expect(otherPage.getByTestId("unread-count")).toBeHidden();
    await expect(otherPage.getByTestId("unread-count")).toHaveText("0");
    await api.dispose();
  } finally {
    await server.dispose();
  }
});
