// The plain `test`: this spec expects a Content-Security-Policy violation, the blocked frame.
import { expect, test } from "@playwright/test";
import { ADMIN, ADMIN_PASSWORD, login } from "./support";

test("a page of another site cannot frame the admin's device list", async ({ page }) => {
  await login(page, ADMIN, ADMIN_PASSWORD);
  const app = new URL(page.url());
  // Same site (same host, another port), so the admin's session cookie would go along.
  const framer = `${app.protocol}//${app.hostname}:${Number(app.port || 80) + 1}/framer`;
  await page.route(framer, (route) =>
    route.fulfill({
      contentType: "text/html",
      body: `<!DOCTYPE html><title>Framer</title>
             <iframe id="victim" src="${app.origin}/admin/devices" width="900" height="600"></iframe>`,
    }),
  );
  const refusals: string[] = [];
  page.on("console", (message) => {
    if (/frame-ancestors/.test(message.text())) refusals.push(message.text());
  });
  await page.goto(framer);
  // The browser refused the frame (the policy was there and was applied)...
  await expect.poll(() => refusals.length, { message: "a frame-ancestors refusal" }).toBeGreaterThan(0);
  // ...so nothing of the device list is in it: no heading, no delete button to click.
  const frame = page.frameLocator("#victim");
  await expect(frame.getByRole("heading", { name: "Devices" })).toHaveCount(0);
  await expect(frame.getByRole("button", { name: /Delete/ })).toHaveCount(0);
});
