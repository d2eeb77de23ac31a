// The outreach app's service worker (served at /terrain/sw.js, scope "/"): it keeps the
// offline page (/terrain/hors-ligne: the app shell, with the directory's places and partners,
// the notice and today's schedule) and the design system's files, and shows that page when a
// page of /terrain cannot be reached. Everything else goes to the network as without it.
// Nothing personal is ever cached: the offline page holds none, and only GET answers of
// /terrain/hors-ligne and /static/ are kept.
const CACHE = "relais-terrain-v1";
const SHELL = "/terrain/hors-ligne";
const FILES = [
  SHELL,
  "/static/dsfr/dsfr.min.css",
  "/static/dsfr/utility/icons/icons.min.css",
  "/static/dsfr/dsfr.module.min.js",
  "/static/dsfr/favicon/favicon.svg",
  "/static/relais/relais.css",
  "/static/consent/signature.css",
  "/static/consent/signature.js",
  "/static/intake/hors-ligne.js",
];

async function keep(cache, paths) {
  await Promise.all(paths.map(async (path) => {
    try {
      const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
      if (response.ok && !response.redirected) await cache.put(path, response);
    } catch { /* kept at the next visit */ }
  }));
}

async function text(cache, path) {
  const kept = await cache.match(path);
  return kept ? kept.text() : "";
}

// What the design system's style sheets load: its fonts (woff2) and the core components'
// icons, then the icons of the classes the offline page uses: without a network, a page
// that misses them would show holes and log errors.
async function designSystemFiles(cache) {
  const base = new URL("/static/dsfr/", self.location.origin);
  const urls = (css, from) => [...css.matchAll(/url\(["']?([^"')]+)["']?\)/g)]
    .map((m) => m[1]).filter((u) => !u.startsWith("data:") && !u.endsWith(".woff"))
    .map((u) => new URL(u, from).pathname);
  const core = urls(await text(cache, "/static/dsfr/dsfr.min.css"), base);
  const icons = await text(cache, "/static/dsfr/utility/icons/icons.min.css");
  const used = new Set([...(await text(cache, SHELL)).matchAll(/fr-icon-[a-z0-9-]+/g)]
    .map((m) => m[0]));
  const utility = [...used].flatMap((name) => {
    const rule = icons.match(new RegExp(`\\.${name}[:\\w-]*[^{]*\\{[^}]*url\\(([^)]+)\\)`));
    return rule ? urls(`url(${rule[1]})`, new URL("/static/dsfr/utility/icons/", base)) : [];
  });
  return [...new Set([...core, ...utility])];
}

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await keep(cache, FILES);
    await keep(cache, await designSystemFiles(cache));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && !response.redirected) await cache.put(key, response.clone());
    return response;
  } catch (error) {
    const kept = await cache.match(key);
    if (kept) return kept;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && url.pathname.startsWith("/terrain")) {
    const key = url.pathname === SHELL ? SHELL : null;
    event.respondWith((async () => {
      try {
        return key ? await networkFirst(request, key) : await fetch(request);
      } catch {
        return (await caches.match(SHELL)) || Response.error();
      }
    })());
  } else if (url.pathname.startsWith("/static/")) {
    event.respondWith(networkFirst(request, url.pathname));
  }
});
