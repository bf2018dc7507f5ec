// Drives Debian's chromium (headless, through playwright-core) against a running
// `restash serve`, as a person would use it: the volumes page, filtering, sorting, clicking
// into a host, a snapshot and its folders, downloading a file and the folder as .tar.gz and
// .zip, and the page on a phone. Used by tests/serve_browser.rs (which checks the downloads
// against the source) and by scripts/screenshots.sh.
//
// Environment:
//   BASE_URL        the server, e.g. http://127.0.0.1:8080/
//   BROWSE          JSON {"host", "steps": [...]}: from the host's newest snapshot, each step
//                   {"open": folder} clicks into a folder, {"download": file} downloads a
//                   file of the folder shown, {"archive": name} downloads the folder as
//                   name.tar.gz and name.zip, {"shot": png} takes a screenshot; optional
//   EXPECT          JSON {"hosts": [{"host", "lastId", "count", "stale", "partial",
//                   "ageTexts": [...], "ageMin", "ageMax"}], "filter": "word",
//                   "tag": {"word", "hosts": [...]}}; without it
//                   only the pages are visited (screenshots)
//   DOWNLOAD_DIR    where downloads are saved (required by download steps)
//   SCREENSHOT_DIR  where serve-volumes.png, serve-phone.png and the steps' shots go
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Prints one JSON line: {"checks": N, "downloads": [{"name", "suggested", "path"}]}.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
if (!base) throw new Error("BASE_URL is not set");
const expect = process.env.EXPECT ? JSON.parse(process.env.EXPECT) : null;
const browse = process.env.BROWSE ? JSON.parse(process.env.BROWSE) : null;
const shots = process.env.SCREENSHOT_DIR || "";
const downloads = process.env.DOWNLOAD_DIR || "";
let checks = 0;
// The last folder the browsing steps showed.
let folderUrl = null;

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
  checks++;
}

async function shot(page, name) {
  if (shots) await page.screenshot({ path: path.join(shots, name) });
}

// Rows of the volumes table as shown now, in order.
async function rows(page) {
  return page.$$eval("table#volumes tbody tr.volume", (trs) =>
    trs.map((tr) => ({
      host: tr.dataset.host,
      hidden: tr.hidden || getComputedStyle(tr).display === "none",
      classes: Array.from(tr.classList),
      ageSeconds: Number(tr.dataset.ageSeconds),
      bytes: Number(tr.dataset.bytes),
      age: tr.querySelector("td.age").textContent.trim(),
      count: tr.querySelector("td.count").textContent.trim(),
      last: tr.querySelector("td.last a").getAttribute("href"),
      spark: !!tr.querySelector("td.trend svg polyline"),
      flags: Array.from(tr.querySelectorAll("td.flags .flag")).map((f) => ({
        text: f.textContent.trim(),
        visible: f.getBoundingClientRect().width > 0 && getComputedStyle(f).visibility !== "hidden",
      })),
      background: getComputedStyle(tr.querySelector("td")).backgroundColor,
    })),
  );
}

