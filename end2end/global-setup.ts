import { BASE_URL } from "./playwright.config";

/** cargo-leptos starts the server and Playwright at the same time: wait until it answers. */
export default async function globalSetup() {
  const deadline = Date.now() + 120_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${BASE_URL}/healthz`);
      if (res.ok) return;
      last = `status ${res.status}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`server at ${BASE_URL} did not become healthy: ${last}`);
}
