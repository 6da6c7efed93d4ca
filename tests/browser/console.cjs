// Drives the web console in Debian's Chromium (/usr/bin/chromium) with
// playwright-core: enter the token, deploy a component by drag and drop,
// open an entity, invoke a command from the form, see the event appear in
// the live log and the service in the live charts, take a screenshot; then
// deploy a CRDT entity and watch its value follow changes made elsewhere.
//
// node console.cjs BASE_URL TOKEN COMPONENT.wasm SCREENSHOT.png CRDT.wasm
// (NODE_PATH names the node_modules holding playwright-core.)

const fs = require('fs');
const { chromium } = require('playwright-core');

const [base, token, component, screenshot, crdtComponent] = process.argv.slice(2);
const STEP_MS = 10000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(STEP_MS);
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      // Refused requests (the 401 before the token, the 400 of a bad
      // command) are logged by the browser too: they are checked below.
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
        problems.push(`console: ${message.text()}`);
      }
    });
    page.on('response', (response) => {
      if (response.status() >= 500) problems.push(`${response.status()} from ${response.url()}`);
      if (response.status() === 404) problems.push(`404 from ${response.url()}`);
    });
    page.on('requestfailed', (request) => {
      if (!request.url().startsWith(base)) problems.push(`the page asked another origin: ${request.url()}`);
    });

    await page.goto(`${base}/`);
    // Without the token, the console says it needs one.
    await page.locator('#banner', { hasText: 'needs a token' }).waitFor();
    await page.fill('#token', token);
    await page.click('#token-form button');
    await page.locator('#services tbody td', { hasText: 'no services deployed' }).waitFor();
    check(await page.locator('#banner').isHidden(), 'the banner goes once the token is right');

    // Deploy by dropping the file on the drop zone.
    const deploy = async (name, path) => {
      await page.fill('#deploy-name', name);
      const bytes = fs.readFileSync(path).toString('base64');
      const drop = await page.evaluateHandle(([b64, file]) => {
        const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([data], file, { type: 'application/wasm' }));
        return transfer;
      }, [bytes, `${name}.wasm`]);
      await page.dispatchEvent('#dropzone', 'dragover', { dataTransfer: drop });
      await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: drop });
    };
    await deploy('counter', component);
    await page.locator('#deploy-result', { hasText: 'deployed counter version 1 (event-sourced)' }).waitFor();
    await page.locator('#services tbody tr[data-service="counter"]').waitFor();
    await page.locator('#service-title', { hasText: 'counter · event-sourced' }).waitFor();
    await page.locator('#entities tbody td', { hasText: 'no stored entities yet' }).waitFor();

    // Open an entity and invoke from the form; the event comes on the live log.
    await page.fill('#entity-id', 'c1');
    await page.click('#entity-form button');
    await page.locator('#entity-title', { hasText: 'counter / c1' }).waitFor();
    check((await page.locator('#events tbody tr').count()) === 0, 'a new entity has no events');
    for (const value of [5, 2]) {
      await page.fill('#invoke-command', 'Increase');
      await page.fill('#invoke-payload', JSON.stringify({ value }));
      await page.click('#invoke-send');
      await page.locator('#invoke-send:enabled').waitFor();
    }
    await page.locator('#invoke-reply', { hasText: '"value": 7' }).waitFor();
    await page.locator('#events tbody tr[data-seq="2"]', { hasText: '"value":2' }).waitFor();
    check((await page.locator('#events tbody tr').count()) === 2, 'each event once');
    await page.locator('#state', { hasText: '"value": 7' }).waitFor();
    await page.locator('#entities tbody tr[data-entity="c1"]').waitFor();

    // A refused command is said, and commits nothing.
    await page.fill('#invoke-command', 'Increse');
    await page.click('#invoke-send');
    await page.locator('#invoke-reply.bad', { hasText: 'unknown_command' }).waitFor();
    await page.fill('#invoke-payload', '{not json');
    await page.fill('#invoke-command', 'Increase');
    await page.click('#invoke-send');
    await page.locator('#invoke-reply.bad', { hasText: 'not JSON' }).waitFor();

    // The live charts name the service once two readings of /metrics are in.
    await page.locator('#legend li[data-service="counter"]').waitFor({ timeout: 3 * STEP_MS });
    const points = await page.getAttribute('#chart-throughput', 'data-points');
    check(Number(points) >= 1, `the throughput chart has points (${points})`);

    // Some traffic while the charts read, so the screenshot shows lines.
    for (let i = 0; i < 3; i++) {
      await page.fill('#invoke-payload', JSON.stringify({ value: 1 }));
      await page.click('#invoke-send');
      await page.locator('#invoke-send:enabled').waitFor();
      await page.waitForTimeout(1000);
    }
    await page.locator('#events tbody tr[data-seq="5"]').waitFor();
    await page.locator('#entities tbody tr[data-entity="c1"] td', { hasText: /^5$/ }).waitFor();
    await page.waitForFunction(() => Number(document.getElementById('chart-throughput').dataset.points) >= 3);
    await page.screenshot({ path: screenshot, fullPage: true });

    // A CRDT entity shows its value, live: a change made by another client
    // shows without a reload.
    await deploy('likes', crdtComponent);
    await page.locator('#deploy-result', { hasText: 'deployed likes version 1 (crdt)' }).waitFor();
    await page.locator('#service-title', { hasText: 'likes · crdt' }).waitFor();
    await page.fill('#entity-id', 'orset-post');
    await page.click('#entity-form button');
    await page.locator('#entity-title', { hasText: 'likes / orset-post' }).waitFor();
    await page.fill('#invoke-command', 'Process');
    await page.fill('#invoke-payload', JSON.stringify({ actions: [{ add: 'ada' }] }));
    await page.click('#invoke-send');
    await page.locator('#invoke-reply', { hasText: '"ada"' }).waitFor();
    await page.locator('#state', { hasText: '"ada"' }).waitFor();
    const elsewhere = await page.evaluate(async ([url, bearer]) => {
      const response = await fetch(url, {
        method: 'POST',
        headers: { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ actions: [{ add: 'bo' }] }),
      });
      return response.status;
    }, [`${base}/v1/services/likes/entities/orset-post/Process`, token]);
    check(elsewhere === 200, `the other client's change (${elsewhere})`);
    await page.locator('#state', { hasText: '"bo"' }).waitFor();
    check((await page.locator('#events tbody tr').count()) === 0, 'a CRDT entity lists no events');
    check(problems.length === 0, problems.join('\n'));
  } finally {
    await browser.close();
  }
}

main().then(
  () => console.log('console test passed'),
  (error) => {
    console.error(error.stack || String(error));
    process.exit(1);
  },
);