async function volumesPage(page) {
  await page.goto(base);
  await shot(page, "serve-volumes.png");
  if (!expect) return;
  const shown = await rows(page);
  const want = expect.hosts;
  check(
    JSON.stringify(shown.map((r) => r.host)) === JSON.stringify(want.map((h) => h.host)),
    `hosts ${shown.map((r) => r.host)} are ${want.map((h) => h.host)}`,
  );
  const plain = shown.find((r) => !r.classes.includes("stale") && !r.classes.includes("partial"));
  for (const h of want) {
    const r = shown.find((x) => x.host === h.host);
    const ctx = `${h.host}: ${JSON.stringify(r)}`;
    check(!r.hidden, `${ctx} is visible`);
    check(h.ageTexts.includes(r.age), `${ctx}: age "${r.age}" is one of ${h.ageTexts}`);
    check(r.ageSeconds >= h.ageMin && r.ageSeconds <= h.ageMax, `${ctx}: age in [${h.ageMin}, ${h.ageMax}]`);
    check(r.count === String(h.count), `${ctx}: ${h.count} snapshots`);
    check(r.last === `/snapshots/${h.lastId}/tree/`, `${ctx}: last backup links to ${h.lastId}`);
    check(r.spark, `${ctx}: size over time drawn`);
    for (const flag of ["stale", "partial"]) {
      const shownFlag = r.flags.find((f) => f.text === flag);
      check(r.classes.includes(flag) === h[flag], `${ctx}: row class ${flag} is ${h[flag]}`);
      check(!!(shownFlag && shownFlag.visible) === h[flag], `${ctx}: visible flag ${flag} is ${h[flag]}`);
    }
    if (h.stale || h.partial) {
      check(r.background !== plain.background, `${ctx}: flagged row stands out from ${plain.host}`);
    }
  }
  check(
    (await page.locator(".summary .flag.stale").textContent()).trim() ===
      `${want.filter((h) => h.stale).length} stale`,
    "summary counts the stale volumes",
  );

  // Typing in the filter hides the other rows; clearing it shows them again.
  const word = expect.filter;
  await page.locator("#filter").pressSequentially(word, { delay: 20 });
  let now = await rows(page);
  const match = want.filter((h) => h.host.includes(word)).map((h) => h.host);
  check(match.length > 0 && match.length < want.length, `filter "${word}" selects some hosts`);
  check(
    JSON.stringify(now.filter((r) => !r.hidden).map((r) => r.host)) === JSON.stringify(match),
    `filter "${word}" shows only ${match}: ${JSON.stringify(now.map((r) => [r.host, r.hidden]))}`,
  );
  check(
    (await page.locator("#count").textContent()) === `${match.length} of ${want.length}`,
    "the count follows the filter",
  );
  check((await page.locator(`tr.volume[data-host="${want.find((h) => !match.includes(h.host)).host}"]`).isVisible()) === false, "a non-matching row is not visible");
  // The filter is kept in the address, so a reload or a shared link shows the same rows.
  check(new URL(page.url()).searchParams.get("q") === word, `?q=${word} in ${page.url()}`);
  await page.goto(page.url());
  now = await rows(page);
  check(
    JSON.stringify(now.filter((r) => !r.hidden).map((r) => r.host)) === JSON.stringify(match),
    "the filter survives a reload",
  );
  check((await page.locator("#filter").inputValue()) === word, "the box shows the filter");
  await page.locator("#filter").fill("");
  now = await rows(page);
  check(now.every((r) => !r.hidden), "an empty filter shows every host");
  check(new URL(page.url()).search === "", "an empty filter leaves the address bare");

  // Tags are searched too.
  if (expect.tag) {
    await page.locator("#filter").pressSequentially(expect.tag.word, { delay: 20 });
    now = await rows(page);
    check(
      JSON.stringify(now.filter((r) => !r.hidden).map((r) => r.host)) === JSON.stringify(expect.tag.hosts),
      `tag filter "${expect.tag.word}" shows ${expect.tag.hosts}`,
    );
    await page.locator("#filter").fill("");
  }

  // Clicking a header sorts by it, a second click reverses.
  const sorted = (xs, cmp) => xs.every((x, i) => i === 0 || cmp(xs[i - 1], x) <= 0);
  for (const [field, key, cmp] of [
    ["age", "ageSeconds", (a, b) => a - b],
    ["bytes", "bytes", (a, b) => a - b],
    ["host", "host", (a, b) => a.localeCompare(b)],
  ]) {
    const th = page.locator(`table#volumes th[data-sort="${field}"]`);
    await th.click();
    let order = (await rows(page)).map((r) => r[key]);
    check(sorted(order, cmp), `ascending by ${field}: ${order}`);
    check((await th.getAttribute("aria-sort")) === "ascending", `${field} header marked ascending`);
    await th.click();
    order = (await rows(page)).map((r) => r[key]);
    check(sorted(order, (a, b) => cmp(b, a)), `descending by ${field}: ${order}`);
    check(order.length === want.length, "no row lost");
  }
  const byHost = (await rows(page)).map((r) => r.host);
  check(byHost[0] > byHost[byHost.length - 1], `host order reversed: ${byHost}`);
}

async function saveDownload(page, link, name) {
  const [dl] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const to = path.join(downloads, name);
  await dl.saveAs(to);
  const failure = await dl.failure();
  check(failure === null, `download ${name} finished: ${failure}`);
  return { name, suggested: dl.suggestedFilename(), path: to };
}

