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
    table(latest);
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

// MiB with one decimal, or "—" where the figure is unknown (null).
function mib(bytes) {
  return bytes === null || bytes === undefined ? "—" : (bytes / MiB).toFixed(1);
}

// Under 10 % of its limit left: the pod is close to being OOM-killed.
function lowHeadroom(vm) {
  return vm.headroom_bytes !== null && vm.memory_limit_bytes > 0 && vm.headroom_bytes < 0.1 * vm.memory_limit_bytes;
}

// The VM's page: "_" stands for no namespace (a plain host). "." and ".." are dot segments a browser
// would resolve away, so those names get no link.
function vmPath(vm) {
  if (vm.vm === "." || vm.vm === "..") return null;
  return `vms/${encodeURIComponent(vm.namespace || "_")}/${encodeURIComponent(vm.vm)}`;
}

// One row per VM of /api/vms. Every name goes in as textContent: a VM may be named "<script>".
function table(vms) {
  const body = $("latest").querySelector("tbody");
  body.replaceChildren(
    ...vms.map((vm) => {
      const tr = document.createElement("tr");
      const low = lowHeadroom(vm);
      if (low) tr.className = "low-headroom";
      const name = document.createElement("td");
      const path = vmPath(vm);
      if (path) {
        const a = document.createElement("a");
        a.href = path;
        a.textContent = vm.vm;
        name.appendChild(a);
      } else {
        name.textContent = vm.vm;
      }
      tr.appendChild(name);
      const processes = vm.processes.map((p) => `${p.process} ${mib(p.rss_bytes)}`).join(" · ");
      const at = new Date(vm.timestamp).toLocaleTimeString();
      const cells = [
        [vm.namespace], [vm.node], [processes],
        [mib(vm.guest_memory_bytes), "num guest"], [mib(vm.measured_bytes), "num measured"],
        [mib(vm.overhead_bytes), "num overhead"], [mib(vm.requested_overhead_bytes), "num requested-overhead"],
        [mib(vm.memory_limit_bytes), "num limit"], [mib(vm.headroom_bytes), "num headroom"],
        [low ? "⚠ low headroom" : "", "marker"], [at],
      ];
      for (const [text, cls] of cells) {
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
// A link can choose the range and the figure (the demo's does: /dashboard?range=300;
// /dashboard?figure=headroom_bytes); an unknown value keeps the default.
const linked = new URLSearchParams(location.search);
for (const id of ["range", "figure"]) {
  if ([...$(id).options].some((o) => o.value === linked.get(id))) $(id).value = linked.get(id);
}
load();
schedule();
