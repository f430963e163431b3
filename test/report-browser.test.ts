// report.html as a browser shows it: the report of a tiny real `clamp-native train` run opened in headless
// Chromium (the system's, driven by playwright-core: no browser download) renders its title and
// sections, loads every picture, lays the charts out across the column and the two maps side by side,
// and screenshots to a real PNG. Skipped, saying so, where /usr/bin/chromium is not installed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const SKIPPED = hasChromium ? '' : ` (skipped: no Chromium at ${CHROMIUM}; on Debian: apt-get install chromium)`;
if (!hasChromium) console.warn(`report-browser test${SKIPPED}`);

/** What the page shows of each picture, measured in the browser. */
interface ShownImage {
  alt: string;
  complete: boolean;
  naturalWidth: number;
  width: number;
  top: number;
}

describe('report.html in headless Chromium', () => {
  it.skipIf(!hasChromium)(
    `renders, loads every picture at a readable width, and screenshots${SKIPPED}`,
    async () => {
      const runDir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-report-browser-')), 'run');
      const args = ['train', '--limit', '256', '--epochs', '1', '--batch-size', '64', '--views', '2', '--out', runDir];
      const settings = ['data.testLimit=300', 'eval.linearProbe=false'].flatMap((setting) => ['--set', setting]);
      const trained = spawnSync(process.execPath, [path.resolve('dist/cli/main.js'), ...args, ...settings], { encoding: 'utf8' });
      expect(trained.status, trained.stderr).toBe(0);

      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({ executablePath: CHROMIUM });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        await page.goto(pathToFileURL(path.join(runDir, 'report.html')).href, { waitUntil: 'load' });
        expect(await page.title()).toBe('clamp-native run report: fashion-mnist, small');
        expect(await page.textContent('h1')).toBe('clamp-native run report: fashion-mnist, small');
        const headings = await page.$$eval('h2', (nodes) => nodes.map((node) => node.textContent));
        expect(headings).toEqual(
          expect.arrayContaining(['Training', 'Evaluation', 'Per class', 'Embedding maps', 'Augmented views', 'Config']),
        );
        expect(await page.locator('.status').count()).toBe(0); // the finished report has no in-progress banner

        const images: ShownImage[] = await page.$$eval('img', (nodes) =>
          nodes.map((img) => ({
            alt: img.alt,
            complete: img.complete,
            naturalWidth: img.naturalWidth,
            width: img.getBoundingClientRect().width,
            top: img.getBoundingClientRect().top,
          })),
        );
        expect(images.length).toBeGreaterThanOrEqual(10);
        for (const image of images) {
          expect(image.complete, image.alt).toBe(true);
          expect(image.naturalWidth, image.alt).toBeGreaterThan(0);
        }
        // The charts fill the column (960 px at this window), the maps share a row.
        const shown = (alt: string) => images.find((image) => image.alt === alt)!;
        expect(shown('Loss').width).toBeGreaterThanOrEqual(900);
        const [pcaMap, umapMap] = [
          shown('Test embeddings on their first two principal components'),
          shown('Test embeddings laid out by UMAP'),
        ];
        expect(umapMap.top).toBe(pcaMap.top);
        expect(pcaMap.width).toBeGreaterThanOrEqual(400);

        const screenshot = path.join(path.dirname(runDir), 'report-screenshot.png');
        await page.screenshot({ path: screenshot, fullPage: true });
        const meta = await sharp(screenshot).metadata();
        expect(meta.format).toBe('png');
        expect(meta.width).toBe(1280);
        expect(meta.height).toBeGreaterThan(3000); // the whole page, not one screen of it
        expect((await fs.stat(screenshot)).size).toBeGreaterThan(100_000);
        console.log(`report-browser test: screenshot ${screenshot}`);
      } finally {
        await browser.close();
      }
    },
    180_000,
  );
});
