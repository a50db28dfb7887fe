// The eventcore dashboard: polls /api/performance and keeps the last few minutes
// of figures in the charts. No build step, no network access beyond this server.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("interval_ms")) || 2000;
const KEEP = 150; // points per chart: five minutes at the default interval
const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6"];

function lineChart(canvasId, series, targets) {
  // series: [{label, color}], targets: [{label, color}] drawn dashed and flat.
  const datasets = series.map((s) => ({
    label: s.label, data: [], borderColor: s.color, backgroundColor: s.color,
    borderWidth: 2, pointRadius: 0, tension: 0.2,
  }));
  for (const t of targets) {
    datasets.push({
      label: t.label, data: [], borderColor: t.color, borderDash: [6, 4],
      borderWidth: 1, pointRadius: 0, target: true,
    });
  }
  return new Chart(document.getElementById(canvasId), {
    type: "line",
    data: { labels: [], datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true } },
      plugins: { legend: { labels: { boxWidth: 12 } } },
    },
  });
}

const charts = {
  throughput: lineChart("throughput",
    [{ label: "commands/s", color: COLORS[0] }, { label: "events/s", color: COLORS[1] }],
    [{ label: "target commands/s", color: COLORS[0] }, { label: "target events/s", color: COLORS[1] }]),
  latency: lineChart("latency",
    [{ label: "p50", color: COLORS[0] }, { label: "p95", color: COLORS[2] },
     { label: "p99", color: COLORS[1] }],
    [{ label: "target p50", color: COLORS[0] }, { label: "target p95", color: COLORS[2] },
     { label: "target p99", color: COLORS[1] }]),
  memory: lineChart("memory", [{ label: "MB", color: COLORS[3] }],
    [{ label: "target MB", color: COLORS[3] }]),
  streams: lineChart("streams", [{ label: "active streams", color: COLORS[4] }], []),
  lag: lineChart("lag", [], []),
};

function push(chart, label, values) {
  chart.data.labels.push(label);
  chart.data.datasets.forEach((dataset, i) => dataset.data.push(values[i] ?? null));
  if (chart.data.labels.length > KEEP) {
    chart.data.labels.shift();
    chart.data.datasets.forEach((dataset) => dataset.data.shift());
  }
  chart.update();
}

function pushLag(lags, label) {
  const chart = charts.lag;
  for (const name of Object.keys(lags)) {
    if (!chart.data.datasets.some((d) => d.label === name)) {
      const color = COLORS[chart.data.datasets.length % COLORS.length];
      chart.data.datasets.push({
        label: name, data: chart.data.labels.map(() => null), borderColor: color,
        backgroundColor: color, borderWidth: 2, pointRadius: 0,
      });
    }
  }
  push(chart, label, chart.data.datasets.map((d) => lags[d.label]));
}

function fmt(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function showFigures(s) {
  const figures = [
    ["commands/s", fmt(s.commands_per_second)], ["events/s", fmt(s.events_per_second)],
    ["p50 ms", fmt(s.latency_p50_ms, 2)], ["p95 ms", fmt(s.latency_p95_ms, 2)],
    ["p99 ms", fmt(s.latency_p99_ms, 2)], ["memory MB", fmt(s.memory_mb)],
    ["CPU %", fmt(s.cpu_percent)], ["active streams", String(s.active_streams)],
    ["failed commands", String(s.failed_commands)],
  ];
  const box = document.getElementById("figures");
  box.replaceChildren(...figures.map(([name, value]) => {
    const div = document.createElement("div");
    div.className = "figure";
    div.dataset.name = name;
    div.innerHTML = '<div class="name"></div><div class="value"></div>';
    div.querySelector(".name").textContent = name;
    div.querySelector(".value").textContent = value;
    return div;
  }));
}

function showTargets(checks) {
  const body = document.querySelector("#targets tbody");
  body.replaceChildren(...checks.map((c) => {
    const row = document.createElement("tr");
    const status = document.createElement("td");
    status.textContent = c.status;
    status.className = c.status.replace(" ", "");
    const text = document.createElement("td");
    text.textContent = c.text;
    row.append(status, text);
    return row;
  }));
}

function showAlerts(alerts) {
  const list = document.getElementById("alerts");
  if (!alerts.length) {
    list.innerHTML = '<li class="none">none</li>';
    return;
  }
  list.replaceChildren(...alerts.map((a) => {
    const item = document.createElement("li");
    item.textContent = `${new Date(a.at * 1000).toLocaleTimeString()} ${a.message}`;
    return item;
  }));
}

window.eventcoreDashboard = { updates: 0, last: null };

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/performance", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    const s = data.snapshot, t = data.targets;
    const label = new Date(s.at * 1000).toLocaleTimeString();
    push(charts.throughput, label, [s.commands_per_second, s.events_per_second,
      t.min_commands_per_second, t.min_events_per_second]);
    push(charts.latency, label, [s.latency_p50_ms, s.latency_p95_ms, s.latency_p99_ms,
      t.max_p50_ms, t.max_p95_ms, t.max_p99_ms]);
    push(charts.memory, label, [s.memory_mb, t.max_memory_mb]);
    push(charts.streams, label, [s.active_streams]);
    pushLag(s.projection_lag, label);
    showFigures(s);
    showTargets(data.checks);
    showAlerts(data.alerts);
    status.textContent = `updated ${label}`;
    status.className = "";
    window.eventcoreDashboard.updates += 1;
    window.eventcoreDashboard.last = data;
  } catch (error) {
    status.textContent = `cannot reach the server (${error.message})`;
    status.className = "down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
