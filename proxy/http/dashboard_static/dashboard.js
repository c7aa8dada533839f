// The adaptive-proxy dashboard: polls GET /v1/adaptive/stats and draws it as inline SVG.
// No dependencies and no build step. A master key (with server.auth) lives in this tab's
// sessionStorage only; it is sent as a bearer header and never written into the page.
"use strict";

const KEY_STORAGE = "adaptive-proxy-master-key";
const REFRESH_MS = 5000;
const COLOURS = ["#3b6fd8", "#e0832f", "#3ea35a", "#c64545", "#8456c9", "#2aa3a3",
  "#b28b1d", "#d24f9a"];
const SVG_NS = "http://www.w3.org/2000/svg";

let timer = null;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function usd(x) { return x === null || x === undefined ? "–" : "$" + x.toFixed(6); }
function num(x, digits) { return x === null || x === undefined ? "–" : x.toFixed(digits); }
function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }

function kpi(container, field, label, value) {
  const box = el("div", { class: "kpi" });
  box.appendChild(el("span", { class: "label" }, label));
  box.appendChild(el("span", { class: "value", "data-field": field }, value));
  container.appendChild(box);
}

function niceMax(values) {
  let max = 0;
  for (const v of values) if (v !== null && v > max) max = v;
  return max > 0 ? max * 1.1 : 1;
}

// A line chart: lines = [{name, values: [number|null]}], one value per time point.
function lineChart(times, lines, opts) {
  const width = opts.width || 360, height = opts.height || 150;
  const left = 44, bottom = opts.height ? 4 : 18, top = 8;
  const svg = svgEl("svg", { class: "chart", width, height, role: "img",
    "data-chart": opts.id });
  const all = lines.flatMap((l) => l.values).concat(opts.extra || []);
  const yMax = niceMax(all);
  const x = (i) => left + (times.length > 1 ? i * (width - left - 6) / (times.length - 1) : 0);
  const y = (v) => top + (height - top - bottom) * (1 - v / yMax);
  svg.appendChild(svgEl("line", { x1: left, y1: y(0), x2: width - 4, y2: y(0), stroke: "#ccd" }));
  const label = svgEl("text", { x: 2, y: top + 8 });
  label.textContent = opts.format(yMax);
  svg.appendChild(label);
  const zero = svgEl("text", { x: 2, y: y(0) });
  zero.textContent = "0";
  svg.appendChild(zero);
  lines.forEach((line, k) => {
    let d = "";
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += (d === "" ? "M" : "L") + x(i).toFixed(1) + "," + y(v).toFixed(1);
    });
    const colour = line.colour || COLOURS[k % 8];
    if (d !== "") {
      svg.appendChild(svgEl("path", { d, fill: "none", stroke: colour,
        "stroke-width": 1.8, "stroke-dasharray": line.dash || "" }));
    }
    if (!line.dash) {
      // A point per value, so that a window with one busy step still shows it.
      line.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        svg.appendChild(svgEl("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.2,
          fill: colour }));
      });
    }
  });
  return figure(opts.caption, svg, lines.map((l, k) => [l.name, l.colour || COLOURS[k % 8]]));
}

// Stacked bars: stacks = {name: [count per time point]}, drawn as a rate per second.
function stackedBars(times, stacks, stepS, opts) {
  const width = 360, height = 150, left = 44, bottom = 18, top = 8;
  const svg = svgEl("svg", { class: "chart", width, height, role: "img",
    "data-chart": opts.id });
  const names = Object.keys(stacks).sort();
  const totals = times.map((_, i) => names.reduce((s, n) => s + stacks[n][i], 0) / stepS);
  const yMax = niceMax(totals);
  const slot = (width - left - 6) / Math.max(times.length, 1);
  const y = (v) => (height - top - bottom) * v / yMax;
  times.forEach((_, i) => {
    let base = height - bottom;
    names.forEach((name, k) => {
      const h = y(stacks[name][i] / stepS);
      if (h <= 0) return;
      base -= h;
      svg.appendChild(svgEl("rect", { x: (left + i * slot).toFixed(1), y: base.toFixed(1),
        width: Math.max(slot - 1, 1).toFixed(1), height: h.toFixed(1),
        fill: COLOURS[k % 8] }));
    });
  });
  svg.appendChild(svgEl("line", { x1: left, y1: height - bottom, x2: width - 4,
    y2: height - bottom, stroke: "#ccd" }));
  const label = svgEl("text", { x: 2, y: top + 8 });
  label.textContent = yMax.toFixed(2) + "/s";
  svg.appendChild(label);
  return figure(opts.caption, svg, names.map((n, k) => [n, COLOURS[k % 8]]));
}

