// One VM's page (/vms/<namespace>/<vm>, "_" for no namespace): its processes' memory over time against
// its guest memory and limit, its overhead against the requested one, and its latest figures.
// Every name goes in as textContent: a VM may be named "<script>".
"use strict";

const $ = (id) => document.getElementById(id);
const MiB = 1024 * 1024;
const REFRESH_MS = 5000;
const charts = {};

// The last two path segments, as the server matched them (still percent-encoded: reused as they are).
const segments = location.pathname.split("/");
const rawNamespace = segments[segments.length - 2];
const rawVm = segments[segments.length - 1];
$("name").textContent = decodeURIComponent(rawVm);
document.title = `${decodeURIComponent(rawVm)} — VM memory`;

function mib(bytes) {
  return bytes === null || bytes === undefined ? "—" : (bytes / MiB).toFixed(1);
}

function palette(i) {
  return `hsl(${(i * 137.508) % 360}, 65%, 45%)`;
}

async function load() {
  const params = new URLSearchParams({
    since: `-${$("range").value}s`,
    points: String(Math.max(100, Math.min(2000, Math.floor($("memory").clientWidth || 1200)))),
  });
  try {
    const response = await fetch(`../../api/vms/${rawNamespace}/${rawVm}?${params}`);
    if (response.status === 404) {
      $("status").textContent = "this VM has not been polled since memstat started";
      return;
    }
    const data = await response.json();
    figures(data.vm);
    processes(data.vm.processes);
    const vm = data.vm;
    // Guest memory and limit are lines across the chart: they change only when the VM is rebuilt.
    draw("memory", "memory per process (MiB)", data.processes, [
      ["guest memory", vm.guest_memory_bytes],
      ["limit", vm.memory_limit_bytes],
    ]);
    draw("overhead", "overhead: measured − guest memory (MiB)", { times: data.overhead.times, series: { overhead: data.overhead.series[""] || [] } }, [
      ["requested overhead", vm.requested_overhead_bytes],
    ]);
    consoleLines(data.console);
    $("status").textContent = vm.in_latest_poll
      ? `updated ${new Date().toLocaleTimeString()}`
      : `not in the latest poll: last seen ${new Date(vm.timestamp).toLocaleString()} (stopped, or moved out of reach); its history stays`;
  } catch (err) {
    $("status").textContent = `error: ${err}`;
  }
}

function figures(vm) {
  const low = vm.headroom_bytes !== null && vm.memory_limit_bytes > 0 && vm.headroom_bytes < 0.1 * vm.memory_limit_bytes;
  const rows = [
    ["namespace", vm.namespace || "—"], ["node", vm.node], ["pod", vm.pod || "—"], ["source", vm.source],
    ["guest memory MiB", mib(vm.guest_memory_bytes)], ["measured MiB", mib(vm.measured_bytes)],
    ["overhead MiB", mib(vm.overhead_bytes)], ["requested overhead MiB", mib(vm.requested_overhead_bytes)],
    ["request MiB", mib(vm.memory_request_bytes)], ["limit MiB", mib(vm.memory_limit_bytes)],
    ["headroom MiB", mib(vm.headroom_bytes) + (low ? " ⚠ low headroom" : "")],
    ["at", new Date(vm.timestamp).toLocaleTimeString()],
  ];
  $("figures").classList.toggle("low-headroom", low);
  $("figures").querySelector("tbody").replaceChildren(...rows.map(([label, value]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = label;
    const td = document.createElement("td");
    td.textContent = value;
    td.dataset.figure = label;
    tr.append(th, td);
    return tr;
  }));
}

// The newest console file logs-collector wrote for this VM, if LOGS_DIR has one; text only.
function consoleLines(console) {
  $("console").hidden = console === null;
  if (console === null) return;
  $("console-file").textContent = console.file;
  $("console-lines").textContent = console.lines.join("\n");
  $("console-lines").scrollTop = $("console-lines").scrollHeight; // the newest lines in view
}

function processes(list) {
  $("processes").querySelector("tbody").replaceChildren(...list.map((p) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of [[p.process], [p.pid === null ? "—" : String(p.pid)], [mib(p.rss_bytes), "num"],
      [mib(p.pss_bytes), "num"], [mib(p.working_set_bytes), "num"], [mib(p.swap_bytes), "num"]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  }));
}

// One uPlot per chart: ``data`` {times, series: {label: bytes[]}}, plus constant lines [label, bytes].
function draw(id, title, data, lines) {
  const names = Object.keys(data.series);
  const known = lines.filter(([, value]) => value !== null && value !== undefined);
  const columns = [
    data.times,
    ...names.map((n) => data.series[n].map((v) => (v === null ? null : v / MiB))),
    ...known.map(([, value]) => data.times.map(() => value / MiB)),
  ];
  const labels = [...names, ...known.map(([label]) => label)];
  // What the chart shows, read by the browser test.
  $(id).dataset.series = JSON.stringify(labels);
  const key = labels.join("\u0000");
  if (charts[id] && charts[id].key === key) {
    charts[id].plot.setData(columns);
    return;
  }
  if (charts[id]) charts[id].plot.destroy();
  const series = [
    {},
    // Processes from blue on (palette(2)): red and grey are the dashed reference lines.
    ...names.map((n, i) => ({ label: n, stroke: palette(i + 2), width: 2, spanGaps: false, points: { size: 5 } })),
    ...known.map(([label], i) => ({ label, stroke: i === 0 ? "#777" : "#d00", dash: [6, 4], width: 1.5, points: { show: false } })),
  ];
  const plot = new uPlot(
    { width: $(id).clientWidth || 1200, height: 320, title, scales: { x: { time: true } }, axes: [{}, { label: "MiB", size: 70 }], series },
    columns,
    $(id),
  );
  charts[id] = { key, plot };
}

let timer = null;
function schedule() {
  clearInterval(timer);
  if ($("refresh").checked) timer = setInterval(load, REFRESH_MS);
}

$("range").addEventListener("change", load);
// A link can choose the range (/vms/ns/vm?range=300), as on the dashboard; an unknown value keeps the default.
const linkedRange = new URLSearchParams(location.search).get("range");
if ([...$("range").options].some((o) => o.value === linkedRange)) $("range").value = linkedRange;
$("refresh").addEventListener("change", schedule);
load();
schedule();
