import { Browser } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants } from "node:zlib";
import { expect, test } from "./fixtures";
import { ADMIN, ADMIN_PASSWORD, CLIENT_PASSWORD, SITE_ROOT, call, open, unique } from "./support";

/**
 * The wasm each page downloads on a first visit (empty cache), as brotli at quality 11. The
 * bundle is split by route (`app::pages`, `cargo leptos build --split`): a page's first load
 * fetches the main module and the chunks of that page, and sign-in only the main module.
 *
 * The standing budget for the first page is 200 kB: 196.9 kB on 2026-12-03 (242.2 kB before the
 * ninth session, 507.8 kB before the split; docs/benchmarks.md says what is in it). Anything
 * that adds to the first page fails here and has to make room or say why. The figure also
 * jumps by about 20 kB if wasm-split puts every page's read-only data in the main module (see
 * `SPLIT_DATA_SLACK` in frontend/src/lib.rs), which this catches too.
 */

const FIRST_PAGE_BUDGET = 200_000;

type Load = { path: string; files: Map<string, number> };

function brotli(body: Buffer): number {
  return brotliCompressSync(body, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
    },
  }).length;
}

/** Opens `path` in a fresh context (signed in as `user` if given) and sizes the wasm it fetched. */
async function firstLoad(browser: Browser, base: string, path: string, user?: [string, string]): Promise<Load> {
  const context = await browser.newContext();
  try {
    if (user) {
      await call(context.request, base, "login", { username: user[0], password: user[1] });
    }
    const page = await context.newPage();
    const bodies: Promise<[string, Buffer]>[] = [];
    page.on("response", (response) => {
      const url = new URL(response.url());
      if (url.pathname.endsWith(".wasm")) {
        bodies.push(response.body().then((body) => [url.pathname, body]));
      }
    });
    await open(page, path);
    expect(new URL(page.url()).pathname, `${path} was shown, not a redirect`).toBe(path);
    const files = new Map<string, number>();
    for (const [name, body] of await Promise.all(bodies)) {
      files.set(name, brotli(body));
    }
    return { path, files };
  } finally {
    await context.close();
  }
}

const total = (load: Load) => [...load.files.values()].reduce((a, b) => a + b, 0);

test("each page's first load downloads its own chunks; sign-in downloads the main module alone", async ({ browser, playwright, baseURL }) => {
  test.setTimeout(180_000);
  const base = baseURL!;
  const api = await playwright.request.newContext();
  await call(api, base, "login", { username: ADMIN, password: ADMIN_PASSWORD });
  const client = unique("bundle");
  const clientId = (await call(api, base, "create_account", {
    username: client, display_name: "Bea Bundle", password: CLIENT_PASSWORD,
  })).id;
  const device = (await call(api, base, "create_device", {
    description: "Heat pump", address: "Str. Motilor 1", max_power_kw: "5", owner_id: clientId,
  })).id;
  await api.dispose();

  const admin: [string, string] = [ADMIN, ADMIN_PASSWORD];
  const owner: [string, string] = [client, CLIENT_PASSWORD];
  const loads: Load[] = [await firstLoad(browser, base, "/login")];
  for (const path of ["/admin/accounts", "/admin/devices", "/admin/live", "/admin/dead-letters", "/account"]) {
    loads.push(await firstLoad(browser, base, path, admin));
  }
  for (const path of ["/dashboard", "/alerts", `/devices/${device}/day`, `/devices/${device}/month`]) {
    loads.push(await firstLoad(browser, base, path, owner));
  }

  const kb = (bytes: number) => `${(bytes / 1000).toFixed(1)} kB`;
  console.log("first load, wasm as brotli -q 11 (main module + the page's chunks, each file compressed alone):");
  for (const load of loads) {
    const route = load.path.replace(device, ":id");
    console.log(`  ${route.padEnd(20)} ${kb(total(load)).padStart(9)} in ${load.files.size} files`);
  }

  const [login, ...others] = loads;
  // Sign-in needs the main module alone; every other page adds chunks of its own.
  expect([...login.files.keys()], "the sign-in page fetches only the main module").toEqual(["/pkg/energy.wasm"]);
  console.log(`sign-in: ${kb(total(login))} against the ${kb(FIRST_PAGE_BUDGET)} budget`);
  expect(total(login), "the sign-in page's wasm, brotli").toBeLessThanOrEqual(FIRST_PAGE_BUDGET);
  for (const load of others) {
    expect(load.files.has("/pkg/energy.wasm"), `${load.path} loads the main module`).toBeTruthy();
    expect(load.files.size, `${load.path} loads chunks beside the main module`).toBeGreaterThan(1);
  }
});

/**
 * The server names a signed-in page's chunks in its head (`server::preload`, from the lazy
 * functions the render called), so the browser fetches them beside the main module. Oracle:
 * the split manifest the build wrote, read here: the chunks of the dashboard page and of the
 * signed-in header, each linked once, and the split loader.
 */
test("a signed-in page's head names each chunk of its page and header once", async ({ playwright, baseURL }) => {
  const base = baseURL!;
  const manifest: Record<string, string[]> = JSON.parse(
    readFileSync(join(SITE_ROOT, "pkg", "__wasm_split_manifest.json"), "utf8"),
  );
  const needed = new Set<string>();
  for (const [name, chunks] of Object.entries(manifest)) {
    if (name.startsWith("dashboard_page_") || name.startsWith("signed_in_header_")) {
      chunks.forEach((chunk) => needed.add(`/pkg/${chunk}.wasm`));
    }
  }
  expect(needed.size, "the manifest has the dashboard's and the header's chunks").toBeGreaterThan(0);

  const api = await playwright.request.newContext();
  await call(api, base, "login", { username: ADMIN, password: ADMIN_PASSWORD });
  const client = unique("preload");
  await call(api, base, "create_account", {
    username: client, display_name: "Pia Preload", password: CLIENT_PASSWORD,
  });
  await api.dispose();
  const owner = await playwright.request.newContext();
  try {
    await call(owner, base, "login", { username: client, password: CLIENT_PASSWORD });
    const html = await (await owner.get(`${base}/dashboard`)).text();
    const [head, body] = html.split("</head>");
    const linked = [...head.matchAll(/<link rel="preload" href="([^"]+)" as="fetch" type="application\/wasm"[^>]*>/g)]
      .map((m) => m[1])
      .filter((href) => href !== "/pkg/energy.wasm");
    expect(new Set(linked).size, "each chunk linked once").toBe(linked.length);
    expect(new Set(linked)).toEqual(needed);
    expect(head, "the split loader is preloaded").toContain('<link rel="modulepreload" href="/pkg/__wasm_split.');
    expect(body, "no chunk links in the body").not.toContain('as="fetch"');

    // The sign-in page calls no lazy function: it names no chunk.
    const login = await (await playwright.request.newContext()).get(`${base}/login`);
    expect(await login.text()).not.toContain("/pkg/chunk_");
  } finally {
    await owner.dispose();
  }
});