function figure(caption, svg, legend) {
  const fig = el("figure");
  fig.appendChild(svg);
  const cap = el("figcaption", {}, caption);
  const keys = el("div", { class: "legend" });
  for (const [name, colour] of legend) {
    const item = el("span");
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(name));
    keys.appendChild(item);
  }
  fig.appendChild(cap);
  fig.appendChild(keys);
  return fig;
}

function policyCard(name, p, stepS) {
  const card = el("article", { class: "policy", "data-policy": name });
  const title = el("h2", {}, name + " ");
  title.appendChild(el("span", { class: "type" }, p.type || ""));
  card.appendChild(title);
  const kpis = el("div", { class: "kpis" });
  kpi(kpis, "requests", "requests", String(p.requests));
  kpi(kpis, "rps", "requests/s", num(p.rps, 3));
  kpi(kpis, "errors", "errors", String(p.errors));
  kpi(kpis, "cost_usd", "cost", usd(p.cost_usd));
  kpi(kpis, "cost_per_request_usd", "cost / request", usd(p.cost_per_request_usd));
  const alt = p.alternatives;
  kpi(kpis, "cheapest_cost_usd", "always " + (alt.cheapest_arm || "cheapest"),
    usd(alt.cheapest_cost_usd));
  kpi(kpis, "most_expensive_cost_usd", "always " + (alt.most_expensive_arm || "most expensive"),
    usd(alt.most_expensive_cost_usd));
  kpi(kpis, "samples_mean", "samples / request" + (p.samples.n_max ? " (n_max " +
    p.samples.n_max + ")" : ""), num(p.samples.mean, 2));
  kpi(kpis, "cache_hit_rate", "decision cache hits", pct(p.cache.hit_rate));
  const fallbacks = Object.values(p.fallbacks).reduce((a, b) => a + b, 0);
  kpi(kpis, "fallbacks", "predictor fallbacks", String(fallbacks));
  for (const [arm, count] of Object.entries(p.arms)) {
    kpi(kpis, "arm:" + arm, "arm " + arm, String(count));
  }
  if (p.sequential) {
    kpi(kpis, "rounds_mean", "rounds / request", num(p.sequential.rounds_mean, 2));
    for (const [why, count] of Object.entries(p.sequential.stop_reasons)) {
      kpi(kpis, "stop:" + why, "stopped by " + why, String(count));
    }
  }
  if (p.cascade) {
    kpi(kpis, "escalation_rate", "escalated", pct(p.cascade.escalation_rate));
    kpi(kpis, "cheap_answer_rate", "cheap stages answered", pct(p.cascade.cheap_answer_rate));
    kpi(kpis, "agreement_rate", "cheap stages agreed", pct(p.cascade.agreement_rate));
  }
  if (p.budget) {
    kpi(kpis, "budget_target", "budget target", num(p.budget.target, 4));
    kpi(kpis, "budget_realised", "realised", num(p.budget.realised, 4));
    kpi(kpis, "budget_lambda", "λ", num(p.budget.lambda, 6));
  }
  card.appendChild(kpis);
  const times = p.series.map((s) => s.t);
  const arms = {};
  for (const arm of Object.keys(p.arms)) arms[arm] = p.series.map((s) => s.arms[arm] || 0);
  const charts = el("div", { class: "charts" });
  charts.appendChild(stackedBars(times, arms, stepS,
    { id: "arms", caption: "requests per second by arm" }));
  const perRequest = (key) => p.series.map((s) => (s.compared ? s[key] / s.compared : null));
  charts.appendChild(lineChart(times, [
    { name: "this policy", values: perRequest("compared_cost_usd") },
    { name: "always " + (alt.cheapest_arm || "cheapest"), values: perRequest("cheapest_cost_usd"),
      dash: "4 3" },
    { name: "always " + (alt.most_expensive_arm || "most expensive"),
      values: perRequest("most_expensive_cost_usd"), dash: "2 2" },
  ], { id: "cost", caption: "cost per request (USD) against the alternatives",
    format: (v) => "$" + v.toPrecision(2) }));
  if (p.samples.n_max) {
    charts.appendChild(lineChart(times, [
      { name: "mean samples", values: p.series.map((s) => s.samples_mean) },
      { name: "n_max", values: p.series.map(() => p.samples.n_max), dash: "4 3" },
    ], { id: "samples", caption: "samples drawn per request", format: (v) => v.toFixed(1) }));
  }
  if (p.budget) {
    const b = (key) => p.series.map((s) => (s.budget ? s.budget[key] : null));
    charts.appendChild(lineChart(times, [
      { name: "target", values: b("target"), dash: "4 3" },
      { name: "realised", values: b("realised") },
    ], { id: "budget", caption: "budget: target and realised", format: (v) => v.toPrecision(2) }));
    charts.appendChild(lineChart(times, [{ name: "λ", values: b("lambda"), colour: COLOURS[4] }],
      { id: "lambda", caption: "λ, the price of compute", format: (v) => v.toPrecision(2) }));
  }
  card.appendChild(charts);
  return card;
}

