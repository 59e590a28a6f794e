// Sluice dashboard: live feed (EventSource on /api/events), app rows refreshed from
// /api/apps/{app}, deployment logs, and the Sync / Redeploy / Rollback buttons, which post
// with the API token the operator pasted once (kept in localStorage). All text goes in
// through textContent, never innerHTML.
(() => {
  "use strict";
  const TOKEN_KEY = "sluice.token";
  const FEED_MAX = 200;
  const HISTORY = 10;
  const $ = (selector, root = document) => root.querySelector(selector);
  const token = () => localStorage.getItem(TOKEN_KEY) || "";

  // ---- DOM helpers -------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.dataset[camel(key.slice(5))] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  const short = (text) => (text || "").slice(0, 12);
  const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
  const stamp = (iso) => (iso ? new Date(iso).toLocaleString() : "");

  function notice(text, kind = "ok") {
    const node = $("#notice");
    node.textContent = text;
    node.className = `notice ${kind}`;
    node.hidden = false;
  }

  // ---- the API ---------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const why = (data && (data.error || data.detail)) || response.statusText;
      const hint = response.status === 401 && !token() ? " (paste the API token above)" : "";
      const error = new Error(`${response.status}: ${typeof why === "string" ? why : JSON.stringify(why)}${hint}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ---- rendering an app (same markup as the server's template) ---------------------------
  const logLink = (d) => el("a", { class: "log-link", href: `/api/deployments/${encodeURIComponent(d.id)}/log`,
                                   "data-deployment": d.id }, d.id);
  const statusBadge = (status) => el("span", { class: `status status-${status}` }, status);
  const button = (action, app, label, deployment) =>
    el("button", { type: "button", "data-action": action, "data-app": app, "data-deployment": deployment }, label);

  function took(d) {
    if (!d.started_at || !d.ended_at) return "";
    const seconds = (Date.parse(d.ended_at) - Date.parse(d.started_at)) / 1000;
    return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
  }

  function appRow(app) {
    const live = app.active;
    const latest = (app.deployments || [])[0] || app.running || live;
    const automatic = !app.continuous ? "manual"
      : app.paused ? el("span", { class: "paused" }, `paused: ${app.paused}`) : "on";
    return el("tr", { id: `app-${app.name}`, "data-app": app.name },
      el("th", { scope: "row", class: "name" }, app.name,
         el("small", {}, `${app.layout} · ${typeof app.source === "string" ? app.source : describe(app.source)}`),
         app.drift ? el("strong", { class: "drift" }, app.drift.text) : "",
         Object.entries(app.rejected || {}).map(([revision, reason]) =>
           el("strong", { class: "rejected" }, `rejected ${short(revision)}: ${reason}`))),
      el("td", { class: "live" }, live ? logLink(live) : "—", hostList(app.hosts)),
      el("td", { class: "revision" }, live ? el("code", {}, short(live.revision)) : ""),
      el("td", { class: "trigger" }, live ? live.trigger : ""),
      el("td", { class: "latest" }, latest ? [statusBadge(latest.status), " ", logLink(latest)] : "never deployed"),
      el("td", { class: "automatic" }, automatic),
      el("td", { class: "waiting" }, String(app.waiting ?? 0)),
      el("td", { class: "actions" }, button("sync", app.name, "Sync"), " ",
         button("redeploy", app.name, "Redeploy"), " ", button("rollback", app.name, "Rollback")));
  }

  // An app's hosts and what each runs (as `sluice apps` words it), the lagging ones marked.
  function hostList(hosts) {
    if (!hosts || !hosts.length) return "";
    return el("ul", { class: "hosts" }, hosts.map((h) =>
      el("li", { class: `host host-${h.state.replace(/ /g, "-")}`, "data-host": h.host }, h.text)));
  }

  // A deployment's word from each host: switched, failed: why, rolled back.
  function hostStates(states) {
    const entries = Object.entries(states || {});
    if (!entries.length) return "";
    return el("ul", { class: "host-states" }, entries.map(([host, state]) =>
      el("li", { "data-host": host }, `${host}: ${state}`)));
  }

  function describe(source) {
    if (!source || typeof source !== "object") return String(source ?? "");
    return [source.type, source.url, source.branch && `@ ${source.branch}`, source.path]
      .filter(Boolean).join(" ");
  }

  function historyRow(app, d) {
    const actions = el("td", { class: "actions" });
    if (d.snapshot) actions.append(button("redeploy", app, "Redeploy", d.id));
    if (d.status === "success" && !d.active) actions.append(" ", button("rollback", app, "Roll back to", d.id));
    return el("tr", { "data-deployment": d.id, class: `status-${d.status}${d.active ? " active" : ""}` },
      el("td", {}, logLink(d), d.active ? [" ", el("span", { class: "badge" }, "live")] : ""),
      el("td", {}, statusBadge(d.status)),
      el("td", {}, el("code", {}, short(d.revision))),
      el("td", {}, d.trigger),
      el("td", {}, el("time", { datetime: d.received_at }, stamp(d.received_at))),
      el("td", { class: "took" }, took(d)),
      el("td", { class: "message" }, d.change ? [el("span", { class: "change" }, d.change), " · "] : "",
        d.message || "", hostStates(d.hosts)),
      actions);
  }

  function historySection(app) {
    const rows = (app.deployments || []).slice(0, HISTORY).map((d) => historyRow(app.name, d));
    if (!rows.length) rows.push(el("tr", { class: "empty" }, el("td", { colspan: "8" }, "No deployments yet.")));
    const head = ["deployment", "status", "revision", "trigger", "received", "took", "message", ""]
      .map((h) => el("th", {}, h));
    return el("section", { class: "app-history", id: `history-${app.name}`, "data-app": app.name },
      el("h3", {}, app.name),
      el("table", {}, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows)));
  }

  function showApp(app) {
    const row = appRow(app);
    const old = document.getElementById(`app-${app.name}`);
    if (old) old.replaceWith(row);
    else {
      $("#apps-table tbody tr.empty")?.remove();
      $("#apps-table tbody").append(row);
    }
    const section = historySection(app);
    const oldSection = document.getElementById(`history-${app.name}`);
    if (oldSection) oldSection.replaceWith(section); else $("#history").append(section);
  }

  const pending = new Map();
  function refreshApp(name) {          // debounced: a burst of events costs one request
    if (!name || pending.has(name)) return;
    pending.set(name, setTimeout(async () => {
      pending.delete(name);
      try { showApp(await api("GET", `/api/apps/${encodeURIComponent(name)}`)); }
      catch (error) { if (error.status !== 404) console.warn("refresh", name, error); }
    }, 150));
  }

  async function loadAll() {
    const apps = await api("GET", "/api/apps");
    for (const app of apps) {
      showApp(await api("GET", `/api/apps/${encodeURIComponent(app.name)}`));
    }
    $("#locked")?.remove();
    refreshQueue();
  }

  // ---- queue depths ----------------------------------------------------------------------
  let queueTimer = null;
  const QUEUE_EVERY_MS = 5000;
  function refreshQueue() {
    if (queueTimer) return;
    queueTimer = setTimeout(async () => {
      queueTimer = null;
      try { showQueue(await api("GET", "/api/queue")); } catch (_) { /* keep what the server rendered */ }
    }, 300);
  }

  function showQueue(queue) {
    const polls = queue.polls || {};
    const items = (queue.queues || []).map((q) => [`queue ${q.name}`, `${q.waiting}` +
      (q.oldest_age ? ` (oldest ${Math.round(q.oldest_age)}s)` : "")]);
    items.push(["in flight", (queue.in_flight || []).length], ["retrying", (queue.retries || []).length],
      ["head checks due within a minute", (polls.due_next_minute || []).length],
      ["head checks overdue", (polls.overdue || []).length]);
    const notifications = queue.notifications || { pending: 0, failing: [] };
    items.push(["notifications pending", notifications.pending],
      ["notifications failing", notifications.failing.length]);
    $("#queue-depths").replaceChildren(...items.map(([name, value]) =>
      el("div", {}, el("dt", {}, name), el("dd", {}, String(value)))));
    $("#notify-failing").replaceChildren(...notifications.failing.map((f) => el("li", {},
      el("b", { class: "app" }, f.app || ""), ` ${f.channel}: ${f.event}, try ${f.attempts} failed: `,
      el("span", { class: "error" }, f.error || ""),
      `; next try ${f.next_in === null ? "unknown" : `in ${Math.round(f.next_in)}s`}`)));
  }

  // ---- the live feed ---------------------------------------------------------------------
  function summary(data) {
    return Object.entries(data)
      .filter(([key, value]) => !["app", "at", "type", "id", "version"].includes(key)
        && value !== null && value !== "" && !(Array.isArray(value) && !value.length))
      .map(([key, value]) => {
        const text = typeof value === "object" ? JSON.stringify(value) : String(value);
        return `${key}=${text.length === 40 || text.length === 64 ? short(text) : text}`;
      }).join(" ");
  }

  function onEvent(message) {
    let data;
    try { data = JSON.parse(message.data); } catch (_) { return; }
    const id = message.lastEventId || data.id || "";
    const feed = $("#feed");
    if (id && [...feed.children].some((li) => li.dataset.id === id)) return;
    const type = data.type || message.type;
    const log = $("#log");
    if (!log.hidden && data.deployment_id && data.deployment_id === log.dataset.deployment) reloadLog();
    if (type === "BuildOutput") return;     // a build's lines belong in its log, not the feed
    feed.prepend(el("li", { "data-id": id, "data-app": data.app, "data-type": type, class: "fresh" },
      el("time", { datetime: data.at }, clock(data.at)), " ", el("b", { class: "app" }, data.app || ""), " ",
      el("span", { class: "type" }, type), " ", el("span", { class: "detail" }, summary(data))));
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    refreshApp(data.app);
    refreshQueue();
  }

  function follow() {
    if (!window.EventSource) return;
    const state = $("#feed-state");
    const since = document.body.dataset.feedSince;
    const source = new EventSource(`/api/events${since ? `?since=${encodeURIComponent(since)}` : ""}`);
    const types = (document.body.dataset.eventTypes || "").split(" ").filter(Boolean);
    for (const type of types) source.addEventListener(type, onEvent);
    source.onmessage = onEvent;
    source.onopen = () => { state.textContent = "(following)"; state.className = "ok"; };
    source.onerror = () => {
      state.className = "muted";
      if (source.readyState !== EventSource.CLOSED) { state.textContent = "(reconnecting…)"; return; }
      // refused (reads need the token, which an EventSource cannot send): poll instead
      state.textContent = "(live feed refused: refreshing every 5 s)";
      setInterval(() => { if (token()) loadAll().catch(() => {}); }, 5000);
    };
    state.textContent = "(connecting…)";
  }

  // ---- logs -------------------------------------------------------------------------------
  // The open log follows its deployment: each of its events (a build's lines too) reloads
  // it, one load at a time, a last one after a burst.
  let logLoading = null;
  let logAgain = false;
  function reloadLog() {
    if (logLoading) { logAgain = true; return; }
    logLoading = showLog($("#log").dataset.deployment, true).finally(() => {
      logLoading = null;
      if (logAgain) { logAgain = false; reloadLog(); }
    });
  }

  async function showLog(deployment, refresh = false) {
    const panel = $("#log");
    $("#log-deployment").textContent = deployment;
    const lines = $("#log-lines");
    if (!refresh) lines.textContent = "loading…";
    panel.hidden = false;
    panel.dataset.deployment = deployment;
    try {
      const log = await api("GET", `/api/deployments/${encodeURIComponent(deployment)}/log`);
      if (panel.dataset.deployment !== deployment) return;     // another log was opened meanwhile
      lines.textContent = (log.lines || []).map((l) =>
        [stamp(l.at), (l.level || "").toUpperCase().padEnd(5), l.step ? `[${l.step}]` : "", l.message]
          .filter(Boolean).join(" ")).join("\n") || "(no log lines)";
    } catch (error) {
      lines.textContent = `could not load the log: ${error.message}`;
    }
    if (!refresh) panel.scrollIntoView({ block: "nearest" });
  }

  // ---- actions ------------------------------------------------------------------------------
  async function act(button) {
    const { action, app, deployment } = button.dataset;
    const path = `/api/apps/${encodeURIComponent(app)}/${action}`;
    let body = {};
    // Redeploy and Rollback replace what is live: a stray click (or one a page tricked out
    // of the operator) must not do that without a second look.
    if (action === "redeploy") {
      const what = deployment ? `deployment ${deployment}'s files` : "the live release's files";
      if (!window.confirm(`Redeploy ${what} to ${app}? They replace what is live now.`)) return;
      if (deployment) body = { deployment_id: deployment };
    }
    if (action === "rollback") {
      const what = deployment ? `deployment ${deployment}` : "the previous release";
      if (!window.confirm(`Roll ${app} back to ${what}? Automatic deployments pause until resumed.`)) return;
      if (deployment) body = { to: deployment };
    }
    button.disabled = true;
    try {
      let result = await api("POST", path, body);
      // Nothing queued by a sync: its head was rejected (rolled back by itself); the reason
      // says why, and only the operator may deploy it again.
      if (action === "sync" && result && !result.deployment_id
          && window.confirm(`${result.reason}\n\nDeploy ${short(result.revision)} to ${app} anyway?`)) {
        result = await api("POST", path, { force: true });
      }
      notice(describeResult(action, app, result), action === "sync" && !result?.deployment_id ? "error" : "ok");
      refreshApp(app);
    } catch (error) {
      notice(`${action} ${app} refused: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  }

  function describeResult(action, app, result) {
    if (!result || typeof result !== "object") return `${action} ${app}: done`;
    const id = result.deployment_id || result.id;
    if (action === "sync" && !id) return `sync ${app}: not deployed: ${result.reason}`;
    if (action === "sync" && result.new === false) {
      return `sync ${app}: nothing new to deploy (${result.reason || "covered"})`;
    }
    const revision = result.revision ? ` of ${short(result.revision)}` : "";
    return id ? `${action} ${app}: deployment ${id}${revision} ${result.status || "queued"}`
      : `${action} ${app}: ${JSON.stringify(result)}`;
  }

  // ---- the token --------------------------------------------------------------------------
  function showTokenState() {
    const state = $("#token-state");
    if (token()) { state.textContent = "token saved in this browser"; state.className = "ok"; }
    else if (!state.textContent) { state.textContent = "no token: actions will be refused"; state.className = "muted"; }
  }

  function wire() {
    $("#token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("#token").value.trim();
      if (value) localStorage.setItem(TOKEN_KEY, value);
      $("#token").value = "";
      showTokenState();
      if (document.body.dataset.readable === "no" && token()) loadAll().catch((e) => notice(e.message, "error"));
    });
    $("#forget-token").addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      $("#token-state").textContent = "";
      showTokenState();
    });
    document.addEventListener("click", (event) => {
      const link = event.target.closest("a.log-link");
      if (link) { event.preventDefault(); showLog(link.dataset.deployment); return; }
      const action = event.target.closest("button[data-action]");
      if (action) act(action);
    });
    $("#close-log").addEventListener("click", () => { $("#log").hidden = true; });
    for (const node of document.querySelectorAll("#feed time[datetime]")) node.textContent = clock(node.getAttribute("datetime"));
  }

  wire();
  showTokenState();
  follow();
  refreshQueue();
  // Deliveries start failing and waits grow without an event to say so: looked at again.
  setInterval(refreshQueue, QUEUE_EVERY_MS);
  if (document.body.dataset.readable === "no" && token()) loadAll().catch((e) => notice(e.message, "error"));
})();
