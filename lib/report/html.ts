// The pieces of report.html: escaping, number formats, tables, figures as PNG data URIs, and the page
// with its inline style sheet. No scripts, no external resources: the file opens offline as it is.

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** A number to `digits` significant digits, "n/a" when missing. */
export function number(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'n/a';
  if (value !== 0 && (Math.abs(value) >= 1e6 || Math.abs(value) < 1e-3)) return value.toExponential(digits - 1);
  return String(Number(value.toPrecision(digits)));
}

/** A table of already-escaped cells (use escapeHtml on text). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], className = ''): string {
  const head = headers.map((h) => `<th>${h}</th>`).join('');
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join('')}</tr>`).join('\n');
  return `<table${className ? ` class="${escapeHtml(className)}"` : ''}><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/**
 * How a picture sits on the page: `column` fills the text column (the charts, drawn at about its width),
 * `natural` keeps its own size (the heat map; wider than the column, it scrolls), `panel` fills its cell of
 * a side-by-side grid (the embedding maps).
 */
export type FigureLayout = 'column' | 'natural' | 'panel';

/** A PNG inlined as a data URI, shown at its CSS size (charts are rendered at twice that). */
export function figure(png: Buffer, width: number, height: number, alt: string, caption?: string, layout: FigureLayout = 'column'): string {
  const img = `<img src="data:image/png;base64,${png.toString('base64')}" width="${width}" height="${height}" alt="${escapeHtml(alt)}">`;
  return `<figure class="${layout}">${img}${caption ? `<figcaption>${caption}</figcaption>` : ''}</figure>`;
}

/** A note in place of a missing figure or section (already-escaped HTML). */
export function note(html: string): string {
  return `<p class="note">${html}</p>`;
}

/** The text column's width in CSS pixels: the charts are drawn at about this width (charts.ts), so they show at 1:1. */
export const COLUMN_WIDTH = 960;

const STYLE = `
:root { color-scheme: light; --ink: #1d232b; --muted: #5b6573; --rule: #dde2e8; --accent: #1f77b4; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: ${COLUMN_WIDTH + 2 * 24}px; padding: 24px 24px 64px; font: 15px/1.5 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink); background: white; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
.sub, .note, figcaption { color: var(--muted); }
.sub { margin: 0 0 18px; font-size: 13px; word-break: break-all; }
.note { font-style: italic; }
.status { margin: 0 0 18px; padding: 10px 14px; border-radius: 6px; border: 1px solid #f0c36d; background: #fff8e1; }
.status.stopped { border-color: #e6a5a5; background: #fdecec; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; margin: 14px 0; }
.card { background: var(--panel); border: 1px solid var(--rule); border-radius: 6px; padding: 10px 12px; }
.card .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: 0.03em; }
.card .value { font-size: 19px; font-weight: bold; margin-top: 2px; }
.card .detail { font-size: 12px; color: var(--muted); }
.charts { display: grid; gap: 14px; }
.maps { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 420px), 1fr)); gap: 14px 20px; align-items: start; }
figure { margin: 8px 0; max-width: 100%; overflow-x: auto; }
figure img { display: block; max-width: 100%; height: auto; image-rendering: auto; }
figure.column img, figure.panel img { width: 100%; }
figure.natural img { max-width: none; }
figure.pixels img { image-rendering: pixelated; }
figcaption { font-size: 13px; margin-top: 4px; max-width: 760px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--rule); text-align: right; white-space: nowrap; }
th { background: var(--panel); font-weight: bold; }
td:first-child, th:first-child, td.text { text-align: left; }
table.classes td:nth-child(2) { text-align: left; }
.bar { display: inline-block; height: 9px; background: var(--accent); vertical-align: middle; margin-left: 6px; border-radius: 2px; }
details { margin-top: 10px; }
summary { cursor: pointer; font-weight: bold; }
pre { background: var(--panel); border: 1px solid var(--rule); border-radius: 6px; padding: 12px; overflow-x: auto; font: 12px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; }
`;

export interface PageOptions {
  /** What the page is of: `final` (the whole report) or a moment of a run still under way (report-state.ts). Tools read it from a meta tag. */
  state: string;
  /** Reload every this many seconds (a page of a run still training); none in a finished report. */
  refreshSeconds?: number;
}

/** The whole page around `body` (already-escaped HTML). */
export function page(title: string, body: string, options: PageOptions): string {
  const refresh = options.refreshSeconds ? `\n<meta http-equiv="refresh" content="${options.refreshSeconds}">` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="clamp-native report">
<meta name="clamp-report-state" content="${escapeHtml(options.state)}">${refresh}
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}
