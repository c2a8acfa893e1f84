import { test as base, expect, Browser, BrowserContext, Page } from "@playwright/test";

/**
 * `test` for every spec: a test fails if any page it opened, in any browser context, reported a
 * Content-Security-Policy violation (a blocked script, style, connection or frame), so a policy
 * that breaks hydration or the live socket is caught even where the page still looks right.
 */
export const test = base.extend<{ cspViolations: string[] }>({
  cspViolations: [
    async ({ browser, context }, use) => {
      const violations: string[] = [];
      const watchPage = (page: Page) =>
        page.on("console", (message) => {
          if (/Content Security Policy/i.test(message.text())) {
            violations.push(`${page.url()}: ${message.text()}`);
          }
        });
      const watch = (c: BrowserContext) => {
        c.pages().forEach(watchPage);
        c.on("page", watchPage);
        return c;
      };
      watch(context);
      // Contexts and pages the spec makes itself (other users, JavaScript off).
      const { newContext, newPage } = browser;
      browser.newContext = (async (...args: Parameters<Browser["newContext"]>) =>
        watch(await newContext.apply(browser, args))) as Browser["newContext"];
      browser.newPage = (async (...args: Parameters<Browser["newPage"]>) => {
        const page = await newPage.apply(browser, args);
        watchPage(page);
        return page;
      }) as Browser["newPage"];
      try {
        await use(violations);
      } finally {
        browser.newContext = newContext;
        browser.newPage = newPage;
      }
      expect(violations, "Content-Security-Policy violations").toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
