"use strict";
// The operators' dashboard: polls /api/state and draws it. Every figure carries a
// data-testid (and the raw number in data-value) so tests can read it.
(function () {
  const REFRESH_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";
  const intFmt = new Intl.NumberFormat("en-US");

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function num(testid, value, text) {
    return el("td", { class: "n", "data-testid": testid, "data-value": value },
      text !== undefined ? text : (value === null || value === undefined ? "–" : intFmt.format(value)));
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function replaceBody(table, rows, columns, emptyText) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = el("tr");
      tr.appendChild(el("td", { class: "empty", colspan: columns }, emptyText));
      body.appendChild(tr);
    }
  }
  function badge(status, testid) {
    const td = el("td", { "data-testid": testid, "data-value": status });
    td.appendChild(el("span", { class: "status s-" + status }, status));
    return td;
  }

  function chart(currency, points) {
    const W = 440, H = 190, L = 70, R = 56, T = 12, B = 26;
    const box = el("div", { class: "chart", "data-testid": "chart-" + currency });
    box.appendChild(el("h3", {}, currency));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", currency + " gross, net and efficiency per cycle");
    const n = points.length;
    const maxV = Math.max(1, ...points.map(p => Math.max(p.gross_minor, p.net_minor)));
    const x = i => L + (n <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1));
    const y = v => T + (H - T - B) * (1 - v / maxV);
    const ye = e => T + (H - T - B) * (1 - Math.max(0, Math.min(1, e)));
    const add = (tag, attrs, text) => {
      const node = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      svg.appendChild(node);
      return node;
    };
    for (const f of [0, 0.5, 1]) {  // grid and axes labels
      const yy = T + (H - T - B) * (1 - f);
      add("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e3e7ec" });
      add("text", { x: L - 6, y: yy + 4, "text-anchor": "end" }, intFmt.format(Math.round(maxV * f)));
      add("text", { x: W - R + 6, y: yy + 4 }, pct(f));
    }
    add("text", { x: L, y: H - 6 }, n ? "#" + points[0].cycle_seq : "");
    if (n > 1) add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "#" + points[n - 1].cycle_seq);
    const series = [["gross_minor", "var(--gross)", y], ["net_minor", "var(--net)", y],
      ["netting_efficiency", "var(--eff)", ye]];
    for (const [key, color, scale] of series) {
      const coords = points.map((p, i) => `${x(i).toFixed(1)},${scale(p[key]).toFixed(1)}`);
      add("polyline", { points: coords.join(" "), fill: "none", stroke: color, "stroke-width": 2,
        "data-testid": `chart-${currency}-${key}`,
        ...(key === "netting_efficiency" ? { "stroke-dasharray": "4 3" } : {}) });
      points.forEach((p, i) => {
        const c = add("circle", { cx: x(i), cy: scale(p[key]), r: 3, fill: color });
        const title = document.createElementNS(SVG, "title");
        title.textContent = `${p.cycle_id} ${key}: ` +
          (key === "netting_efficiency" ? pct(p[key]) : intFmt.format(p[key]));
        c.appendChild(title);
      });
    }
    box.appendChild(svg);
    const legend = el("div", { class: "legend" });
    for (const [label, color] of [["gross", "var(--gross)"], ["net", "var(--net)"],
      ["efficiency (right axis)", "var(--eff)"]]) {
      const s = el("span"); const i = el("i"); i.style.background = color;
      s.appendChild(i); s.appendChild(document.createTextNode(label)); legend.appendChild(s);
    }
    box.appendChild(legend);
    return box;
  }

  function renderCycles(cycles) {
    const charts = document.getElementById("charts");
    charts.replaceChildren(...Object.entries(cycles).map(([ccy, pts]) => chart(ccy, pts)));
    const rows = [];
    for (const points of Object.values(cycles)) {
      for (const p of points.slice().reverse()) {
        const id = "cycle-" + p.cycle_id;
        const tr = el("tr", { "data-testid": id });
        tr.appendChild(el("td", { "data-testid": id + "-id" }, p.cycle_id));
        tr.appendChild(el("td", {}, (p.closed_at || "").replace("T", " ").replace(/\.\d+Z$/, "Z")));
        tr.appendChild(num(id + "-obligations", p.obligation_count));
        tr.appendChild(num(id + "-gross", p.gross_minor));
        tr.appendChild(num(id + "-net", p.net_minor));
        tr.appendChild(num(id + "-efficiency", p.netting_efficiency, pct(p.netting_efficiency)));
        tr.appendChild(num(id + "-instructions", p.instruction_count));
        tr.appendChild(num(id + "-deferred", p.deferred_count));
        tr.appendChild(num(id + "-rejected", p.rejected_count));
        rows.push(tr);
      }
    }
    replaceBody(document.getElementById("cycles"), rows, 9, "no cycles closed yet");
  }

  function renderThroughput(throughput) {
    const rows = Object.entries(throughput).map(([topic, t]) => {
      const tr = el("tr", { "data-testid": "throughput-" + topic });
      tr.appendChild(el("td", {}, topic));
      tr.appendChild(num("rate-" + topic, t.rate,
        t.rate === null ? "–" : t.rate.toFixed(t.rate < 10 ? 2 : 0)));
      tr.appendChild(num("logend-" + topic, t.log_end));
      return tr;
    });
    replaceBody(document.getElementById("throughput"), rows, 3, "no event topics yet");
  }

  function renderDlq(dlq, total) {
    const rows = Object.entries(dlq).map(([reason, count]) => {
      const tr = el("tr");
      tr.appendChild(el("td", {}, reason));
      tr.appendChild(num("dlq-" + reason, count));
      return tr;
    });
    replaceBody(document.getElementById("dlq"), rows, 2, "nothing rejected");
    const cell = document.querySelector('[data-testid="dlq-total"]');
    cell.textContent = intFmt.format(total); cell.setAttribute("data-value", total);
  }

  function renderLag(lag) {
    const rows = [];
    for (const g of lag.groups || []) {
      const gid = "lag-" + g.group;
      const parts = g.partitions.length ? g.partitions : [null];
      parts.forEach((p, i) => {
        const id = p ? `${gid}-${p.topic}-${p.partition}` : gid + "-none";
        const tr = el("tr", { "data-testid": id, "data-group": g.group, class: i ? "" : "first" });
        if (i === 0) {
          tr.appendChild(el("td", { "data-testid": gid }, g.group));
          tr.appendChild(el("td", { "data-testid": gid + "-state" }, g.state));
          tr.appendChild(num(gid + "-members", g.members));
          tr.appendChild(badge(g.status, gid + "-status"));
        } else {
          for (let k = 0; k < 4; k++) tr.appendChild(el("td"));
        }
        if (p) {
          tr.appendChild(el("td", {}, p.topic));
          tr.appendChild(num(id + "-partition", p.partition));
          tr.appendChild(num(id + "-committed", p.committed_offset));
          tr.appendChild(num(id + "-logend", p.log_end_offset));
          tr.appendChild(num(id + "-lag", p.lag));
          tr.appendChild(num(id + "-lagtime", p.lag_seconds,
            p.lag_seconds === null ? "–" : p.lag_seconds.toFixed(1) + "s"));
          tr.appendChild(badge(p.status, id + "-status"));
        } else {
          tr.appendChild(el("td", { class: "empty", colspan: 7 }, "no partitions"));
        }
        rows.push(tr);
      });
    }
    replaceBody(document.getElementById("lag"), rows, 11, "no consumer groups");
  }

  function renderBatches(batches) {
    const host = document.getElementById("batches");
    const blocks = Object.entries(batches).map(([rail, list]) => {
      const div = el("div", { "data-testid": "rail-" + rail });
      div.appendChild(el("h3", {}, rail));
      const table = el("table");
      const head = el("tr");
      for (const [h, cls] of [["batch", ""], ["cycle", ""], ["created", ""],
        ["instructions", "n"], ["control sum (minor)", "n"], ["control sum (rail units)", "n"]]) {
        head.appendChild(el("th", cls ? { class: cls } : {}, h));
      }
      table.appendChild(el("thead")).appendChild(head);
      table.appendChild(el("tbody"));
      const rows = list.map(b => {
        const id = "batch-" + b.batch_id;
        const tr = el("tr", { "data-testid": id, "data-rail": rail });
        tr.appendChild(el("td", { "data-testid": id + "-id" }, b.batch_id));
        tr.appendChild(el("td", {}, b.cycle_id));
        tr.appendChild(el("td", {}, (b.created_at || "").replace("T", " ").replace(/\.\d+Z$/, "Z")));
        tr.appendChild(num(id + "-instructions", b.instruction_count));
        tr.appendChild(num(id + "-control", b.control_sum_minor));
        tr.appendChild(num(id + "-control-rail", b.control_sum_rail_units));
        return tr;
      });
      replaceBody(table, rows, 6, "no batches yet");
      div.appendChild(table);
      return div;
    });
    host.replaceChildren(...blocks);
    if (!blocks.length) host.appendChild(el("p", { class: "empty" }, "no rails yet"));
  }

  function renderFinality(cycles) {
    const rows = [];
    for (const c of cycles) {
      c.rails.forEach((r, i) => {
        const id = "finality-" + c.cycle_id + "-" + r.rail_id;
        const tr = el("tr", { "data-testid": id });
        tr.appendChild(el("td", {}, i === 0 ? c.cycle_id : ""));
        tr.appendChild(el("td", {}, r.rail_id));
        tr.appendChild(num(id + "-settled", r.settled));
        tr.appendChild(num(id + "-failed", r.failed));
        tr.appendChild(num(id + "-pending", r.pending));
        tr.appendChild(num(id + "-carried", r.carried_minor));
        const state = r.pending === 0 ? "FINAL" : (r.overdue > 0 ? "OVERDUE" : "PENDING");
        tr.appendChild(badge(state, id + "-state"));
        rows.push(tr);
      });
    }
    replaceBody(document.getElementById("finality"), rows, 7, "no cycles yet");
  }

  function units(value, decimals) {
    const text = BigInt(value).toString().padStart(decimals + 1, "0");
    const whole = text.slice(0, text.length - decimals);
    return intFmt.format(BigInt(whole)) + (decimals ? "." + text.slice(-decimals) : "");
  }

  function renderChain(chain) {
    const rows = chain.map(r => {
      const id = "chain-" + r.rail_id;
      const tr = el("tr", { "data-testid": id });
      tr.appendChild(el("td", {}, r.rail_id));
      tr.appendChild(el("td", {}, r.token));
      tr.appendChild(el("td", { class: "addr", "data-testid": id + "-address", title: r.address }, r.address));
      if (r.error) {
        tr.appendChild(el("td", { colspan: 2, class: "empty", "data-testid": id + "-error" }, r.error));
      } else {
        tr.appendChild(num(id + "-balance", r.balance_units, units(r.balance_units, r.decimals)));
        tr.appendChild(num(id + "-block", r.block_number));
      }
      return tr;
    });
    replaceBody(document.getElementById("chain"), rows, 5, "no token rails");
  }

  async function refresh() {
    try {
      const response = await fetch("/api/state", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const s = await response.json();
      renderCycles(s.cycles);
      renderThroughput(s.throughput);
      renderDlq(s.dlq, s.dlq_total);
      renderLag(s.lag);
      renderBatches(s.batches);
      renderFinality(s.finality || []);
      renderChain(s.chain || []);
      const updated = document.getElementById("updated");
      updated.textContent = "updated " + new Date(s.updated_ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      updated.setAttribute("data-value", s.updated_ms);
      const errors = Object.entries(s.errors || {}).map(([k, v]) => k + ": " + v).join("; ");
      document.getElementById("errors").textContent = errors;
      document.body.setAttribute("data-loaded", "true");
    } catch (e) {
      document.getElementById("errors").textContent = "cannot reach the dashboard server: " + e.message;
    }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
