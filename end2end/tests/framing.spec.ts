// The plain `test`: this spec expects a Content-Security-Policy refusal, the blocked frame.
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
  // The admin's page is sent with a policy that forbids framing...
  const direct = await page.request.get(`${app.origin}/admin/devices`, { headers: { accept: "text/html" } });
  expect(direct.status()).toBe(200);
  expect(direct.headers()["content-security-policy"]).toContain("frame-ancestors 'none'");
  await page.goto(framer);
  // ...and the browser refused to show it in the frame (its error page took the frame's place).
  await expect
    .poll(() => page.frames().map((f) => f.url()), { message: "the frame's document" })
    .toContain("chrome-error://chromewebdata/");
  // ...so nothing of the device list is in it: no heading, no delete button to click.
  const frame = page.frameLocator("#victim");
  await expect(frame.getByRole("heading", { name: "Devices" })).toHaveCount(0);
  await expect(frame.getByRole("button", { name: /Delete/ })).toHaveCount(0);
});
