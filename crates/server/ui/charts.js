// Two small SVG charts, drawn from plain numbers: a line chart of recent samples and a grouped
// bar chart. SVG scales with the page, prints crisply, and needs no third-party code; the
// dashboard's charts need nothing more than these two shapes (see the README on why no charting
// library is vendored).

const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A round step for about `count` ticks up to `max`.
function niceStep(max, count) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10;
  return nice * power;
}

function formatTick(value) {
  if (value === 0) return '0';
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(value % 1000 === 0 ? 0 : 1)}k`;
  if (Math.abs(value) < 0.01) return value.toExponential(0);
  return String(Number(value.toPrecision(3)));
}

// An SVG of `width` x `height` with a y axis from 0 to a round number at or above `max`:
// grid lines and their labels left of `box.left`. Answers the SVG and the y of a value.
function frame({ width, height, box, max, unit = '' }) {
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const step = max > 0 ? niceStep(max, 4) : 1;
  const yMax = max > 0 ? Math.ceil(max / step) * step : 1;
  const y = (v) => box.top + (1 - v / yMax) * (height - box.top - box.bottom);
  for (let v = 0; v <= yMax + step / 2; v += step) {
    svg.append(el('line', { class: 'axis', x1: box.left, x2: width - box.right, y1: y(v), y2: y(v) }));
    svg.append(el('text', { class: 'tick', x: box.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, `${formatTick(v)}${unit}`));
  }
  return { svg, y };
}

// Lines of `series` ([{name, values: [number|null]}]) over `times` (seconds, ascending), the
// last `span` seconds ending at the newest sample. Gaps (null) break a line.
export function lineChart({ times, series, span = 120, unit = '' }) {
  const width = 600;
  const height = 170;
  const box = { left: 44, right: 8, top: 8, bottom: 22 };
  const end = times.length ? times[times.length - 1] : 0;
  const start = end - span;
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const { svg, y } = frame({ width, height, box, max: Math.max(...values, 0), unit });
  const x = (t) => box.left + ((t - start) / span) * (width - box.left - box.right);
  for (let s = 0; s <= span; s += span / 4) {
    const label = s === span ? 'now' : `-${Math.round(span - s)}s`;
    const anchor = s === span ? 'end' : s === 0 ? 'start' : 'middle';
    svg.append(el('text', { class: 'tick', x: x(start + s), y: height - 6, 'text-anchor': anchor }, label));
  }
  series.forEach((line, i) => {
    let d = '';
    let drawing = false;
    line.values.forEach((v, j) => {
      if (v === null || !Number.isFinite(v) || times[j] < start) {
        drawing = false;
        return;
      }
      d += `${drawing ? 'L' : 'M'}${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`;
      drawing = true;
    });
    if (d) svg.append(el('path', { class: `line s${i + 1}`, d }));
  });
  const title = el('title', {}, series.map((s) => s.name).join(', '));
  svg.prepend(title);
  return svg;
}

// Bars of `measures` ([{name, values: [number per group]}]) for each of `groups`, values from
// 0 to 1 (shares, as HR and NDCG are).
export function barChart({ groups, measures }) {
  const width = 560;
  const height = 220;
  const box = { left: 36, right: 8, top: 14, bottom: 26 };
  const { svg, y } = frame({ width, height, box, max: Math.max(...measures.flatMap((m) => m.values), 0.01) });
  svg.append(el('title', {}, `${measures.map((m) => m.name).join(' and ')} per strategy`));
  const band = (width - box.left - box.right) / Math.max(groups.length, 1);
  const bar = Math.min(34, (band * 0.7) / measures.length);
  groups.forEach((group, g) => {
    const middle = box.left + band * (g + 0.5);
    measures.forEach((measure, m) => {
      const v = measure.values[g];
      const x0 = middle - (bar * measures.length) / 2 + bar * m;
      svg.append(el('rect', { class: `s${m + 1}`, x: x0 + 1, y: y(v), width: bar - 2, height: y(0) - y(v) }));
      svg.append(el('text', { class: 'label', x: x0 + bar / 2, y: y(v) - 3, 'text-anchor': 'middle' }, v.toFixed(3)));
    });
    svg.append(el('text', { class: 'tick', x: middle, y: height - 8, 'text-anchor': 'middle' }, group));
  });
  return svg;
}
