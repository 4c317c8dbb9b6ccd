// The settlement ops page: fetches /v1/ops/summary with the ops token and renders it; refreshes
// on its own (off, 10, 30 or 60 s, chosen per tab); draws small trend charts; drills down from a
// figure to the institutions or error codes behind it.
// Vanilla JS, no dependencies, no innerHTML (every value goes in through textContent, every
// chart element through createElementNS and attributes), so the strict Content-Security-Policy
// needs no 'unsafe-inline' and nothing from the data can run.
"use strict";

(function () {
  const TOKEN_KEY = "ssc-ops-token";
  const REFRESH_KEY = "ssc-ops-refresh-s";
  const SAMPLES_KEY = "ssc-ops-rejection-samples";
  const REFRESH_CHOICES = ["0", "10", "30", "60"];
  const DEFAULT_REFRESH = "60";
  const MAX_SAMPLES = 120;
  let refreshTimer = null;
  let summary = null; // the last rendering's data, for the drill-downs

  const $ = (id) => document.getElementById(id);

  // Fen to yuan with integer arithmetic only: exact for every safe integer. (abs - fen) is a
  // multiple of 100, so dividing it by 100 is exact in floating point too.
  function yuan(fen) {
    if (fen === null || fen === undefined) return "not available";
    if (!Number.isSafeInteger(fen)) return "out of range";
    const abs = Math.abs(fen);
    const cents = abs % 100;
    const whole = String((abs - cents) / 100).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (fen < 0 ? "-" : "") + whole + "." + String(cents).padStart(2, "0");
  }

  // An ISO instant as Beijing wall time (UTC+8 all year: no DST), without locale data. The
  // page says its time zone once, in its header: no time on it carries a zone of its own.
  function beijing(iso) {
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) return "unknown";
    return new Date(ms + 8 * 3600 * 1000).toISOString().slice(0, 19).replace("T", " ");
  }

  function beijingClock(ms) {
    return new Date(ms + 8 * 3600 * 1000).toISOString().slice(11, 19);
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function cell(text, opts) {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (opts && opts.num) td.className = "num";
    if (opts && opts.field) td.dataset.field = opts.field;
    return td;
  }

  // A 3202 run's differences: the count, then the first ones (setl_id, why, both totals).
  function differencesCell(m) {
    const td = cell(m.difference_count === null ? "" : m.difference_count, { num: true });
    if (m.differences && m.differences.length > 0) {
      const list = document.createElement("ul");
      list.className = "differences";
      for (const d of m.differences) {
        const li = document.createElement("li");
        const side = (fen) => (fen === null ? "—" : yuan(fen));
        li.textContent = d.setl_id + ": " + d.reason.replace(/_/g, " ") + " (institution " +
          side(d.institution_medfee_sumamt) + ", gateway " + side(d.gateway_medfee_sumamt) + ")";
        li.dataset.setlId = d.setl_id;
        li.dataset.reason = d.reason;
        list.append(li);
      }
      td.append(list);
    }
    return td;
  }

  function button(text, onClick, className) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (className) b.className = className;
    b.addEventListener("click", onClick);
    return b;
  }

  function fill(tbody, rows, emptyText, columns) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = cell(emptyText);
      td.colSpan = columns;
      td.className = "muted";
      tr.append(td);
      tbody.append(tr);
      return;
    }
    for (const row of rows) tbody.append(row);
  }

  function activityRow(row, tag) {
    const tr = document.createElement(tag || "tr");
    tr.dataset.route = row.route;
    tr.dataset.visitType = row.visit_type;
    const drill = document.createElement("td");
    drill.className = "drill-cell";
    drill.append(button("Institutions", () => drillInstitutions(row.route, row.visit_type, null),
      "link"));
    tr.append(
      cell(row.route, { field: "route" }),
      cell(row.visit_type, { field: "visit_type" }),
      cell(row.count, { num: true, field: "count" }),
      cell(yuan(row.medfee_sumamt), { num: true, field: "medfee_sumamt" }),
      cell(yuan(row.fund_pay_sumamt), { num: true, field: "fund_pay_sumamt" }),
      cell(yuan(row.acct_pay), { num: true, field: "acct_pay" }),
      cell(yuan(row.psn_cash_pay), { num: true, field: "psn_cash_pay" }),
      cell(row.cancelled_count, { num: true, field: "cancelled_count" }),
      drill,
    );
    return tr;
  }

  function pair(dl, label, value, id, bad) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    if (id) dd.id = id;
    if (bad) dd.className = "bad";
    dl.append(dt, dd);
  }

  // A code's row: the code is a button that says what the code means.
  function codeRows(items) {
    return items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.code = item.code;
      const td = document.createElement("td");
      td.append(button(item.code, () => drillCode(item), "link code"));
      tr.append(td, cell(item.count, { num: true, field: "count" }));
      return tr;
    });
  }

  // --- charts (inline SVG: elements and attributes only, styled by ops.css classes) ----------

  // The SVG namespace, taken from the page's own <svg> (parsed as SVG by the HTML parser).
  function svgEl(name, attrs, text) {
    const el = document.createElementNS($("hourly-chart").namespaceURI, name);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  const CHART = { width: 520, height: 180, left: 34, right: 6, top: 10, bottom: 24 };

  // Bars over a common y axis from 0 to the largest value; each bar a keyboard-usable button.
  function barChart(svg, bars, opts) {
    svg.replaceChildren();
    const plotW = CHART.width - CHART.left - CHART.right;
    const plotH = CHART.height - CHART.top - CHART.bottom;
    const max = Math.max(1, ...bars.map((b) => b.value + (b.extra || 0)));
    const step = plotW / Math.max(bars.length, 1);
    const y = (v) => CHART.top + plotH - (v / max) * plotH;
    svg.append(svgEl("line", { x1: CHART.left, x2: CHART.left + plotW, y1: y(0), y2: y(0),
      class: "axis-line" }));
    for (const tick of [0, max]) {
      svg.append(svgEl("text", { x: CHART.left - 4, y: y(tick) + 3, class: "axis",
        "text-anchor": "end" }, String(tick)));
    }
    bars.forEach((bar, i) => {
      const x = CHART.left + i * step + step * 0.12;
      const w = step * 0.76;
      const group = svgEl("g", { class: "bar-group" + (bar.muted ? " future" : "") });
      const h = Math.max(0, y(0) - y(bar.value));
      const rect = svgEl("rect", { x: x, y: y(bar.value), width: w, height: h,
        class: "bar" + (opts.barClass ? " " + opts.barClass : "") });
      for (const [key, value] of Object.entries(bar.data || {})) rect.dataset[key] = value;
      group.append(rect);
      if (bar.extra) {
        const eh = Math.max(0, y(0) - y(bar.extra));
        group.append(svgEl("rect", { x: x, y: y(bar.value) - eh, width: w, height: eh,
          class: "bar cancelled" }));
      }
      // A full-height target, so that an empty hour can be selected too.
      const target = svgEl("rect", { x: CHART.left + i * step, y: CHART.top, width: step,
        height: plotH, class: "bar-target" });
      target.append(svgEl("title", {}, bar.title));
      if (opts.onSelect) {
        target.setAttribute("tabindex", "0");
        target.setAttribute("role", "button");
        target.setAttribute("aria-label", bar.title);
        target.addEventListener("click", () => opts.onSelect(bar));
        target.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            opts.onSelect(bar);
          }
        });
      }
      group.append(target);
      if (bar.label) {
        group.append(svgEl("text", { x: x + w / 2, y: CHART.height - 8, class: "axis",
          "text-anchor": "middle" }, bar.label));
      }
      svg.append(group);
    });
  }

  function drawHourly(s) {
    // On today, the hours still to come are drawn faint.
    const generatedMs = Date.parse(s.generated_at);
    const nowBeijing = new Date(generatedMs + 8 * 3600 * 1000).toISOString();
    const currentHour = nowBeijing.slice(0, 10) === s.date ? Number(nowBeijing.slice(11, 13))
      : (nowBeijing.slice(0, 10) > s.date ? 24 : -1);
    const bars = s.hourly.map((row) => ({
      value: row.count,
      extra: row.cancelled_count,
      muted: row.hour > currentHour,
      label: row.hour % 3 === 0 ? pad2(row.hour) : "",
      title: pad2(row.hour) + ":00-" + pad2(row.hour) + ":59: " + row.count + " settlement(s), " +
        yuan(row.medfee_sumamt) + " yuan; " + row.cancelled_count + " cancelled since",
      data: { hour: String(row.hour), count: String(row.count),
        cancelled: String(row.cancelled_count) },
      hour: row.hour,
    }));
    barChart($("hourly-chart"), bars, {
      onSelect: (bar) => drillInstitutions("all", "all", bar.hour),
    });
  }

  // Rejections are the gateway's running count since it started, not a per-day record: the
  // page keeps what it saw at each refresh (in this tab) and draws the differences.
  function sampleRejections(s) {
    const total = s.rejections.reduce((sum, row) => sum + row.count, 0);
    let kept;
    try {
      kept = JSON.parse(sessionStorage.getItem(SAMPLES_KEY) || "null");
    } catch (err) {
      kept = null;
    }
    const since = s.counters_since || "";
    if (!kept || kept.since !== since || !Array.isArray(kept.samples)) {
      kept = { since: since, samples: [] }; // a restart began the counts again
    }
    const at = Date.parse(s.generated_at);
    const last = kept.samples[kept.samples.length - 1];
    if (!last || at > last.at) kept.samples.push({ at: at, total: total });
    kept.samples = kept.samples.slice(-MAX_SAMPLES);
    sessionStorage.setItem(SAMPLES_KEY, JSON.stringify(kept));
    return { total: total, samples: kept.samples };
  }

  function drawRejections(s) {
    const seen = sampleRejections(s);
    const samples = seen.samples;
    const caption = $("rejections-caption");
    const bars = [];
    for (let i = 1; i < samples.length; i++) {
      const delta = Math.max(0, samples[i].total - samples[i - 1].total);
      const from = beijingClock(samples[i - 1].at);
      const to = beijingClock(samples[i].at);
      bars.push({
        value: delta,
        label: i === 1 || i === samples.length - 1 ? to.slice(0, 5) : "",
        title: from + "-" + to + ": " + delta + " rejection(s)",
        data: { delta: String(delta), at: String(samples[i].at) },
      });
    }
    caption.textContent = "Rejections between this page's refreshes, as this tab saw them " +
      "(the gateway keeps only a running count since it started" +
      (s.counters_since ? " at " + beijing(s.counters_since) : "") + ": " + seen.total +
      " so far). " + (bars.length === 0
      ? "A trend appears from the next refresh on (turn the refresh on)."
      : bars.length + " interval(s) since " + beijingClock(samples[0].at) + ".");
    caption.dataset.samples = String(samples.length);
    barChart($("rejections-chart"), bars, { barClass: "reject" });
  }

  // --- drill-down ----------------------------------------------------------------------------

  // Each drill-down opens afresh; an answer that arrives after a newer one was asked for is
  // dropped (drillSeq), so the panel always shows what was last chosen.
  let drillSeq = 0;

  function openDrill(title, note) {
    drillSeq += 1;
    $("drill-title").textContent = title;
    $("drill-note").textContent = note || "";
    $("drill").hidden = false;
    $("drill").dataset.kind = "";
    $("drill-institutions").hidden = true;
    $("drill-institutions").tBodies[0].replaceChildren();
    $("drill-code").hidden = true;
    $("drill-code").replaceChildren();
    return drillSeq;
  }

  function closeDrill() {
    $("drill").hidden = true;
  }

  async function drillInstitutions(route, visitType, hour) {
    if (!summary) return;
    const what = (route === "all" ? "every route" : route) + ", " +
      (visitType === "all" ? "every visit type" : visitType) +
      (hour === null ? "" : ", " + pad2(hour) + ":00-" + pad2(hour) + ":59");
    const seq = openDrill("Institutions behind the settlements of " + summary.date + " (" +
      what + ")", "Loading…");
    const params = new URLSearchParams({ date: summary.date, route: route,
      visit_type: visitType });
    if (hour !== null) params.set("hour", String(hour));
    const body = await authorized("/v1/ops/settlements/by-institution?" + params.toString());
    if (body === null || seq !== drillSeq) return;
    const table = $("drill-institutions");
    const rows = body.institutions.map((row) => institutionRow(row));
    if (body.others) rows.push(institutionRow(body.others));
    fill(table.tBodies[0], rows, "No settlements here.", 6);
    table.hidden = false;
    $("drill").dataset.kind = "institutions";
    $("drill-note").textContent = body.institution_count + " institution(s)" +
      (body.others ? "; the busiest " + body.institutions.length + " listed, the rest summed"
        : "") + ". Valid settlements and their total; cancelled ones counted apart." +
      (body.notes.length ? " " + body.notes.join(" ") : "");
    $("drill").scrollIntoView({ block: "nearest" });
  }

  function institutionRow(row) {
    const tr = document.createElement("tr");
    tr.dataset.code = row.fixmedins_code;
    tr.append(
      cell(row.fixmedins_code === "others" ? "all others" : row.fixmedins_code,
        { field: "fixmedins_code" }),
      cell(row.name || "", { field: "name" }),
      cell(row.kind || "", { field: "kind" }),
      cell(row.count, { num: true, field: "count" }),
      cell(yuan(row.medfee_sumamt), { num: true, field: "medfee_sumamt" }),
      cell(row.cancelled_count, { num: true, field: "cancelled_count" }),
    );
    return tr;
  }

  function drillCode(item) {
    openDrill("Error code " + item.code, "Answered " + item.count +
      " time(s) since the gateway started. What a clerk is told:");
    const dl = $("drill-code");
    dl.replaceChildren();
    pair(dl, "HTTP status", item.status === null || item.status === undefined ? "unknown"
      : item.status, "drill-status");
    pair(dl, "Title", item.title || "", "drill-code-title");
    pair(dl, "Message", item.message || "", "drill-message");
    const zh = item.message_zh || "";
    pair(dl, "消息", zh, "drill-message-zh");
    dl.hidden = false;
    $("drill").dataset.kind = "code";
    $("drill").dataset.code = item.code;
    $("drill").scrollIntoView({ block: "nearest" });
  }

  // A tile leads to the breakdown behind its figure.
  function drillTile(kind) {
    if (kind === "institutions") {
      drillInstitutions("all", "all", null);
      return;
    }
    const targets = { cancellations: "cancellations-section", mismatches: "reconciliation-section",
      rejections: "rejections", "card-refusals": "card-refusals", crossprov: "crossprov-section" };
    const target = $(targets[kind]);
    if (!target) return;
    target.scrollIntoView({ block: "start" });
    target.classList.add("highlight");
    setTimeout(() => target.classList.remove("highlight"), 1500);
  }

  // --- rendering -----------------------------------------------------------------------------

  function render(s) {
    summary = s;
    // A render count: a test (or a curious operator) can tell one rendering from the next.
    document.body.dataset.renders = String(Number(document.body.dataset.renders || "0") + 1);
    $("heading-day").textContent = "Day " + s.date;
    const every = $("refresh").value;
    $("generated").textContent = "generated " + beijing(s.generated_at) +
      (every === "0" ? " · refresh off" : " · refreshes every " + every + " s");
    $("day").value = s.date;

    const activity = s.settlements;
    $("kpi-settlements").textContent = String(activity.total.count);
    $("kpi-amount").textContent = yuan(activity.total.medfee_sumamt);
    $("kpi-cancelled").textContent = String(activity.total.cancelled_count);
    $("kpi-mismatches").textContent = String(s.reconciliation.mismatched);
    $("tile-mismatches").classList.toggle("bad", s.reconciliation.mismatched > 0);
    $("kpi-rejections").textContent = String(s.rejections.reduce((n, r) => n + r.count, 0));
    $("kpi-refusals").textContent = String(s.card_auth.refused);
    const queue = s.cross_province.reversal_queue;
    $("kpi-reversals").textContent = queue === null ? "n/a" : String(queue.depth);
    $("tile-reversals").classList.toggle("bad", queue !== null && queue.depth > 0);

    fill($("activity").tBodies[0], activity.rows.map((r) => activityRow(r)),
      "No settlements on this day.", 9);
    const tfoot = $("activity").tFoot;
    tfoot.replaceChildren(activityRow(activity.total));

    fill($("cancellations").tBodies[0], activity.cancellations.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.route = c.route;
      tr.dataset.visitType = c.visit_type;
      tr.append(cell(c.route), cell(c.visit_type), cell(c.count, { num: true, field: "count" }),
        cell(yuan(c.medfee_sumamt), { num: true, field: "medfee_sumamt" }));
      return tr;
    }), "No cancellations on this day.", 4);

    const rec = s.reconciliation;
    $("reconciliation-counts").textContent = rec.runs + " runs: " + rec.matched + " matched, " +
      rec.mismatched + " mismatched" + (rec.mismatches_truncated ? " (first " +
      rec.mismatches.length + " listed)" : "");
    $("reconciliation-counts").dataset.mismatched = String(rec.mismatched);
    fill($("mismatches").tBodies[0], rec.mismatches.map((m) => {
      const tr = document.createElement("tr");
      tr.append(cell(m.fixmedins_code), cell(m.clr_type), cell(m.kind), cell(beijing(m.checked_at)),
        differencesCell(m),
        cell(m.institution_medfee_sumamt === null ? "" : yuan(m.institution_medfee_sumamt),
          { num: true }),
        cell(m.gateway_medfee_sumamt === null ? "" : yuan(m.gateway_medfee_sumamt),
          { num: true }));
      return tr;
    }), "No mismatches.", 7);

    // The counters are not the chosen day's: say since when, next to them.
    $("counters-since").textContent = s.counters_since === null ? "(start time unknown)"
      : "at " + beijing(s.counters_since);
    $("counters-since").dataset.since = s.counters_since || "";
    // The API's counters_note names its time zone (JSON readers need it); the page has said
    // its zone once already, so it says the same thing without the time.
    $("counters-note").textContent = "Rejections, card authentication and hub calls are the " +
      "gateway's counters since it started (all workers), not figures of the chosen day.";
    fill($("rejections").tBodies[0], codeRows(s.rejections), "No rejections.", 2);
    const auth = s.card_auth;
    const dl = $("card-auth");
    dl.replaceChildren();
    pair(dl, "Challenges issued", auth.challenges_issued, "card-challenges");
    pair(dl, "Authenticated", auth.authenticated, "card-authenticated");
    pair(dl, "Refused (the card)", auth.refused, "card-refused", auth.refused > 0);
    pair(dl, "Refused before the card was judged (malformed, unsigned, replayed)",
      auth.not_judged, "card-not-judged");
    fill($("card-refusals").tBodies[0], codeRows(auth.refusals_by_code), "No refusals.", 2);

    const xp = s.cross_province;
    const xdl = $("crossprov");
    xdl.replaceChildren();
    pair(xdl, "Remote settlements", xp.remote_available ? "available" : "not available",
      "remote-available");
    pair(xdl, "Reversal queue depth",
      xp.reversal_queue === null ? "not available" : xp.reversal_queue.depth,
      "reversal-depth", xp.reversal_queue !== null && xp.reversal_queue.depth > 0);
    if (xp.reversal_queue !== null && xp.reversal_queue.oldest_at !== null) {
      pair(xdl, "Oldest pending reversal", xp.reversal_queue.oldest_at, "reversal-oldest", true);
    }
    pair(xdl, "Hub circuit open on", xp.breaker_open_workers + " worker(s)", "breaker-open",
      xp.breaker_open_workers > 0);
    fill($("hub-calls").tBodies[0], xp.hub_calls.map((c) => {
      const tr = document.createElement("tr");
      tr.append(cell(c.infno), cell(c.outcome), cell(c.count, { num: true, field: "count" }));
      return tr;
    }), "No hub calls since the gateway started.", 3);
    fill($("remote-status").tBodies[0], xp.remote_by_status.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.status = r.status;
      tr.append(cell(r.status), cell(r.count, { num: true, field: "count" }));
      return tr;
    }), xp.remote_available ? "None on this day." : "not available", 2);
    fill($("receivables").tBodies[0], xp.receivables.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.province = p.insuplc_admdvs;
      tr.append(cell(p.insuplc_admdvs), cell(yuan(p.outstanding_fen), { num: true }),
        cell(yuan(p.day_net_fen), { num: true }));
      return tr;
    }), "Nothing fronted for other provinces.", 3);
    const notes = $("crossprov-notes");
    notes.replaceChildren(...xp.notes.map((n) => {
      const li = document.createElement("li");
      li.textContent = n;
      return li;
    }));

    drawHourly(s);
    drawRejections(s);
  }

  function show(state) {
    document.body.dataset.state = state;
    $("login").hidden = state !== "login";
    $("dashboard").hidden = state !== "ready";
    $("failure").hidden = state !== "error";
  }

  function stopRefresh() {
    if (refreshTimer !== null) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  // The chosen interval, kept in this tab (sessionStorage, as the token).
  function refreshSeconds() {
    const kept = sessionStorage.getItem(REFRESH_KEY);
    return REFRESH_CHOICES.includes(kept) ? kept : DEFAULT_REFRESH;
  }

  function scheduleRefresh() {
    stopRefresh();
    const seconds = Number(refreshSeconds());
    if (seconds > 0 && sessionStorage.getItem(TOKEN_KEY)) {
      refreshTimer = setInterval(load, seconds * 1000);
    }
    document.body.dataset.refresh = String(seconds);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopRefresh();
    $("login-error").textContent = message || "";
    $("login-error").hidden = !message;
    show("login");
    $("token").focus();
  }

  // GET with the token; null (and the page says why) unless the answer is a 2xx JSON body.
  async function authorized(url) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      signOut("");
      return null;
    }
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      fail("The gateway did not answer (" + err.message + "). It is asked again at the next " +
        "refresh.");
      return null;
    }
    // 401: the token is wrong. 429: too many wrong tokens from this address; tokens are not
    // even checked for a while. Either way drop the token and stop refreshing: re-sending a
    // wrong token at every refresh would only keep this address locked out.
    if (response.status === 401 || response.status === 429) {
      const problem = await response.json().catch(() => ({}));
      const wait = response.headers.get("Retry-After");
      signOut((problem.message || "The ops token was refused.") +
        (problem.detail ? " (" + problem.detail + ")" : "") +
        (response.status === 429 && wait ? " Try again in " + wait + " s." : ""));
      return null;
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      fail((problem.code || response.status) + ": " + (problem.detail || problem.title || "") +
        (problem.request_id ? " (request " + problem.request_id + ")" : ""));
      return null;
    }
    return response.json();
  }

  async function load() {
    const day = $("day").dataset.chosen || "";
    const body = await authorized("/v1/ops/summary" +
      (day ? "?date=" + encodeURIComponent(day) : ""));
    if (body === null) return;
    render(body);
    show("ready");
    loadAudit();
  }

  // The audit trail (GET /v1/ops/audit): its own fetch, so a failure here only says so in its
  // section and never signs the page out.
  async function loadAudit() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return;
    try {
      const response = await fetch("/v1/ops/audit?limit=20", {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
      if (!response.ok) {
        $("audit-note").textContent = "The audit trail could not be read (" +
          response.status + ").";
        return;
      }
      const body = await response.json();
      $("audit-note").textContent = "";
      fill($("audit").tBodies[0], body.entries.map((e) => {
        const tr = document.createElement("tr");
        const at = new Date(e.at_ms + 8 * 3600 * 1000).toISOString().slice(0, 19);
        tr.append(cell(at.replace("T", " ")), cell(e.actor), cell(e.source), cell(e.action),
          cell(e.subject), cell(e.changes));
        return tr;
      }), "No audited writes yet.", 6);
    } catch (err) {
      $("audit-note").textContent = "The audit trail could not be read (" + err.message + ").";
    }
  }

  // The CSV needs the token in a header, so it is fetched and handed to the browser as a file.
  async function exportAudit() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return;
    const response = await fetch("/v1/ops/audit.csv", {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) {
      $("audit-note").textContent = "The export failed (" + response.status + ").";
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = "audit.csv";
    a.click();
    URL.revokeObjectURL(url);
  }

  function fail(message) {
    $("failure").textContent = message;
    show("error");
  }

  function start() {
    $("refresh").value = refreshSeconds();
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      load();
      scheduleRefresh();
    });
    $("day-form").addEventListener("submit", (event) => {
      event.preventDefault();
      $("day").dataset.chosen = $("day").value;
      closeDrill();
      load();
    });
    $("today").addEventListener("click", () => {
      $("day").dataset.chosen = "";
      closeDrill();
      load();
    });
    $("refresh").addEventListener("change", () => {
      const chosen = $("refresh").value;
      sessionStorage.setItem(REFRESH_KEY, REFRESH_CHOICES.includes(chosen) ? chosen
        : DEFAULT_REFRESH);
      scheduleRefresh();
      if (summary) render(summary); // the "refreshes every" note
    });
    $("refresh-now").addEventListener("click", () => load());
    $("sign-out").addEventListener("click", () => signOut(""));
    $("drill-close").addEventListener("click", closeDrill);
    $("audit-csv").addEventListener("click", () => exportAudit());
    for (const tile of document.querySelectorAll(".tile")) {
      tile.addEventListener("click", () => drillTile(tile.dataset.drill));
    }
    if (sessionStorage.getItem(TOKEN_KEY)) {
      scheduleRefresh();
      load();
    } else {
      signOut("");
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
