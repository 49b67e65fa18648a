"use strict";
// The operators' dashboard: polls /api/state and draws it. Every figure carries a
// data-testid (and the raw number in data-value: amounts in integer minor units) so
// tests can read it. Amounts are shown in currency units, formatted from the integer
// minor units with BigInt and string arithmetic (never a float), the same rule as
// clearing_core.operations.money_format; the exact minor units are in each title.
(function () {
  const REFRESH_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";
  const SHOWN = { cycles: 20, liquidity: 15, lag: 25, batches: 5 };  // rows before "show all"
  const intFmt = new Intl.NumberFormat("en-US");
  const expanded = {};  // table key -> the operator asked for every row
  let units = { currencies: {}, rails: {} };

  // JSON numbers above 2^53 would lose digits in a double: read them as BigInt from
  // their source text (JSON.parse source access; where a browser lacks it, such
  // integers are first rewritten as tagged strings), so money stays exact.
  const BIG = "\u0000bigint:";
  let sourceAccess = false;
  JSON.parse("1", function (_key, value, context) { sourceAccess = !!context; return value; });
  function parseExact(text) {
    if (!sourceAccess) {
      text = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, token =>
        /^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token)) ? JSON.stringify(BIG + token) : token);
    }
    return JSON.parse(text, function (_key, value, context) {
      if (typeof value === "string" && value.startsWith(BIG)) return BigInt(value.slice(BIG.length));
      if (typeof value === "number" && !Number.isSafeInteger(value) && context &&
          /^-?\d+$/.test(context.source)) return BigInt(context.source);
      return value;
    });
  }

  function groupThousands(digits) { return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  // minor units (number, BigInt or digit string) -> "1,294,390.44" for exponent 2
  function fmtMinor(value, exponent) {
    let n = BigInt(value);
    const negative = n < 0n;
    if (negative) n = -n;
    const digits = n.toString().padStart(exponent + 1, "0");
    const whole = digits.slice(0, digits.length - exponent);
    return (negative ? "-" : "") + groupThousands(whole) +
      (exponent ? "." + digits.slice(digits.length - exponent) : "");
  }
  // an axis label that fits: 150,000,000 minor at exponent 2 -> "1.5M"
  function fmtCompact(value, exponent) {
    const n = BigInt(value);
    const abs = n < 0n ? -n : n;
    let scale = 0;
    const suffixes = ["", "K", "M", "B", "T"];
    while (scale < suffixes.length - 1 && abs >= 10n ** BigInt(exponent + 3 * (scale + 1))) scale++;
    let text = fmtMinor(n, exponent + 3 * scale);
    if (text.includes(".")) text = text.replace(/0+$/, "").replace(/\.$/, "");
    return text + suffixes[scale];
  }
  function currencyExponent(currency) {
    const c = units.currencies[currency];
    return c ? c.exponent : null;
  }

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
  // an amount: currency units in the text, minor units in data-value and the title
  function amountCell(testid, minor, exponent, unit, extraTitle) {
    if (minor === null || minor === undefined) return num(testid, null);
    const known = exponent !== null && exponent !== undefined;
    const text = known ? fmtMinor(minor, exponent) + " " + unit : intFmt.format(minor) + " minor";
    const title = String(minor) + " minor units" + (extraTitle ? "; " + extraTitle : "");
    return el("td", { class: "n", "data-testid": testid, "data-value": minor, title }, text);
  }
  function money(testid, minor, currency, extraTitle) {
    return amountCell(testid, minor, currencyExponent(currency), currency, extraTitle);
  }
  function railMoney(testid, railUnits, rail) {
    const r = units.rails[rail];
    if (!r) return amountCell(testid, railUnits, null, rail);
    const td = amountCell(testid, railUnits, r.decimals, r.unit);
    td.setAttribute("title", String(railUnits) + " rail units (" + r.decimals + " decimals)");
    return td;
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function when(iso) { return (iso || "").replace("T", " ").replace(/\.\d+Z$/, "Z"); }
  function replaceBody(table, rows, columns, emptyText) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = el("tr");
      tr.appendChild(el("td", { class: "empty", colspan: columns }, emptyText));
      body.appendChild(tr);
    }
  }
  // Long tables show their first rows; the rest stay in the page, hidden until asked.
  function capRows(key, rows, host) {
    const limit = SHOWN[key.split(":")[0]];
    rows.forEach((tr, i) => { if (i >= limit) tr.classList.add("more"); });
    const table = rows.length ? rows[0].closest("table") : null;
    if (table) table.classList.toggle("collapsed", !expanded[key]);
    host.replaceChildren();
    if (rows.length > limit) {
      const button = el("button", { type: "button", "data-testid": key.replace(":", "-") + "-toggle" },
        expanded[key] ? "show the first " + limit : "show all " + rows.length);
      button.addEventListener("click", () => {
        expanded[key] = !expanded[key];
        if (table) table.classList.toggle("collapsed", !expanded[key]);
        button.textContent = expanded[key] ? "show the first " + limit : "show all " + rows.length;
      });
      host.appendChild(el("span", { class: "hint" }, "showing " +
        (expanded[key] ? rows.length : limit) + " of " + rows.length + " "));
      host.appendChild(button);
    }
  }
  function badge(status, testid) {
    const td = el("td", { "data-testid": testid, "data-value": status });
    td.appendChild(el("span", { class: "status s-" + status }, status));
    return td;
  }

  function renderHealth(h) {
    const host = document.getElementById("health");
    const overall = document.getElementById("health-status");
    overall.replaceChildren(el("span", { class: "status s-" + h.status }, h.status));
    overall.setAttribute("data-value", h.status);
    const tile = (signal, label, figures, detail) => {
      const div = el("div", { class: "tile t-" + h.signals[signal], "data-testid": "health-" + signal,
        "data-value": h.signals[signal] });
      div.appendChild(el("div", { class: "label" }, label));
      const big = el("div", { class: "big" });
      for (const f of figures) big.appendChild(f);
      div.appendChild(big);
      if (detail) div.appendChild(detail);
      return div;
    };
    const fig = (testid, value, text) => el("span", { "data-testid": testid, "data-value": value },
      text !== undefined ? text : intFmt.format(value));
    const small = (text) => el("div", { class: "detail" }, text);
    const groups = el("div", { class: "detail" });
    for (const [group, status] of Object.entries(h.groups)) {
      groups.appendChild(el("span", { class: "status s-" + status, "data-testid": "health-group-" + group,
        "data-value": status, title: group + ": " + status }, group.replace(/^clearing-/, "")));
    }
    if (!Object.keys(h.groups).length) groups.textContent = "no consumer groups seen yet";
    host.replaceChildren(
      tile("lag", "Consumer lag", [fig("health-lag-status", h.signals.lag, h.signals.lag)], groups),
      tile("stalled", "Stalled groups", [fig("health-stalled-count", h.stalled.length)],
        small(h.stalled.length ? h.stalled.join(", ") : "none")),
      tile("dlq", "Dead letters, last " + h.dlq_recent_minutes + " min",
        [fig("health-dlq-recent", h.dlq_recent)],
        (() => { const d = small("total "); d.appendChild(fig("health-dlq-total", h.dlq_total)); return d; })()),
      tile("finality", "Finality: pending / overdue",
        [fig("health-pending", h.pending), document.createTextNode(" / "), fig("health-overdue", h.overdue)],
        small(intFmt.format(h.cycles_not_final) + " cycles not final, " + intFmt.format(h.failed) + " failed")),
      tile("liquidity", "At their cap", [fig("health-at-cap", h.at_cap)],
        (() => { const d = small("deferring: "); d.appendChild(fig("health-deferring", h.deferring)); return d; })()),
      tile("dashboard", "Dashboard", [fig("health-dashboard-status", h.signals.dashboard,
        h.signals.dashboard === "OK" ? "reading" : "failing")],
        small(h.signals.dashboard === "OK" ? "every reader running" : "see the header")),
    );
  }

  function renderLiquidity(liq) {
    const rows = liq.rows.map(r => {
      const id = "liq-" + r.participant_id + "-" + r.currency;
      const tr = el("tr", { "data-testid": id, "data-row": "liquidity" });
      tr.appendChild(el("td", { "data-testid": id + "-id", title: "after cycle " + r.currency + "-" +
        String(r.cycle_seq).padStart(8, "0") }, r.participant_id));
      tr.appendChild(money(id + "-debit", r.net_debit_minor, r.currency));
      if (r.cap_minor === null) {
        tr.appendChild(el("td", { class: "n muted", "data-testid": id + "-cap", "data-value": "" }, "no cap"));
      } else {
        tr.appendChild(money(id + "-cap", r.cap_minor, r.currency));
      }
      const used = el("td", { "data-testid": id + "-used", "data-value": r.used_bp === null ? "" : r.used_bp });
      if (r.used_bp !== null) {
        const bar = el("span", { class: "bar" });
        const used_bp = Number(r.used_bp);  // a ratio, not money: a double is fine here
        const fill = el("i", { class: used_bp >= 10000 ? "full" : (used_bp >= 8000 ? "high" : "") });
        fill.style.width = Math.min(100, used_bp / 100) + "%";
        bar.appendChild(fill);
        used.appendChild(bar);
        used.appendChild(document.createTextNode(fmtMinor(r.used_bp, 2) + "%"));
      } else {
        used.textContent = "–";
      }
      tr.appendChild(used);
      tr.appendChild(r.headroom_minor === null ? num(id + "-headroom", null)
        : money(id + "-headroom", r.headroom_minor, r.currency));
      tr.appendChild(money(id + "-deferred", r.deferred_minor, r.currency));
      return tr;
    });
    replaceBody(document.getElementById("liquidity"), rows, 6, "no positions yet");
    capRows("liquidity", rows, document.getElementById("liquidity-more"));
    const summary = document.getElementById("liquidity-summary");
    summary.textContent = intFmt.format(liq.participants) + " positions, " +
      intFmt.format(liq.capped) + " with a cap" +
      (liq.rows.length < liq.participants ? ", the " + liq.rows.length + " most constrained listed" : "") + ".";
    summary.setAttribute("data-value", liq.participants);
  }

  function niceStep(max) {  // 1, 2 or 5 x 10^k minor units, four steps or fewer to max
    const target = (max + 3n) / 4n;
    let p = 1n;
    while (p * 10n <= target) p *= 10n;
    for (const m of [1n, 2n, 5n, 10n]) if (p * m >= target) return p * m;
    return p * 10n;
  }

  function chart(currency, points) {
    const W = 400, H = 190, L = 50, R = 40, T = 12, B = 26;
    const exponent = currencyExponent(currency) ?? 0;
    const box = el("div", { class: "chart", "data-testid": "chart-" + currency });
    box.appendChild(el("h3", {}, currency + (currencyExponent(currency) === null ? " (minor units)" : "")));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", currency + " gross, net and efficiency per cycle");
    const n = points.length;
    let max = 1n;
    for (const p of points) for (const v of [p.gross_minor, p.net_minor]) if (BigInt(v) > max) max = BigInt(v);
    const step = niceStep(max);
    const steps = (max + step - 1n) / step;
    const top = Number(step * steps);
    const x = i => L + (n <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1));
    const y = v => T + (H - T - B) * (1 - Number(v) / top);
    const ye = e => T + (H - T - B) * (1 - Math.max(0, Math.min(1, e)));
    const add = (tag, attrs, text) => {
      const node = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      svg.appendChild(node);
      return node;
    };
    for (let k = 0n; k <= steps; k++) {  // grid and left axis labels
      const yy = y(step * k);
      add("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e3e7ec" });
      add("text", { x: L - 5, y: yy + 4, "text-anchor": "end", "data-testid": `chart-${currency}-tick-${k}`,
        "data-value": String(step * k) }, fmtCompact(step * k, exponent));
    }
    for (const f of [0, 0.5, 1]) add("text", { x: W - R + 5, y: ye(f) + 4 }, (100 * f).toFixed(0) + "%");
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
        title.textContent = `${p.cycle_id} ${key.replace("_minor", "")}: ` + (key === "netting_efficiency"
          ? pct(p[key]) : fmtMinor(p[key], exponent) + " " + currency + " (" + String(p[key]) + " minor)");
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
    const all = [].concat(...Object.values(cycles));
    all.sort((a, b) => (b.closed_at || "").localeCompare(a.closed_at || "") ||
      b.cycle_id.localeCompare(a.cycle_id));
    const rows = all.map(p => {
      const id = "cycle-" + p.cycle_id, ccy = p.currency;
      const tr = el("tr", { "data-testid": id });
      tr.appendChild(el("td", { "data-testid": id + "-id" }, p.cycle_id));
      tr.appendChild(el("td", {}, when(p.closed_at)));
      tr.appendChild(num(id + "-obligations", p.obligation_count));
      tr.appendChild(money(id + "-gross", p.gross_minor, ccy));
      tr.appendChild(money(id + "-net", p.net_minor, ccy));
      tr.appendChild(num(id + "-efficiency", p.netting_efficiency, pct(p.netting_efficiency)));
      tr.appendChild(num(id + "-instructions", p.instruction_count));
      tr.appendChild(num(id + "-deferred", p.deferred_count));
      tr.appendChild(money(id + "-deferred-value", p.deferred_minor, ccy));
      const carried = BigInt(p.carried_in_minor) + BigInt(p.failed_carried_minor);
      const cell = money(id + "-carried", carried, ccy,
        `deferred in: ${p.carried_in_count} (${p.carried_in_minor} minor); ` +
        `failed settlements: ${p.failed_carried_count} (${p.failed_carried_minor} minor)`);
      tr.appendChild(cell);
      tr.appendChild(num(id + "-rejected", p.rejected_count));
      return tr;
    });
    replaceBody(document.getElementById("cycles"), rows, 11, "no cycles closed yet");
    capRows("cycles", rows, document.getElementById("cycles-more"));
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

  function renderDlq(s) {
    const reasons = s.dlq_reasons || Object.entries(s.dlq).map(([reason, count]) =>
      ({ reason, count, recent: null, last_ms: null, command: "clearing dlq show --reason " + reason }));
    const minutes = s.health ? s.health.dlq_recent_minutes : null;
    if (minutes) document.getElementById("dlq-recent-head").textContent = minutes + " min";
    const rows = reasons.map(r => {
      const tr = el("tr", { "data-testid": "dlq-row-" + r.reason });
      const td = el("td", { class: "reason" });
      const head = el("div", {}, r.reason + " ");
      const last = r.last_ms === null ? null : new Date(Number(r.last_ms)).toISOString();
      head.appendChild(el("span", { class: "muted small", "data-testid": "dlq-" + r.reason + "-last",
        "data-value": r.last_ms, title: last }, last === null ? "" : "last " + last.slice(11, 19) + "Z"));
      td.appendChild(head);
      td.appendChild(el("code", { "data-testid": "dlq-" + r.reason + "-command", class: "cmd",
        title: "run this to see the dead letters of " + r.reason }, r.command));
      tr.appendChild(td);
      tr.appendChild(num("dlq-" + r.reason, r.count));
      tr.appendChild(num("dlq-" + r.reason + "-recent", r.recent));
      return tr;
    });
    replaceBody(document.getElementById("dlq"), rows, 3, "nothing rejected");
    const cell = document.querySelector('[data-testid="dlq-total"]');
    cell.textContent = intFmt.format(s.dlq_total); cell.setAttribute("data-value", s.dlq_total);
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
    capRows("lag", rows, document.getElementById("lag-more"));
  }

  function renderBatches(batches) {
    const host = document.getElementById("batches");
    const blocks = Object.entries(batches).map(([rail, list]) => {
      const div = el("div", { "data-testid": "rail-" + rail, class: "rail" });
      const r = units.rails[rail];
      div.appendChild(el("h3", {}, rail + (r ? " (" + r.currency + ", rail units " + r.unit + ")" : "")));
      const table = el("table");
      const head = el("tr");
      for (const [h, cls] of [["batch", ""], ["cycle", ""], ["created", ""],
        ["instructions", "n"], ["control sum", "n"], ["control sum (rail units)", "n"]]) {
        head.appendChild(el("th", cls ? { class: cls } : {}, h));
      }
      table.appendChild(el("thead")).appendChild(head);
      table.appendChild(el("tbody"));
      const rows = list.map(b => {
        const id = "batch-" + b.batch_id;
        const tr = el("tr", { "data-testid": id, "data-rail": rail });
        tr.appendChild(el("td", { "data-testid": id + "-id" }, b.batch_id));
        tr.appendChild(el("td", {}, b.cycle_id));
        tr.appendChild(el("td", {}, when(b.created_at)));
        tr.appendChild(num(id + "-instructions", b.instruction_count));
        tr.appendChild(money(id + "-control", b.control_sum_minor, b.currency));
        tr.appendChild(railMoney(id + "-control-rail", b.control_sum_rail_units, rail));
        return tr;
      });
      replaceBody(table, rows, 6, "no batches yet");
      div.appendChild(table);
      const more = el("div", { class: "more-toggle" });
      div.appendChild(more);
      capRows("batches:" + rail, rows, more);
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
        tr.appendChild(money(id + "-carried", r.carried_minor, c.currency));
        const state = r.pending === 0 ? "FINAL" : (r.overdue > 0 ? "OVERDUE" : "PENDING");
        tr.appendChild(badge(state, id + "-state"));
        rows.push(tr);
      });
    }
    replaceBody(document.getElementById("finality"), rows, 7, "no cycles yet");
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
        const td = amountCell(id + "-balance", r.balance_units, r.decimals, r.token || "");
        td.setAttribute("title", r.balance_units + " token units (" + r.decimals + " decimals)");
        tr.appendChild(td);
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
      const s = parseExact(await response.text());
      units = s.units && s.units.currencies ? s.units : { currencies: {}, rails: {} };
      if (s.health) renderHealth(s.health);
      if (s.liquidity) renderLiquidity(s.liquidity);
      renderDlq(s);
      renderCycles(s.cycles);
      renderThroughput(s.throughput);
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
      document.body.setAttribute("data-units", Object.keys(units.currencies).length ? "true" : "false");
    } catch (e) {
      document.getElementById("errors").textContent = "cannot reach the dashboard server: " + e.message;
    }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