function fillTable(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function render(stats) {
  const policies = document.getElementById("policies");
  policies.replaceChildren();
  for (const [name, p] of Object.entries(stats.policies)) {
    policies.appendChild(policyCard(name, p, stats.step_s));
  }
  fillTable("upstreams", Object.entries(stats.upstreams).map(([name, u]) => {
    const spark = lineChart(u.series.map((s) => s.t), [{ name: "p99", values:
      u.series.map((s) => s.p99_s) }], { id: "upstream-p99", caption: "", width: 240,
      height: 44, format: (v) => v.toFixed(2) + "s" });
    spark.querySelector(".legend").remove();
    return [name, String(u.calls), String(u.errors), num(u.p50_s, 3), num(u.p99_s, 3), spark];
  }));
  const clients = stats.clients;
  document.getElementById("clients-section").hidden = !clients;
  if (clients) {
    fillTable("clients", clients.map((c) => [c.name, c.source,
      usd(stats.client_spend_usd[c.name] || 0), usd(c.spend_today_usd),
      c.limit_usd_per_day === null ? "none" : usd(c.limit_usd_per_day),
      usd(c.spend_this_month_usd),
      c.limit_usd_per_month === null ? "none" : usd(c.limit_usd_per_month)]));
  }
  const learner = stats.learner;
  document.getElementById("learner-section").hidden = !learner;
  if (learner) {
    const rows = [];
    for (const kind of ["counters", "gauges"]) {
      for (const [name, children] of Object.entries(learner[kind])) {
        for (const [labels, value] of Object.entries(children)) {
          rows.push([name, labels, String(Number(value.toPrecision(6)))]);
        }
      }
    }
    fillTable("learner", rows);
  }
  document.getElementById("foot-window").textContent = String(stats.window_s);
  document.getElementById("replicas").textContent = stats.replicas.length + " replica(s), " +
    stats.backend;
  document.getElementById("status").textContent = "updated " +
    new Date(stats.now_s * 1000).toLocaleTimeString();
  document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1);
}

function showLogin(message) {
  document.getElementById("content").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  const error = document.getElementById("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  document.getElementById("status").textContent = "login needed";
}

async function refresh() {
  const windowS = document.getElementById("window").value;
  const key = sessionStorage.getItem(KEY_STORAGE);
  const headers = key ? { Authorization: "Bearer " + key } : {};
  let response;
  try {
    response = await fetch("/v1/adaptive/stats?window_s=" + windowS, { headers });
  } catch (err) {
    document.getElementById("status").textContent = "proxy unreachable; retrying";
    return;
  }
  if (response.status === 401 || response.status === 403) {
    sessionStorage.removeItem(KEY_STORAGE);
    stop();
    showLogin(key ? "That key was refused: it is not a master key of this proxy." : "");
    return;
  }
  if (!response.ok) {
    document.getElementById("status").textContent = "stats unavailable (" + response.status +
      "); retrying";
    return;
  }
  const stats = await response.json();
  document.getElementById("login").hidden = true;
  document.getElementById("content").hidden = false;
  document.getElementById("logout").hidden = !key;
  render(stats);
}

function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

function start() {
  stop();
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  // ?window_s=300 in the page's address preselects a window.
  const asked = new URLSearchParams(location.search).get("window_s");
  const select = document.getElementById("window");
  if (asked && [...select.options].some((o) => o.value === asked)) select.value = asked;
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key");
    sessionStorage.setItem(KEY_STORAGE, input.value);
    input.value = "";
    start();
  });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    stop();
    showLogin("");
  });
  document.getElementById("window").addEventListener("change", start);
  start();
});
