// The memstat dashboard: RSS (or PSS, working set) over time per VM, downsampled by the server.
// No framework and no CDN: uPlot is vendored next to this file.
"use strict";

const $ = (id) => document.getElementById(id);
const MiB = 1024 * 1024;
const REFRESH_MS = 5000;
let chart = null;
let chartKey = "";

function palette(i) {
  return `hsl(${(i * 137.508) % 360}, 65%, 45%)`;
}

function query() {
  const params = new URLSearchParams({
    since: `-${$("range").value}s`,
    points: String(Math.max(100, Math.min(2000, Math.floor($("chart").clientWidth || 1200)))),
    figure: $("figure").value,
  });
  const filter = $("filter").value.trim();
  if (filter) params.set("vm", filter);
  return params;
}

async function load() {
  try {
    const [series, latest] = await Promise.all([
      fetch(`api/series?${query()}`).then((r) => r.json()),
      fetch("api/vms").then((r) => r.json()),
    ]);
    draw(series);
    // api/vms answers one object per VM; the table shows its processes, one row each.
    table(latest.flatMap((vm) => vm.processes.map((p) => ({ ...vm, ...p }))));
    const reading = series.complete === false ? " (still reading the history on disk)" : "";
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}${reading}`;
  } catch (err) {
    $("status").textContent = `error: ${err}`;
  }
}

function draw(data) {
  const names = Object.keys(data.series);
  const key = names.join("\u0000") + "|" + data.figure;
  const columns = [data.times, ...names.map((n) => data.series[n].map((v) => (v === null ? null : v / MiB)))];
  // How many points each series has: read by the browser test, handy when debugging too.
  $("chart").dataset.points = JSON.stringify(Object.fromEntries(names.map((n, i) => [n, columns[i + 1].filter((v) => v !== null).length])));
  if (chart && key === chartKey) {
    chart.setData(columns);
    return;
  }
  if (chart) chart.destroy();
  chartKey = key;
  const width = $("chart").clientWidth || 1200;
  chart = new uPlot(
    {
      width,
      height: 420,
      title: `${data.label} (MiB), one series per VM`,
      scales: { x: { time: true } },
      axes: [{}, { label: "MiB", size: 70 }],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: palette(i), width: 1.5, spanGaps: false, points: { size: 5 } }))],
      legend: { live: true },
    },
    columns,
    $("chart"),
  );
  window.memstatChart = chart; // for tests: the series the chart was given
}

function table(rows) {
  const body = $("latest").querySelector("tbody");
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement("tr");
      const at = new Date(r.timestamp).toLocaleTimeString();
      for (const [text, cls] of [[r.vm], [r.namespace], [r.node], [r.process], [(r.rss_bytes / MiB).toFixed(1), "num"], [at]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      return tr;
    }),
  );
}

let timer = null;
function schedule() {
  clearInterval(timer);
  if ($("refresh").checked) timer = setInterval(load, REFRESH_MS);
}

for (const id of ["range", "figure", "filter"]) $(id).addEventListener("change", load);
$("filter").addEventListener("input", () => { clearTimeout(window._f); window._f = setTimeout(load, 300); });
$("refresh").addEventListener("change", schedule);
window.addEventListener("resize", () => { chartKey = ""; load(); });
// A link can choose the range (the demo's does: /dashboard?range=300); an unknown value keeps the default.
const linkedRange = new URLSearchParams(location.search).get("range");
if ([...$("range").options].some((o) => o.value === linkedRange)) $("range").value = linkedRange;
load();
schedule();
