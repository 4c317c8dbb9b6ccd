// The settlement ops page: fetches /v1/ops/summary with the ops token and renders it.
// Vanilla JS, no dependencies, no innerHTML (every value goes in through textContent), so the
// strict Content-Security-Policy needs no 'unsafe-inline' and nothing from the data can run.
"use strict";

(function () {
  const TOKEN_KEY = "ssc-ops-token";
  const REFRESH_MS = 60000;
  let refreshTimer = null;

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

  // An ISO instant as Beijing wall time (UTC+8 all year: no DST), without locale data.
  function beijing(iso) {
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) return "unknown";
    return new Date(ms + 8 * 3600 * 1000).toISOString().slice(0, 19).replace("T", " ") +
      " Beijing time";
  }

  function cell(text, opts) {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (opts && opts.num) td.className = "num";
    if (opts && opts.field) td.dataset.field = opts.field;
    return td;
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
    tr.append(
      cell(row.route, { field: "route" }),
      cell(row.visit_type, { field: "visit_type" }),
      cell(row.count, { num: true, field: "count" }),
      cell(yuan(row.medfee_sumamt), { num: true, field: "medfee_sumamt" }),
      cell(yuan(row.fund_pay_sumamt), { num: true, field: "fund_pay_sumamt" }),
      cell(yuan(row.acct_pay), { num: true, field: "acct_pay" }),
      cell(yuan(row.psn_cash_pay), { num: true, field: "psn_cash_pay" }),
      cell(row.cancelled_count, { num: true, field: "cancelled_count" }),
    );
    return tr;
  }

  function pair(dl, label, value, id, bad) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    dd.id = id;
    if (bad) dd.className = "bad";
    dl.append(dt, dd);
  }

  function codeRows(items) {
    return items.map((item) => {
      const tr = document.createElement("tr");
      tr.dataset.code = item.code;
      tr.append(cell(item.code), cell(item.count, { num: true, field: "count" }));
      return tr;
    });
  }

  function render(s) {
    // A render count: a test (or a curious operator) can tell one rendering from the next.
    document.body.dataset.renders = String(Number(document.body.dataset.renders || "0") + 1);
    $("heading-day").textContent = "Day " + s.date + " (Beijing time)";
    $("generated").textContent = "generated " + s.generated_at + " · refreshes every minute";
    $("day").value = s.date;

    const activity = s.settlements;
    fill($("activity").tBodies[0], activity.rows.map((r) => activityRow(r)),
      "No settlements on this day.", 8);
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
      tr.append(cell(m.fixmedins_code), cell(m.clr_type), cell(m.kind), cell(m.checked_at),
        cell(m.difference_count === null ? "" : m.difference_count, { num: true }),
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
    $("counters-note").textContent = s.counters_note;
    fill($("rejections").tBodies[0], codeRows(s.rejections), "No rejections.", 2);
    const auth = s.card_auth;
    const dl = $("card-auth");
    dl.replaceChildren();
    pair(dl, "Challenges issued", auth.challenges_issued, "card-challenges");
    pair(dl, "Authenticated", auth.authenticated, "card-authenticated");
    pair(dl, "Refused", auth.refused, "card-refused", auth.refused > 0);
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
  }

  function show(state) {
    document.body.dataset.state = state;
    $("login").hidden = state !== "login";
    $("dashboard").hidden = state !== "ready";
    $("failure").hidden = state !== "error";
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (refreshTimer !== null) clearInterval(refreshTimer);
    refreshTimer = null;
    $("login-error").textContent = message || "";
    $("login-error").hidden = !message;
    show("login");
    $("token").focus();
  }

  async function load() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      signOut("");
      return;
    }
    const day = $("day").dataset.chosen || "";
    const url = "/v1/ops/summary" + (day ? "?date=" + encodeURIComponent(day) : "");
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      fail("The gateway did not answer (" + err.message + "). Retrying in a minute.");
      return;
    }
    // 401: the token is wrong. 429: too many wrong tokens from this address; tokens are not
    // even checked for a while. Either way drop the token and stop refreshing: re-sending a
    // wrong token every minute would only keep this address locked out.
    if (response.status === 401 || response.status === 429) {
      const problem = await response.json().catch(() => ({}));
      const wait = response.headers.get("Retry-After");
      signOut((problem.message || "The ops token was refused.") +
        (problem.detail ? " (" + problem.detail + ")" : "") +
        (response.status === 429 && wait ? " Try again in " + wait + " s." : ""));
      return;
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      fail((problem.code || response.status) + ": " + (problem.detail || problem.title || "") +
        (problem.request_id ? " (request " + problem.request_id + ")" : ""));
      return;
    }
    render(await response.json());
    show("ready");
  }

  function fail(message) {
    $("failure").textContent = message;
    show("error");
  }

  function start() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      load();
      if (refreshTimer === null) refreshTimer = setInterval(load, REFRESH_MS);
    });
    $("day-form").addEventListener("submit", (event) => {
      event.preventDefault();
      $("day").dataset.chosen = $("day").value;
      load();
    });
    $("today").addEventListener("click", () => {
      $("day").dataset.chosen = "";
      load();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    if (sessionStorage.getItem(TOKEN_KEY)) {
      refreshTimer = setInterval(load, REFRESH_MS);
      load();
    } else {
      signOut("");
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
