import { expect, test } from "./fixtures";
import { readFileSync } from "node:fs";
import { CLIENT_PASSWORD, LiveServer, call, open, simulate, unique } from "./support";

/**
 * Consumption history: a client opens a device with readings on a chosen day, sees the hours
 * and the total (and the hour that held a peak), switches to the month and back, downloads the
 * CSV; another client cannot open it.
 */

const MINUTE = 60_000;

test("a client reads a day's hours and a month's days of their device; another cannot", async ({ browser, playwright }) => {
  test.setTimeout(120_000);
  const server = await LiveServer.create();
  await server.start();
  try {
    const base = server.url;
    const api = await playwright.request.newContext();
    await server.signInAdmin(api);
    const owner = unique("hist-owner");
    const other = unique("hist-other");
    const ownerId = (await call(api, base, "create_account", {
      username: owner, display_name: "Hanna History", password: CLIENT_PASSWORD,
    })).id;
    await call(api, base, "create_account", {
      username: other, display_name: "Otto Other", password: CLIENT_PASSWORD,
    });
    const device = (await call(api, base, "create_device", {
      description: "Water heater", address: "Str. Horea 3", max_power_kw: "5", owner_id: ownerId,
    })).id;

    // 10 November 2026 in Bucharest (UTC+2): 00:00 local is 22:00 UTC on the 9th. Readings
    // every 10 minutes from 22:00 local on the 9th to midnight after the 10th, 0.1 kWh each,
    // except 18:00–18:10 on the 10th: 1 kWh (6 kW over a 5 kW maximum).
    const dayStart = Date.UTC(2026, 10, 9, 22, 0);
    const readings: [number, number][] = [];
    let kwh = 200;
    for (let t = dayStart - 2 * 60 * MINUTE; t <= dayStart + 24 * 60 * MINUTE; t += 10 * MINUTE) {
      readings.push([t, Math.round(kwh * 10) / 10]);
      kwh += t === dayStart + 18 * 60 * MINUTE ? 1.0 : 0.1;
    }
    await simulate(server.queues, device, readings);
    // Wait until the server has stored them all. The admin's requests name no time zone, so
    // this is the UTC day: 22 hours of readings, 14.1 kWh.
    await expect
      .poll(async () => {
        const day = await (await api.post(`${base}/api/device_day`, {
          form: { id: device, date: "2026-11-10" },
          headers: { origin: base },
        })).json();
        return Math.round(day.total_kwh * 10) / 10;
      }, { timeout: 20_000 })
      .toBe(14.1);

    const context = await browser.newContext({ timezoneId: "Europe/Bucharest", acceptDownloads: true });
    const page = await context.newPage();
    await open(page, `${base}/login`);
    await page.fill("#login-username", owner);
    await page.fill("#login-password", CLIENT_PASSWORD);
    await page.click("button[type=submit]");
    await expect(page).toHaveURL(/\/dashboard$/);
    await expect(page.locator("body[data-hydrated]")).toBeAttached();
    await page.getByTestId("history-link").click();
    await expect(page).toHaveURL(new RegExp(`/devices/${device}/day$`));
    await expect(page.getByTestId("chart")).toBeVisible();

    // The day picker (a plain GET form) takes the page to the 10th.
    await page.fill("#period", "2026-11-10");
    await page.getByRole("button", { name: "Show" }).click();
    await expect(page).toHaveURL(/day\?date=2026-11-10$/);
    await expect(page.getByRole("heading", { name: "Tuesday 10 November 2026" })).toBeVisible();
    const bars = page.locator(".chart-plot .bar");
    await expect(bars).toHaveCount(24);
    // 23 hours of 0.6 kWh and one of 0.5 + 1.0.
    await expect(page.getByTestId("total")).toHaveText("15.3 kWh");
    await expect(bars.nth(18)).toHaveAttribute("data-peak", "true");
    await expect(page.locator(".chart-plot .bar[data-peak]")).toHaveCount(1);
    await expect(page.getByTestId("partial-data")).toHaveCount(0);
    await bars.nth(18).hover();
    await expect(page.locator(".chart-detail")).toHaveText("18:00–19:00 EET · 1.5 kWh · peak");

    // The month, and back by its bar for the 10th.
    await page.getByRole("link", { name: "Month", exact: true }).click();
    await expect(page).toHaveURL(/month\?month=2026-11$/);
    await expect(page.getByRole("heading", { name: "November 2026" })).toBeVisible();
    const days = page.locator(".chart-plot .bar");
    await expect(days).toHaveCount(30);
    await expect(days.nth(8)).toHaveAttribute("data-coverage", "partial");
    await expect(days.nth(9)).toHaveAttribute("data-coverage", "full");
    await expect(days.nth(10)).toHaveAttribute("data-coverage", "missing");
    await expect(page.getByTestId("partial-data")).toBeVisible();
    await days.nth(9).click();
    await expect(page).toHaveURL(/day\?date=2026-11-10$/);
    await expect(page.getByTestId("total")).toHaveText("15.3 kWh");

    // The CSV of the day.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: "Download CSV" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`energy-${device}-2026-11-10.csv`);
    const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
    expect(csv[0]).toBe("period,start_utc,kwh,partial,no_data,peak");
    expect(csv).toHaveLength(25);
    expect(csv[19]).toBe("2026-11-10 18:00 EET,2026-11-10T16:00:00Z,1.500,false,false,true");

    // Another client gets "not found", for the page and for the CSV.
    const stranger = await (await browser.newContext()).newPage();
    await open(stranger, `${base}/login`);
    await stranger.fill("#login-username", other);
    await stranger.fill("#login-password", CLIENT_PASSWORD);
    await stranger.click("button[type=submit]");
    await expect(stranger).toHaveURL(/\/dashboard$/);
    await stranger.goto(`${base}/devices/${device}/day?date=2026-11-10`);
    await expect(stranger.getByRole("alert")).toContainText("Not found.");
    await expect(stranger.locator("body")).not.toContainText("Water heater");
    const refused = await stranger.request.get(`${base}/devices/${device}/day.csv?date=2026-11-10`);
    expect(refused.status()).toBe(404);
    await api.dispose();
  } finally {
    await server.dispose();
  }
});
