// The live page of `edgeft camera --serve`: polls /status.json and draws the numbers and a
// latency chart (plain SVG, no library: the device may be offline).
"use strict";

const STAGES = ["capture", "preprocess", "inference", "post"];
const COLOURS = { capture: "#4a90d9", preprocess: "#e0b84a", inference: "#d9534f", post: "#5cb85c" };
const HISTORY = 120; // chart points (one per poll)
const POLL_MS = 500;
const history = [];

const $ = (id) => document.getElementById(id);

function text(id, value) {
  $(id).textContent = value === null || value === undefined ? "-" : String(value);
}

function drawTop(top) {
  const ol = $("top");
  ol.replaceChildren(...top.map((t) => {
    const li = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(120 * t.prob)}px`;
    li.append(bar, `${t.label} ${(100 * t.prob).toFixed(1)}%`);
    return li;
  }));
}

function drawChart() {
  const svg = $("chart");
  const w = 320, h = 140, pad = 4;
  const max = Math.max(1, ...history.flatMap((p) => STAGES.map((s) => p[s] || 0)));
  const x = (i) => w - pad - ((history.length - 1 - i) * (w - 2 * pad)) / (HISTORY - 1); // newest at the right
  const y = (v) => h - pad - (v / max) * (h - 2 * pad);
  const lines = STAGES.map((s) => {
    const pts = history.map((p, i) => `${x(i).toFixed(1)},${y(p[s] || 0).toFixed(1)}`).join(" ");
    return `<polyline fill="none" stroke="${COLOURS[s]}" stroke-width="1.5" points="${pts}"/>`;
  });
  const scale = `<text x="${w - pad}" y="12" fill="#888" font-size="10" text-anchor="end">${max.toFixed(1)} ms</text>`;
  svg.innerHTML = lines.join("") + scale;
  const last = history[history.length - 1] || {};
  $("legend").innerHTML = STAGES.map((s) =>
    `<li><i style="background:${COLOURS[s]}"></i>${s} <b>${last[s] === undefined ? "-" : last[s].toFixed(2)}</b></li>`
  ).join("");
}

function show(st) {
  const h = st.health || {};
  const badge = $("status");
  badge.textContent = st.status;
  badge.className = `badge ${st.status === "ok" ? "ok" : "bad"}`;
  text("bundle", h.bundle);
  text("backend", h.backend);
  text("sha", h.sha256 ? h.sha256.slice(0, 12) : null);
  text("source", h.source);
  text("fps", st.fps === null ? null : st.fps.toFixed(1));
  text("frame", st.frame);
  text("age", st.age_ms === null ? null : st.age_ms.toFixed(1));
  text("dropped", st.dropped);
  drawTop(st.top || []);
  if (st.latency_ms && st.latency_ms.inference !== null) {
    history.push(st.latency_ms);
    if (history.length > HISTORY) history.shift();
    drawChart();
  }
  const sw = h.swap;
  text("swap", sw ? `model update: ${sw.result}${sw.reason ? ` (${sw.reason})` : ""}` : "");
}

async function poll() {
  try {
    const r = await fetch("status.json", { cache: "no-store" });
    show(await r.json());
  } catch (e) {
    $("status").textContent = "unreachable";
    $("status").className = "badge bad";
  }
  setTimeout(poll, POLL_MS);
}

poll();
