import { randomUUID } from "node:crypto";
import { expect, test } from "./fixtures";
import { LiveServer, open, simulate } from "./support";

const MINUTE = 60_000;

/**
 * The classic dead letter, on RabbitMQ: a meter sends before its device is registered, its
 * readings land under "Dead letters"; the admin creates the device with the meter's id and
 * replays them, and they are stored.
 */
test("readings of an unregistered meter are replayed once the admin registers it", async ({ page }) => {
  test.setTimeout(120_000);
  const server = await LiveServer.create();
  await server.start();
  try {
    const base = server.url;
    const meter = randomUUID();
    const t0 = Math.floor(Date.now() / MINUTE) * MINUTE - 10 * MINUTE;
    await simulate(server.queues, meter, [[t0, 5.0], [t0 + MINUTE, 5.05], [t0 + 2 * MINUTE, 5.1]]);

    await open(page, `${base}/login`);
    await page.fill("#login-username", "live-admin");
    await page.fill("#login-password", "live-admin-password");
    await page.click("button[type=submit]");
    await expect(page).not.toHaveURL(/\/login/);

    // The consumer refuses them and the dead-letter drain keeps them: the page shows the group.
    const groups = page.getByTestId("dead-letter-groups");
    await expect(async () => {
      await open(page, `${base}/admin/dead-letters`);
      const row = groups.getByRole("row", { name: /no device has this meter id/ });
      await expect(row.locator("td.num").first()).toHaveText("3", { timeout: 1_000 });
    }).toPass({ timeout: 30_000 });
    await groups.getByRole("link", { name: "no device has this meter id" }).click();
    const letters = page.getByTestId("dead-letters");
    await expect(letters.locator("pre.body")).toHaveCount(3);
    await expect(letters).toContainText(`"sensor_id":"${meter}"`);

    // Ticking none and replaying says what to do.
    await letters.getByRole("button", { name: "Replay ticked" }).click();
    await expect(letters).toContainText("Tick at least one message to replay");

    // The admin registers the meter under its own id.
    await open(page, `${base}/admin/devices/new`);
    await page.fill("#description", "Early meter");
    await page.fill("#address", "Str. Observatorului 34, Cluj-Napoca");
    await page.fill("#max_power_kw", "10");
    await page.fill("#meter_id", meter);
    await page.getByRole("button", { name: "Create device" }).click();
    await expect(page).toHaveURL(new RegExp(`/admin/devices/${meter}\\?created=1$`));

    // Replay all: stored, and the group is gone.
    await open(page, `${base}/admin/dead-letters?reason=unknown_device`);
    await page.getByRole("button", { name: "Replay all of this reason" }).click();
    await expect(page.getByTestId("replay-report")).toHaveText("Replayed 3 dead letters: 3 stored.");
    await expect(page.getByText("No dead letters: every message so far was stored.")).toBeVisible();
    await expect(page.getByText("No dead letters of this reason are left.")).toBeVisible();

    // The device's card shows the last of the replayed readings.
    await open(page, `${base}/admin/live`);
    await expect(page.getByTestId("device-card").filter({ hasText: "Early meter" }).getByTestId("last-reading"))
      .toContainText("Register 5.1 kWh");
  } finally {
    await server.dispose();
  }
});