async function browsing(page) {
  const saved = [];
  if (!browse) return saved;
  if (!downloads && browse.steps.some((s) => s.archive || s.download)) {
    throw new Error("DOWNLOAD_DIR is not set");
  }
  await page.goto(base);
  await page.locator(`tr.volume[data-host=${JSON.stringify(browse.host)}] td.host a`).click();
  await page.waitForURL(/\/hosts\//);
  check((await page.locator("h1").textContent()) === browse.host, "host page of " + browse.host);
  const snaps = page.locator("table#snapshots tr.snapshot");
  if (expect) {
    const h = expect.hosts.find((x) => x.host === browse.host);
    check((await snaps.count()) === h.count, `${h.count} snapshots listed`);
    check((await snaps.first().getAttribute("data-id")) === h.lastId, "newest snapshot first");
  }
  await snaps.first().locator("a.browse").click();
  await page.waitForURL(/\/tree\/$/);
  const entry = (type, name) =>
    page.locator(`table#entries tr.entry[data-type="${type}"][data-name=${JSON.stringify(name)}]`);
  for (const step of browse.steps) {
    if (step.open) {
      await entry("dir", step.open).locator("a.open").click();
      await page.waitForFunction((d) => document.querySelector("h1")?.textContent === d, step.open);
      checks++;
    } else if (step.archive) {
      saved.push(await saveDownload(page, page.locator("a#download-tar"), step.archive + ".tar.gz"));
      saved.push(await saveDownload(page, page.locator("a#download-zip"), step.archive + ".zip"));
    } else if (step.download) {
      saved.push(await saveDownload(page, entry("file", step.download).locator("a.download"), `file-${saved.length}`));
    } else if (step.shot) {
      await shot(page, step.shot);
    } else {
      throw new Error("unknown step " + JSON.stringify(step));
    }
  }
  folderUrl = page.url();
  return saved;
}

async function phone(page) {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(base);
  await shot(page, "serve-phone.png");
  const layout = await page.evaluate(() => {
    const tr = document.querySelector("table#volumes tbody tr.volume");
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      thead: getComputedStyle(document.querySelector("table#volumes thead")).display,
      row: tr ? getComputedStyle(tr).display : "none",
      rowWidth: tr ? tr.getBoundingClientRect().width : 0,
    };
  });
  check(layout.scrollWidth <= layout.innerWidth, `no horizontal overflow on a phone: ${JSON.stringify(layout)}`);
  check(layout.thead === "none" && layout.row === "block", `rows are cards on a phone: ${JSON.stringify(layout)}`);
  check(layout.rowWidth <= layout.innerWidth, `a card fits the screen: ${JSON.stringify(layout)}`);
  if (folderUrl) {
    // A folder's download links are in view without scrolling sideways.
    await page.goto(folderUrl);
    const folder = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      table: document.querySelector("table#entries").getBoundingClientRect().right,
      links: Array.from(document.querySelectorAll("a.download, a.open")).map(
        (a) => a.getBoundingClientRect().right,
      ),
    }));
    check(folder.links.length > 0, "the folder has links");
    check(
      folder.scrollWidth <= folder.innerWidth && folder.table <= folder.innerWidth &&
        folder.links.every((r) => r <= folder.innerWidth),
      `a folder fits a phone: ${JSON.stringify(folder)}`,
    );
  }
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "restash-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Without the background-networking flags chromium keeps calling home, which this
  // closed network refuses; the profile is new every run.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 800 },
  acceptDownloads: true,
  colorScheme: "light",
});
let saved;
try {
  context.setDefaultTimeout(30000);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Every failed request counts (the pages declare an empty icon, so the browser asks
  // for no /favicon.ico).
  page.on("response", (r) => {
    if (r.status() >= 400) {
      errors.push(`${r.status()} ${r.url()}`);
    }
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("requestfailed", (r) => {
    if (r.failure()?.errorText !== "net::ERR_ABORTED") errors.push(`${r.url()}: ${r.failure()?.errorText}`);
  });
  await volumesPage(page);
  saved = await browsing(page);
  await phone(page);
  check(errors.length === 0, `no script errors: ${errors}`);
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ checks, downloads: saved }));
